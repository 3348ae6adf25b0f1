"""Celery entry points of the escalations app: thin adapters over `escalations.services`."""

from celery import shared_task

from escalations import services


@shared_task(name="escalations.notifications_relay", ignore_result=True)
def notifications_relay() -> dict:
    """Beat runs this every `NOTIFY_RELAY_INTERVAL_SECONDS`; commits kick it too. Safe to overlap."""
    return services.notifications_relay()
