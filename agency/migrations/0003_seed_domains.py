from django.db import migrations

# The domains the agency starts with (docs/tasks.md); operators edit them afterwards.
SEED = [
    ("accounting", "Accounting", 10000),
    ("legal", "Legal", 17500),
    ("data_analysis", "Data analysis", 15000),
]


def seed(apps, schema_editor):
    Domain = apps.get_model("agency", "Domain")
    for slug, name, rate in SEED:
        Domain.objects.get_or_create(slug=slug, defaults={"name": name, "base_rate_cents": rate})


class Migration(migrations.Migration):
    dependencies = [("agency", "0002_tasks_and_payments")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
