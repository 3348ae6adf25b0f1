"""The operator's dashboard, the admin's landing page (docs/console.md)."""

import re
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agency.console.selectors import arena_standings, money_by_day, window_start
from agency.models import AgentProfile, Attempt, BreakerState, ModelCall, Task
from arena.models import PairStanding
from arena.rules import wilson_interval
from bids.models import Bid, Marketplace
from escalations.models import Escalation, Notification
from escalations.services import escalation_resolve
from tests.agency.factories import TaskFactory, domain
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


def _completed(price: int, *, days_ago: int = 0, status: str = "completed") -> Task:
    when = timezone.now() - timedelta(days=days_ago)
    return TaskFactory(status=status, base_price_cents=price, price_cents=price, completed_at=when)


def _won(marketplace, task: Task) -> Task:
    BidFactory(posting=PostingFactory(marketplace=marketplace), status="won", task=task)
    return task


def _attempt(task: Task, *, seconds: int, days_ago: int = 0) -> None:
    baseline = AgentProfile.objects.get(name="baseline")
    number = task.work_attempts.count() + 1
    attempt = Attempt.objects.create(task=task, profile=baseline, number=number, outcome="approved",
                                     compute_ms=seconds * 1000, finished_at=timezone.now())  # fmt: skip
    Attempt.objects.filter(pk=attempt.pk).update(created_at=timezone.now() - timedelta(days=days_ago))


def _evaluation(deployment, marketplace, *, cents: str, days_ago: int = 0) -> None:
    PostingFactory(marketplace=marketplace).model_calls.add(
        _call(deployment, cents=cents, purpose="evaluate", days_ago=days_ago)
    )


@pytest.fixture
def ledger(settings):
    """Three completed tasks in the window: a direct one today, one won on Alpha (10 % fee) yesterday
    and one on Beta (20 %, since switched off) two days ago; their ledger rows and compute; an
    evaluation of an Alpha posting; an idle marketplace; and rows that must not count: before the
    window, after it (a clock ahead), a task that failed."""
    settings.COMPUTE_CENTS_PER_SECOND = Decimal("0.01")
    deployment = deployment_at("http://127.0.0.1:9/v1")
    alpha = MarketplaceFactory(name="Alpha", fee_percent=10)
    beta = MarketplaceFactory(name="Beta", fee_percent=20, active=False)
    MarketplaceFactory(name="Gamma")
    direct = _completed(26250)
    won = _won(alpha, _completed(15000, days_ago=1))
    _won(beta, _completed(40000, days_ago=2))
    _call(deployment, cents="125.5", task=direct)
    # The task's call is also linked to a posting (say, its proposal): counted once, as the task's.
    PostingFactory(marketplace=alpha).model_calls.add(_call(deployment, cents="40", task=won, days_ago=1))
    _evaluation(deployment, alpha, cents="2.5")
    _attempt(direct, seconds=100)
    _attempt(won, seconds=50, days_ago=1)
    # Outside the window, or no revenue:
    _won(alpha, _completed(99999, days_ago=40))
    _won(alpha, _completed(5555, days_ago=-2))
    _won(alpha, _completed(7777, status="failed"))
    _call(deployment, cents="999", task=won, days_ago=45)
    _call(deployment, cents="1000", task=won, days_ago=-2)
    _evaluation(deployment, alpha, cents="300", days_ago=50)
    _evaluation(deployment, alpha, cents="500", days_ago=-2)
    _attempt(won, seconds=900, days_ago=45)
    _attempt(won, seconds=700, days_ago=-2)
    return alpha


def test_the_money_figures_are_the_sums_of_the_ledger_and_the_completed_tasks(admin_client, ledger):
    page = admin_client.get(DASHBOARD).content.decode()
    assert "<h2>Money, last 30 days</h2>" in page
    # Worked out by hand from the fixture: revenue 26250 + 15000 + 40000; fees 10 % of 15000 and 20 % of
    # 40000; model calls 125.5 + 40 + 2.5; compute 150 s at 0.01 c/s; profit 81250 - 9500 - 168 - 1.5.
    assert cells(page, "money-total") == [
        ["Revenue", "$812.50"], ["Marketplace fees", "$95.00"], ["Model calls (ledger)", "$1.68"],
        ["Compute", "$0.015"], ["Profit", "$715.805"],
    ]  # fmt: skip
    days = cells(page, "money-by-day")[1:]
    assert len(days) == 30 and days[0][0] == timezone.localdate().isoformat()
    assert days[0][1:] == ["$262.50", "$0.00", "$1.28", "$0.01", "$261.21"]  # 125.5 + the evaluation's 2.5
    assert days[1][1:] == ["$150.00", "$15.00", "$0.40", "$0.005", "$134.595"]
    assert days[2][1:] == ["$400.00", "$80.00", "$0.00", "$0.00", "$320.00"]
    assert all(row[1:] == ["$0.00"] * 5 for row in days[3:])


def test_the_days_hold_exact_decimals_of_cents(ledger):
    days = money_by_day(today=timezone.localdate(), days=30)
    today, yesterday = days[-1], days[-2]
    assert (today.revenue, today.model_cost, today.compute_cost) == (26250, Decimal("128"), Decimal("1"))
    assert (yesterday.fees, yesterday.compute_cost, yesterday.profit) == (1500, Decimal("0.5"), Decimal("13459.5"))
    assert [d.label for d in days[-3:]] == [(timezone.localdate() - timedelta(days=n)).isoformat() for n in (2, 1, 0)]


def test_the_window_starts_at_midnight_in_the_current_time_zone(settings):
    settings.TIME_ZONE = "Pacific/Auckland"
    with timezone.override("Pacific/Auckland"):
        start = window_start(today=date(2026, 12, 2), days=30)
    assert start == datetime(2026, 11, 3, tzinfo=ZoneInfo("Pacific/Auckland"))
    assert start.utcoffset() == timedelta(hours=13)


def test_the_money_per_marketplace_splits_what_each_brought_and_cost(admin_client, ledger):
    page = admin_client.get(DASHBOARD).content.decode()
    # Beta (off now, but it brought 40000): its fee 8000. Alpha: 15000 in; its fee 1500, its task's
    # call 40 and compute 0.5, its evaluation 2.5. Gamma: idle. The rest is the direct task's.
    assert cells(page, "money-by-marketplace")[1:] == [
        ["Beta", "$400.00", "$80.00", "$320.00"],
        ["Alpha", "$150.00", "$15.43", "$134.57"],
        ["Gamma", "$0.00", "$0.00", "$0.00"],
        ["Direct and unattributed", "$262.50", "$1.265", "$261.235"],
    ]
    beta = Marketplace.objects.get(name="Beta")
    for market in (ledger, beta):
        assert f'<a href="/admin/bids/bid/?marketplace__id__exact={market.pk}">{market.name}</a>' in page
    assert "<td>Direct and unattributed</td>" in page  # no list to link to


def test_the_money_charts_are_drawn_with_their_labels_escaped(admin_client, ledger):
    ledger.name = "<script>alert(1)</script> $5 or $10"
    ledger.save()
    page = admin_client.get(DASHBOARD).content.decode()
    chart = re.search(r'<div class="chart" id="money-by-marketplace-chart"><svg .*?</svg></div>', page, re.S).group(0)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; $5 or $10" in chart and "<script>" not in chart  # no math
    assert re.search(r'<div class="chart" id="money-by-day-chart"><svg .*?>revenue</text>', page, re.S)


def test_the_attention_counts_match_the_database_and_link_to_those_rows(admin_client, settings):
    now, hours = timezone.now(), lambda n: timezone.now() - timedelta(hours=n)
    settings.ESCALATION_REMIND_AFTER_MINUTES = 30
    high, acknowledged, normal = escalate(high_value=True), escalate(high_value=True), escalate()
    Escalation.objects.filter(pk=high.pk).update(created_at=hours(3))  # open past the reminder
    Escalation.objects.filter(pk=acknowledged.pk).update(status="acknowledged", created_at=hours(5))
    Escalation.objects.filter(pk=normal.pk).update(created_at=hours(0.25))  # not yet reminded
    for severity in ("high", "normal"):  # resolved long ago: waiting for nobody
        old = escalate(high_value=severity == "high")
        escalation_resolve(escalation=old, resolution="dismissed", actor="test")
        Escalation.objects.filter(pk=old.pk).update(created_at=hours(50))
    channel = ChannelFactory()
    for n, status in enumerate(["dead", "sent", "pending"]):
        Notification.objects.create(channel=channel, escalation=high, event="opened", dedup_key=f"x{n}",
                                    status=status, next_attempt_at=now)  # fmt: skip
    TaskFactory(status="processing", lease_until=now - timedelta(minutes=5), lease_owner="w1")
    TaskFactory(status="processing", lease_until=now + timedelta(minutes=5), lease_owner="w2")  # still leased
    TaskFactory(status="completed", lease_until=now - timedelta(minutes=5), lease_owner="w3")  # done, lease left
    TaskFactory(status="paid", needs_operator=True)
    BidFactory(status="draft"), BidFactory(status="submitted")
    BreakerState.objects.create(deployment=deployment_at("http://127.0.0.1:9/v1"), status="open", changed_at=now)
    BreakerState.objects.create(deployment=deployment_at("http://127.0.0.1:9/v2"), status="closed")
    MarketplaceFactory(open_until=now + timedelta(minutes=10)), MarketplaceFactory(open_until=hours(1))

    page = admin_client.get(DASHBOARD).content.decode()
    items = attention(page)
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
    notes = dict(re.findall(r'data-item="([^"]+)">.*?<td>([^<]*)</td>\s*</tr>', page, re.S))
    assert notes["High-severity escalations"] == "oldest waiting 5 h 0 min"  # the acknowledged one
    assert notes["Normal escalations"] == "oldest waiting 15 min"
    assert notes["Unacknowledged past the reminder"] == "oldest waiting 3 h 0 min"
    assert notes["Dead notifications"] == ""


def test_the_oldest_wait_is_shown_beside_the_escalations(admin_client):
    escalation = escalate(high_value=True)
    Escalation.objects.filter(pk=escalation.pk).update(created_at=timezone.now() - timedelta(hours=3, minutes=12))
    page = admin_client.get(DASHBOARD).content.decode()
    assert re.search(r"High-severity escalations</a></td>\s*<td>oldest waiting 3 h 12 min</td>", page)
    assert re.search(r"Normal escalations</a></td>\s*<td></td>", page)  # none waiting


def test_the_arena_section_shows_each_pair_with_its_interval_and_promotion(admin_client):
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


def test_the_arena_section_lists_the_pairs_with_the_most_duels_first():
    def standing(slug: str, *duels: int) -> PairStanding:
        counts = dict(zip(["first_wins", "second_wins", "ties", "none_passed"], duels, strict=True))
        return PairStanding.objects.create(
            domain=domain(slug), first=ProfileFactory(), second=ProfileFactory(), **counts
        )

    # Every kind of duel counts; equal counts go by domain.
    last = standing("accounting", 4, 0, 0, 0)
    second = standing("legal", 1, 1, 3, 0)
    first = standing("data_analysis", 0, 0, 0, 5)
    assert arena_standings(limit=30) == [first, second, last]
    assert arena_standings(limit=2) == [first, second]


def test_the_dashboard_costs_the_same_queries_with_more_rows(admin_client, ledger):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(DASHBOARD).status_code == 200
        return len(captured)

    few = queries()
    deployment = deployment_at("http://127.0.0.1:9/v2")
    for n in range(12):
        market = MarketplaceFactory()
        task = _won(market, _completed(1000 + n, days_ago=n))
        _call(deployment, cents="3", task=task, days_ago=n)
        _evaluation(deployment, market, cents="1", days_ago=n)
        _attempt(task, seconds=n)
        escalate(high_value=n % 2 == 0)
        BidFactory(status="draft")
        first, second = ProfileFactory(), ProfileFactory()
        PairStanding.objects.create(
            domain=domain(("legal", "accounting", "data_analysis")[n % 3]), first=first, second=second,
            first_wins=n, second_wins=1, win_rate_low=0.1, win_rate_high=0.9,
        )  # fmt: skip
    assert Bid.objects.filter(status="won").count() == 17 and PairStanding.objects.count() == 12
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
