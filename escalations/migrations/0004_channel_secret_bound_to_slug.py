"""Bind each channel's secret to the channel: a fixed slug, whose variable NOTIFY_SECRET_<SLUG> holds it.

Existing channels keep working: a channel that named NOTIFY_SECRET_X gets the slug "x", so its
secret stays where it is. A second channel that shared that variable gets a suffixed slug and
needs its own variable (the relay says which one when it is missing).
"""

import re

import django.core.validators
from django.db import migrations, models

PREFIX = "NOTIFY_SECRET_"


def slugs_from_secrets(apps, schema_editor):
    Channel = apps.get_model("escalations", "NotificationChannel")
    taken = set()
    for channel in Channel.objects.order_by("pk"):
        if channel.secret_env.startswith(PREFIX):
            base = channel.secret_env[len(PREFIX) :]
        else:
            base = channel.name
        base = re.sub(r"[^a-z0-9_]+", "_", base.lower()).strip("_")[:32] or f"channel_{channel.pk}"
        slug, n = base, 1
        while slug in taken:
            n += 1
            slug = f"{base}_{n}"
        taken.add(slug)
        Channel.objects.filter(pk=channel.pk).update(slug=slug)


class Migration(migrations.Migration):
    dependencies = [("escalations", "0003_exact_keys")]

    operations = [
        migrations.AddField(
            model_name="notificationchannel",
            name="slug",
            field=models.CharField(max_length=40, null=True),
        ),
        migrations.RunPython(slugs_from_secrets, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="notificationchannel",
            name="slug",
            field=models.CharField(
                help_text="Fixed once created. The channel's secret is read from NOTIFY_SECRET_<SLUG IN CAPITALS>.",
                max_length=40,
                validators=[
                    django.core.validators.RegexValidator(
                        "^[a-z0-9_]+$", "Lowercase letters, digits and underscores only."
                    )
                ],
            ),
        ),
        migrations.AddConstraint(
            model_name="notificationchannel",
            constraint=models.UniqueConstraint(fields=("slug",), name="escalations_channel_unique_slug"),
        ),
        migrations.RemoveField(model_name="notificationchannel", name="secret_env"),
    ]
