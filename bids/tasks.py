"""Celery entry points of the bids app: thin adapters over its services."""

from celery import shared_task

from bids.services.bids import bid_send, bids_reconcile_all
from bids.services.postings import marketplaces_scan


@shared_task(name="bids.bid_send")
def bid_send_task(bid_id: int) -> str:
    """Send an approved bid; a duplicate message finds it claimed or sent and does nothing."""
    return bid_send(bid_id=bid_id, actor="worker").status


@shared_task(name="bids.marketplaces_scan")
def marketplaces_scan_task() -> dict:
    """Beat's per-minute check: scan the marketplaces whose own interval has passed."""
    return marketplaces_scan()


@shared_task(name="bids.reconcile")
def bids_reconcile_task() -> dict:
    return bids_reconcile_all()
