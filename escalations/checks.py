"""System checks of the escalations app."""

import os

from django.core.checks import Tags, Warning, register
from django.db import DatabaseError


@register(Tags.database)
def channel_secrets_check(app_configs, databases=None, **kwargs):
    """Every active channel that needs a secret has its variable set, so none starts failing after a
    deploy (run by `migrate` and `manage.py check --database default`)."""
    from escalations.models import NotificationChannel

    if not databases:
        return []
    Kind = NotificationChannel.Kind
    try:
        channels = list(NotificationChannel.objects.filter(active=True).exclude(kind=Kind.EMAIL))
    except DatabaseError:  # no tables yet: nothing is configured
        return []
    missing = [
        channel
        for channel in channels
        if not os.environ.get(channel.secret_variable) and not (channel.kind == Kind.SLACK and channel.target)
    ]
    return [
        Warning(
            f"The channel {channel.name!r} reads its secret from {channel.secret_variable}, which is not set.",
            hint="Set it in the environment of every worker and web process; until then its messages wait.",
            obj=channel,
            id="escalations.W001",
        )
        for channel in missing
    ]
