"""Exactly one remote bid per posting under contention and crashes (PostgreSQL and MariaDB passes)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connections, transaction
from django.utils import timezone

from bids.models import Bid, BidEvent
from bids.services.bids import BidExists, bid_create, bid_send, bids_reconcile
from tests.bids.conftest import FREELANCER_TOKEN_ENV
from tests.bids.factories import BidFactory, PostingFactory
from tests.bids.fake_marketplaces import BIDS, FREELANCER_TOKEN
from tests.concurrency import run_at_once
from tests.conftest import database_url
from tests.processes import ROOT, hung_port, stop, wait_for

pytestmark = [pytest.mark.server_db, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def project_posting(freelancer, freelancer_server):
    project = freelancer_server.project_add("Sales by region", jobs=("Excel",))
    return PostingFactory(marketplace=freelancer, external_id=str(project["id"]))


def racer_env() -> dict:
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        FREELANCER_TOKEN_ENV: FREELANCER_TOKEN,
        "AGENCY_DOTENV": "false",
    }


def racer(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.bids.bid_racer", *args],
        cwd=ROOT, env=racer_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip


def bid_on(posting, actor: str) -> str:
    try:
        bid_id = bid_create(posting=posting, actor=actor, status=Bid.Status.APPROVED).pk
    except BidExists as exc:
        bid_id = exc.existing_id
    return bid_send(bid_id=bid_id, actor=actor).status


def test_sixteen_threads_bidding_on_one_posting_place_one_remote_bid(project_posting, freelancer_server):
    statuses = run_at_once(16, lambda i: bid_on(project_posting, f"t{i}"))
    assert len(statuses) == 16
    assert Bid.objects.count() == 1
    assert len(freelancer_server.placements) == 1
    assert Bid.objects.get().status == Bid.Status.SUBMITTED
    assert BidEvent.objects.filter(kind="claimed").count() == 1


def test_eight_processes_bidding_on_one_posting_place_one_remote_bid(project_posting, freelancer_server):
    start_at = str(time.time() + 3)  # every process imported Django by then
    processes = [racer(start_at, str(project_posting.pk)) for _ in range(8)]
    try:
        outputs = [process.communicate(timeout=90)[0] for process in processes]
    finally:
        stop(*processes)
    assert [process.returncode for process in processes] == [0] * 8
    lines = [json.loads(line) for output in outputs for line in output.splitlines()]
    assert len(lines) == 8 and len({line["bid"] for line in lines}) == 1
    assert Bid.objects.count() == 1
    assert len(freelancer_server.placements) == 1


# --- crash injection: a sender killed at each step, then reconciliation --------------------------


def killed(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def after_grace(settings):
    return timezone.now() + timedelta(seconds=settings.BID_RESUBMIT_GRACE_SECONDS + 1)


def test_a_sender_killed_after_its_claim_is_sent_again_once(project_posting, freelancer, freelancer_server, settings):
    bid = BidFactory(posting=project_posting, status=Bid.Status.APPROVED)
    real_url = freelancer.base_url
    with hung_port() as port:  # the request goes nowhere: the marketplace never sees it
        type(freelancer).objects.filter(pk=freelancer.pk).update(base_url=f"http://127.0.0.1:{port}")
        sender = racer("send", str(bid.pk))
        wait_for(lambda: Bid.objects.filter(pk=bid.pk, status=Bid.Status.SUBMITTING).exists(), what="the claim")
        killed(sender)
    type(freelancer).objects.filter(pk=freelancer.pk).update(base_url=real_url)
    freelancer.refresh_from_db()
    assert bids_reconcile(marketplace=freelancer)["resent"] == 0  # within the grace period
    assert bids_reconcile(marketplace=freelancer, now=after_grace(settings))["resent"] == 1
    assert Bid.objects.get(pk=bid.pk).status == Bid.Status.SUBMITTED
    assert len(freelancer_server.bids) == 1


def test_a_sender_killed_during_the_call_is_settled_without_a_second_bid(
    project_posting, freelancer, freelancer_server, settings
):
    bid = BidFactory(posting=project_posting, status=Bid.Status.APPROVED)
    freelancer_server.hold_bids.set()  # the bid is recorded; the answer waits
    sender = racer("send", str(bid.pk))
    assert freelancer_server.bid_held.wait(60)
    killed(sender)
    freelancer_server.hold_bids.clear()
    counts = bids_reconcile(marketplace=freelancer, now=after_grace(settings))
    assert (counts["settled"], counts["resent"]) == (1, 0)
    settled = Bid.objects.get(pk=bid.pk)
    assert (settled.status, settled.remote_id) == (Bid.Status.SUBMITTED, str(next(iter(freelancer_server.bids))))
    assert len(freelancer_server.placements) == 1


def update_waiting_on_a_lock() -> bool:
    """Whether another session waits on a lock right now (the sender's UPDATE of the locked row)."""
    with connections["default"].cursor() as cursor:
        if connections["default"].vendor == "postgresql":
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        else:
            cursor.execute("SELECT count(*) FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT'")
        return cursor.fetchone()[0] > 0


def test_a_sender_killed_after_the_answer_before_recording_it_is_settled(
    project_posting, freelancer, freelancer_server, settings
):
    bid = BidFactory(posting=project_posting, status=Bid.Status.APPROVED)
    locked, release = threading.Event(), threading.Event()

    def hold_the_row():
        # Taken while the marketplace holds its answer (the claim is committed by then); the sender's
        # final UPDATE then waits on it, after the answer came: it dies holding an unrecorded answer.
        with transaction.atomic():
            Bid.objects.select_for_update().get(pk=bid.pk)
            locked.set()
            release.wait(60)
        connections["default"].close()

    freelancer_server.hold_bids.set()
    sender = racer("send", str(bid.pk))
    holder = threading.Thread(target=hold_the_row)
    try:
        assert freelancer_server.bid_held.wait(60)
        holder.start()
        assert locked.wait(60)
        freelancer_server.hold_bids.clear()  # the answer goes out
        wait_for(update_waiting_on_a_lock, what="the sender's UPDATE waiting on the row lock")
        killed(sender)
    finally:
        freelancer_server.hold_bids.clear()
        release.set()
        if holder.is_alive():
            holder.join(60)
        stop(sender)
    assert Bid.objects.get(pk=bid.pk).status == Bid.Status.SUBMITTING
    counts = bids_reconcile(marketplace=freelancer, now=after_grace(settings))
    assert (counts["settled"], counts["resent"]) == (1, 0)
    assert len(freelancer_server.placements) == 1
    assert Counter(Bid.objects.values_list("status", flat=True)) == {"submitted": 1}


def test_four_scans_of_one_feed_at_once_store_evaluate_and_bid_once(domains):
    from bids.models import Posting
    from bids.services.postings import marketplace_scan
    from tests.bids.factories import MarketplaceFactory

    marketplace = MarketplaceFactory(training_mode=True)
    results = run_at_once(4, lambda i: marketplace_scan(marketplace=marketplace))
    assert sum(result.new for result in results) == 36
    assert sum(result.evaluated for result in results) == 36
    assert Posting.objects.count() == 36
    assert Bid.objects.count() == 19
    assert set(Bid.objects.values_list("status", flat=True)) == {Bid.Status.SIMULATED}


def test_eight_concurrent_withdrawals_of_a_sent_bid_succeed_once(project_posting, freelancer, freelancer_server):
    from bids.services.bids import InvalidBidTransition, bid_withdraw

    bid = BidFactory(posting=project_posting, status=Bid.Status.APPROVED)
    bid_send(bid_id=bid.pk, actor="worker")

    def withdraw(i: int) -> str:
        try:
            bid_withdraw(bid=Bid.objects.select_related("marketplace").get(pk=bid.pk), actor=f"op{i}")
        except InvalidBidTransition:
            return "refused"
        return "withdrawn"

    assert Counter(run_at_once(8, withdraw)) == {"withdrawn": 1, "refused": 7}
    assert BidEvent.objects.filter(bid=bid, kind="withdrawn").count() == 1
    retractions = [r for r in freelancer_server.requests if r.method == "PUT"]
    assert len(retractions) == 1
    assert next(iter(freelancer_server.bids.values()))["retracted"] is True


def test_four_reconcilers_resend_a_stale_bid_once(project_posting, freelancer, freelancer_server, settings):
    bid = BidFactory(posting=project_posting, status=Bid.Status.APPROVED)
    freelancer_server.fail_next(1, status=502, path=BIDS)
    bid_send(bid_id=bid.pk, actor="worker")  # the placement fails: left submitting
    assert Bid.objects.get(pk=bid.pk).status == Bid.Status.SUBMITTING
    long_ago = timezone.now() - timedelta(seconds=settings.BID_RESUBMIT_GRACE_SECONDS + 1)
    Bid.objects.filter(pk=bid.pk).update(claimed_at=long_ago)  # its sender died long ago
    results = run_at_once(4, lambda i: bids_reconcile(marketplace=freelancer))
    assert sum(result["resent"] for result in results) == 1
    assert len(freelancer_server.bids) == 1
    assert BidEvent.objects.filter(bid=bid, kind="resent").count() == 1
