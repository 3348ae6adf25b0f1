"""The operator's dashboard, the admin's landing page (docs/console.md)."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agency.models import AgentProfile, Attempt, BreakerState, ModelCall, Task
from arena.rules import wilson_interval
from bids.models import Bid
from escalations.models import Escalation, Notification
from tests.agency.factories import TaskFactory
from tests.agency.gateway_setup import deployment_at
from tests.arena.factories import ProfileFactory
from tests.bids.factories import BidFactory, MarketplaceFactory, PostingFactory
from tests.escalations.factories import ChannelFactory, escalate

pytestmark = pytest.mark.django_db
DASHBOARD = "/admin/"


def cells(page: str, table_id: str) -> list[list[str]]:
    """The text of each row's cells in the page's table `table_id`, tags stripped."""
    table = re.search(rf'<table[^>]*id="{table_id}".*?</table>', page, re.S).group(0)
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)
    strip = lambda html: re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html)).strip()  # noqa: E731
    return [[strip(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)] for row in rows]


def attention(page: str) -> dict[str, tuple[int, str]]:
    found = re.findall(
        r'<tr class="\w+" data-item="([^"]+)">\s*<td class="count">(\d+)</td>\s*<td><a href="([^"]+)"', page
    )
    return {label: (int(count), url.replace("&amp;", "&")) for label, count, url in found}


def _call(deployment, *, cents: str, task=None, days_ago: int = 0, purpose: str = "work") -> ModelCall:
    call = ModelCall.objects.create(
        deployment=deployment, purpose=purpose, task=task, attempt=1, outcome="ok", tokens_in=10, tokens_out=10,
        cost_cents=Decimal(cents), latency_ms=5,
    )  # fmt: skip
    ModelCall.objects.filter(pk=call.pk).update(created_at=timezone.now() - timedelta(days=days_ago))
    return call


def _completed(price: int, *, days_ago: int = 0) -> Task:
    when = timezone.now() - timedelta(days=days_ago)
    return TaskFactory(status="completed", base_price_cents=price, price_cents=price, completed_at=when)


@pytest.fixture
def ledger(settings):
    """Two tasks, one direct and one won on a marketplace with a 10 % fee, their ledger rows and
    compute, an evaluation call, and rows outside the 30 days that must not count."""
    settings.COMPUTE_CENTS_PER_SECOND = Decimal("0.01")
    deployment = deployment_at("http://127.0.0.1:9/v1")
    alpha = MarketplaceFactory(name="Alpha", fee_percent=10)
    direct = _completed(26250)
    won = _completed(15000, days_ago=1)
    BidFactory(posting=PostingFactory(marketplace=alpha), status="won", task=won)
    _completed(99999, days_ago=40)  # before the window
    _call(deployment, cents="125.5", task=direct)
    _call(deployment, cents="40", task=won, days_ago=1)
    _call(deployment, cents="999", task=won, days_ago=45)  # before the window
    evaluation = _call(deployment, cents="2.5", purpose="evaluate")
    PostingFactory(marketplace=alpha).model_calls.add(evaluation)
    baseline = AgentProfile.objects.get(name="baseline")
    Attempt.objects.create(
        task=direct, profile=baseline, number=1, outcome="approved", compute_ms=100_000, finished_at=timezone.now()
    )
    return alpha


def test_the_money_figures_are_the_sums_of_the_ledger_and_the_completed_tasks(admin_client, ledger):
    page = admin_client.get(DASHBOARD).content.decode()
    # Worked out by hand from the fixture: revenue 26250 + 15000; the fee 10 % of 15000; model calls
    # 125.5 + 40 + 2.5; compute 100 s at 0.01 ¢/s = 1 ¢; profit 41250 - 1500 - 168 - 1 = 39581 ¢.
    assert cells(page, "money-total") == [
        ["Revenue", "$412.50"], ["Marketplace fees", "$15.00"], ["Model calls (ledger)", "$1.68"],
        ["Compute", "$0.01"], ["Profit", "$395.81"],
    ]  # fmt: skip
    days = cells(page, "money-by-day")[1:]
    assert len(days) == 30 and days[0][0] == timezone.localdate().isoformat()
    assert days[0][1:] == ["$262.50", "$0.00", "$1.28", "$0.01", "$261.21"]  # 125.5 + the evaluation's 2.5
    assert days[1][1:] == ["$150.00", "$15.00", "$0.40", "$0.00", "$134.60"]
    assert all(row[1:] == ["$0.00"] * 5 for row in days[2:])


def test_the_money_per_marketplace_splits_what_each_brought_and_cost(admin_client, ledger):
    page = admin_client.get(DASHBOARD).content.decode()
    # Alpha: 15000 in; its fee 1500, its task's call 40, its evaluation 2.5. The rest is direct.
    assert cells(page, "money-by-marketplace")[1:] == [
        ["Alpha", "$150.00", "$15.425", "$134.575"],
        ["Direct and unattributed", "$262.50", "$1.265", "$261.235"],
    ]
    assert f'href="/admin/bids/bid/?marketplace__id__exact={ledger.pk}"' in page


def test_the_money_charts_are_drawn_with_their_labels_escaped(admin_client, ledger):
    ledger.name = "<script>alert(1)</script> $5 or $10"
    ledger.save()
    page = admin_client.get(DASHBOARD).content.decode()
    chart = re.search(r'<div class="chart" id="money-by-marketplace-chart"><svg .*?</svg></div>', page, re.S).group(0)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; $5 or $10" in chart and "<script>" not in chart  # no math
    assert re.search(r'<div class="chart" id="money-by-day-chart"><svg .*?>revenue</text>', page, re.S)


def test_the_attention_counts_match_the_database_and_link_to_those_rows(admin_client, settings):
    now = timezone.now()
    first, second = escalate(high_value=True), escalate(high_value=True)
    escalate()
    Escalation.objects.filter(pk=first.pk).update(created_at=now - timedelta(hours=3))
    Escalation.objects.filter(pk=second.pk).update(status="acknowledged")
    Notification.objects.create(
        channel=ChannelFactory(), escalation=first, event="opened", dedup_key="x", status="dead", next_attempt_at=now
    )
    TaskFactory(status="processing", lease_until=now - timedelta(minutes=5), lease_owner="w1")
    TaskFactory(status="processing", lease_until=now + timedelta(minutes=5), lease_owner="w2")  # still leased
    TaskFactory(status="paid", needs_operator=True)
    BidFactory(status="draft"), BidFactory(status="submitted")
    BreakerState.objects.create(deployment=deployment_at("http://127.0.0.1:9/v1"), status="open", changed_at=now)
    MarketplaceFactory(open_until=now + timedelta(minutes=10))

    items = attention(admin_client.get(DASHBOARD).content.decode())
    expected = {
        "High-severity escalations": 2, "Normal escalations": 1, "Unacknowledged past the reminder": 1,
        "Dead notifications": 1, "Tasks stuck past their lease": 1, "Draft bids awaiting approval": 1,
        "Open model breakers": 1, "Open marketplace breakers": 1, "Payments flagged for an operator": 1,
    }  # fmt: skip
    assert {label: count for label, (count, _) in items.items()} == expected
    for label, (count, url) in items.items():
        listed = admin_client.get(url)
        assert listed.status_code == 200, label
        assert listed.context["cl"].result_count == count, label


def test_the_oldest_wait_is_shown_beside_the_escalations(admin_client):
    escalation = escalate(high_value=True)
    Escalation.objects.filter(pk=escalation.pk).update(created_at=timezone.now() - timedelta(hours=3, minutes=12))
    page = admin_client.get(DASHBOARD).content.decode()
    assert re.search(r"High-severity escalations</a></td>\s*<td>oldest waiting 3 h 12 min</td>", page)


def test_the_arena_section_shows_each_pair_with_its_interval_and_promotion(admin_client):
    from arena.models import PairStanding
    from tests.agency.factories import domain

    first, second = ProfileFactory(name="steady"), ProfileFactory(name="eager")
    low, high = wilson_interval(7, 10)
    PairStanding.objects.create(
        domain=domain("legal"), first=first, second=second, first_wins=7, second_wins=3, ties=1, none_passed=2,
        win_rate_low=low, win_rate_high=high, profit_diff_mean_cents=Decimal("1250"), promotion="held",
    )  # fmt: skip
    page = admin_client.get(DASHBOARD).content.decode()
    [row] = cells(page, "arena-standings")[1:]
    assert row == [
        "legal",
        "steady vs eager",
        "7-3-1-2",
        f"0.700 [{low:.3f}, {high:.3f}]",
        "$12.50",
        "Held",
        "by priority",
    ]
    assert '<div class="chart" id="arena-chart"><svg' in page


def test_the_dashboard_costs_the_same_queries_with_more_rows(admin_client, ledger):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(DASHBOARD).status_code == 200
        return len(captured)

    few = queries()
    deployment = deployment_at("http://127.0.0.1:9/v2")
    for n in range(12):
        market = MarketplaceFactory()
        task = _completed(1000 + n, days_ago=n)
        BidFactory(posting=PostingFactory(marketplace=market), status="won", task=task)
        _call(deployment, cents="3", task=task, days_ago=n)
        escalate(high_value=n % 2 == 0)
        BidFactory(status="draft")
    assert Bid.objects.filter(status="won").count() == 13
    assert queries() == few


def test_the_index_lists_the_system_tables_last_and_one_trace_search(admin_client):
    page = admin_client.get(DASHBOARD).content.decode()
    sections = re.findall(r'<caption>\s*<a href="[^"]*" class="section"[^>]*>([^<]+)</a>', page)
    assert sections[-1] == "System" and "System" not in sections[:-1]
    system = page[page.index(">System</a>") :]
    for table in ("Task results", "Periodic tasks", "Idempotency records"):
        assert f">{table}</a>" in system
    assert page.count('id="content-related"') == 1
    assert page.count('name="trace_id"') == 1 and 'action="/admin/traces/"' in page


def test_view_site_opens_the_dashboard(admin_client):
    page = admin_client.get("/admin/agency/task/").content.decode()
    assert '<a href="/admin/">View site</a>' in page
