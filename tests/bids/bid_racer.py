"""A process that bids: `python -m tests.bids.bid_racer START_AT POSTING_ID…` (or `send BID_ID`).

For each posting it makes the approved bid (or finds the live one another process made) and sends
it, as a scanner, an API caller or a worker would. It waits until the wall clock reaches START_AT
(seconds since the epoch) so that several copies start together, and prints one JSON line per
posting: {"posting", "bid", "status"}. With `send BID_ID` it only sends that bid (the crash tests
kill it mid-way). Environment: the test's DATABASE_URL and the marketplace's token variable.
"""

import json
import os
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agency.settings")

import django

django.setup()

from bids.models import Bid, Posting  # noqa: E402
from bids.services.bids import BidExists, bid_create, bid_send  # noqa: E402


def bid_on(posting_id: int, actor: str) -> dict:
    posting = Posting.objects.select_related("domain").get(pk=posting_id)
    try:
        bid_id = bid_create(posting=posting, actor=actor, status=Bid.Status.APPROVED).pk
    except BidExists as exc:
        bid_id = exc.existing_id
    bid = bid_send(bid_id=bid_id, actor=actor)
    return {"posting": posting_id, "bid": bid.pk, "status": bid.status}


def main(argv: list[str]) -> None:
    actor = f"racer:{os.getpid()}"
    if argv[0] == "send":
        print(json.dumps({"bid": int(argv[1]), "status": bid_send(bid_id=int(argv[1]), actor=actor).status}))
        return
    time.sleep(max(0.0, float(argv[0]) - time.time()))
    for posting_id in argv[1:]:
        print(json.dumps(bid_on(int(posting_id), actor)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
