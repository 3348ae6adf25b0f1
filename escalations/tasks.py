"""Celery entry points of the escalations app: thin adapters over `escalations.outbox`."""

from celery import shared_task

from escalations.outbox import notifications_relay


@shared_task(name="escalations.relay", ignore_result=True)
def relay() -> dict:
    """Beat runs this every `NOTIFY_RELAY_INTERVAL_SECONDS`; commits kick it too. Safe to overlap."""
    return notifications_relay()
