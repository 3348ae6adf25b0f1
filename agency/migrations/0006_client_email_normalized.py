import agency.models.fields
from django.db import migrations


def fill_email_normalized(apps, schema_editor):
    """Each client's address, trimmed and lower-cased (Client.normalize_email, copied: migrations
    must not change with the code). Clients that turn out to share an address, possible only where
    the old Lower("email") constraint was never created (MariaDB), are merged into the oldest."""
    Client = apps.get_model("agency", "Client")
    Task = apps.get_model("agency", "Task")
    first_of: dict[str, object] = {}
    for client in Client.objects.order_by("pk").iterator():
        normalized = client.email.strip().lower()
        first = first_of.setdefault(normalized, client)
        if first is client:
            Client.objects.filter(pk=client.pk).update(email_normalized=normalized)
            continue
        Task.objects.filter(client_id=client.pk).update(client_id=first.pk)
        first.completed_tasks += client.completed_tasks
        first.spent_cents += client.spent_cents
        first.preferences = {**(client.preferences or {}), **(first.preferences or {})}
        Client.objects.filter(pk=first.pk).update(
            completed_tasks=first.completed_tasks, spent_cents=first.spent_cents, preferences=first.preferences
        )
        client.delete()


class Migration(migrations.Migration):

    dependencies = [
        ('agency', '0005_exact_keys'),
    ]

    operations = [
        migrations.AddField(
            model_name='client',
            name='email_normalized',
            field=agency.models.fields.ExactCharField(default='', editable=False, max_length=254),
            preserve_default=False,
        ),
        migrations.RunPython(fill_email_normalized, migrations.RunPython.noop),
    ]
