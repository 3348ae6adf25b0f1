from django.db import migrations


def seed(apps, schema_editor):
    """The model-free agent every domain can fall back on (docs/agents.md); LLM profiles that
    operators add take precedence with a lower priority."""
    AgentProfile = apps.get_model("agency", "AgentProfile")
    AgentProfile.objects.get_or_create(name="baseline", defaults={"kind": "baseline", "priority": 1000})


class Migration(migrations.Migration):
    dependencies = [("agency", "0013_agents")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
