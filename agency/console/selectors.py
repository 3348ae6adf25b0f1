"""What the operator's dashboard reads (docs/console.md): what needs attention, where the money went,
how the arena's pairs stand. Each figure is one aggregate query, so the page costs the same number
of queries over ten rows or a million."""

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Count, DecimalField, ExpressionWrapper, F, Min, Q, Sum, Value
from django.db.models.functions import TruncDate
from django.urls import reverse
from django.utils import timezone

from agency.durations import duration_text
from agency.models import Attempt, BreakerState, ModelCall, Task
from arena.models import PairStanding
from bids.models import Bid, Marketplace, Posting
from escalations.models import Escalation, Notification

# --- Needs attention ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attention:
    label: str
    count: int
    url: str  # the list filtered to exactly these rows
    note: str = ""  # e.g. how long the oldest has waited


def _changelist(model_label: str, **lookups) -> str:
    app_label, model_name = model_label.split(".")
    return f"{reverse(f'admin:{app_label}_{model_name}_changelist')}?{urlencode(lookups)}"


def _since(moment: datetime | None, now: datetime) -> str:
    return f"oldest waiting {duration_text(now - moment)}" if moment is not None else ""


def _stamp(moment: datetime) -> str:
    # A moment in a link's query string, with its offset (the admin's filters read ISO 8601 back).
    return moment.isoformat()


def attention_items(*, now: datetime) -> list[Attention]:
    """Everything waiting for a person, each with the link to exactly those rows."""
    live, high, normal = ~Q(status=Escalation.Status.RESOLVED), Q(severity="high"), Q(severity="normal")
    remind_cutoff = now - timedelta(minutes=settings.ESCALATION_REMIND_AFTER_MINUTES)
    overdue = Q(status=Escalation.Status.OPEN, created_at__lt=remind_cutoff)
    inbox = Escalation.objects.aggregate(
        high=Count("id", filter=live & high), high_oldest=Min("created_at", filter=live & high),
        normal=Count("id", filter=live & normal), normal_oldest=Min("created_at", filter=live & normal),
        overdue=Count("id", filter=overdue), overdue_oldest=Min("created_at", filter=overdue),
    )  # fmt: skip
    tasks = Task.objects.aggregate(
        stuck=Count("id", filter=Q(status=Task.Status.PROCESSING, lease_until__lt=now)),
        flagged=Count("id", filter=Q(needs_operator=True)),
    )
    unresolved = "open,acknowledged"
    stamp = _stamp(now)
    return [
        Attention("High-severity escalations", inbox["high"],
                  _changelist("escalations.escalation", status__in=unresolved, severity__exact="high"),
                  _since(inbox["high_oldest"], now)),
        Attention("Normal escalations", inbox["normal"],
                  _changelist("escalations.escalation", status__in=unresolved, severity__exact="normal"),
                  _since(inbox["normal_oldest"], now)),
        Attention("Unacknowledged past the reminder", inbox["overdue"],
                  _changelist("escalations.escalation", status__exact="open", created_at__lt=_stamp(remind_cutoff)),
                  _since(inbox["overdue_oldest"], now)),
        Attention("Dead notifications", Notification.objects.filter(status=Notification.Status.DEAD).count(),
                  _changelist("escalations.notification", status__exact="dead")),
        Attention("Tasks stuck past their lease", tasks["stuck"],
                  _changelist("agency.task", status__exact="processing", lease_until__lt=stamp)),
        Attention("Draft bids awaiting approval", Bid.objects.filter(status=Bid.Status.DRAFT).count(),
                  _changelist("bids.bid", status__exact="draft")),
        Attention("Open model breakers",
                  BreakerState.objects.exclude(status=BreakerState.Status.CLOSED).count(),
                  _changelist("agency.modeldeployment", breaker__status__in="open,half_open")),
        Attention("Open marketplace breakers", Marketplace.objects.filter(open_until__gt=now).count(),
                  _changelist("bids.marketplace", open_until__gt=stamp)),
        Attention("Payments flagged for an operator", tasks["flagged"],
                  _changelist("agency.task", needs_operator__exact="1")),
    ]  # fmt: skip


# --- Money ----------------------------------------------------------------------------------------


@dataclass
class Money:
    """Money in and out over some span, in cents (exact decimals where the ledger has fractions)."""

    label: str
    revenue: int = 0
    fees: Decimal = Decimal(0)
    model_cost: Decimal = Decimal(0)
    compute_cost: Decimal = Decimal(0)
    url: str = ""

    @property
    def costs(self) -> Decimal:
        return self.fees + self.model_cost + self.compute_cost

    @property
    def profit(self) -> Decimal:
        return self.revenue - self.costs

    def __add__(self, other: "Money") -> "Money":
        """The two together, under this one's label and link."""
        return replace(
            self, revenue=self.revenue + other.revenue, fees=self.fees + other.fees,
            model_cost=self.model_cost + other.model_cost, compute_cost=self.compute_cost + other.compute_cost,
        )  # fmt: skip

    def __sub__(self, other: "Money") -> "Money":
        """This one less the other, under this one's label and link."""
        return replace(
            self, revenue=self.revenue - other.revenue, fees=self.fees - other.fees,
            model_cost=self.model_cost - other.model_cost, compute_cost=self.compute_cost - other.compute_cost,
        )  # fmt: skip


_FEE = ExpressionWrapper(
    F("task__price_cents") * F("marketplace__fee_percent") / Value(100),
    output_field=DecimalField(max_digits=20, decimal_places=4),
)


def _compute_cents(milliseconds: int) -> Decimal:
    return Decimal(milliseconds) / 1000 * settings.COMPUTE_CENTS_PER_SECOND


def _completed_in(start: datetime, end: datetime):
    return Task.objects.filter(status=Task.Status.COMPLETED, completed_at__gte=start, completed_at__lt=end)


def _won_in(start: datetime, end: datetime):
    return Bid.objects.filter(
        task__status=Task.Status.COMPLETED, task__completed_at__gte=start, task__completed_at__lt=end
    )


def window_start(*, today: date, days: int) -> datetime:
    """Midnight (the current time zone's) at the start of the window of `days` days ending today."""
    first = today - timedelta(days=days - 1)
    return datetime.combine(first, datetime.min.time(), tzinfo=timezone.get_current_timezone())


def money_by_day(*, today: date, days: int) -> list[Money]:
    """Each of the last `days` days, oldest first: revenue of the tasks completed that day, the
    marketplaces' fees on them, the ledger's model calls of that day and the compute of that day's
    attempts."""
    start = window_start(today=today, days=days)
    end = start + timedelta(days=days)
    rows = {day: Money(label=day.isoformat()) for day in (start.date() + timedelta(days=n) for n in range(days))}

    def per_day(queryset, moment: str, total):
        return queryset.annotate(day=TruncDate(moment)).values("day").annotate(total=total).order_by()

    for row in per_day(_completed_in(start, end), "completed_at", Sum("price_cents")):
        rows[row["day"]].revenue = row["total"]
    for row in per_day(_won_in(start, end), "task__completed_at", Sum(_FEE)):
        rows[row["day"]].fees = row["total"]
    window = {"created_at__gte": start, "created_at__lt": end}
    for row in per_day(ModelCall.objects.filter(**window), "created_at", Sum("cost_cents")):
        rows[row["day"]].model_cost = row["total"]
    for row in per_day(Attempt.objects.filter(**window), "created_at", Sum("compute_ms")):
        rows[row["day"]].compute_cost = _compute_cents(row["total"])
    return list(rows.values())


def money_by_marketplace(*, start: datetime, end: datetime, total: Money) -> list[Money]:
    """The window's money per marketplace, busiest first, then what no marketplace brought or
    caused (direct clients, calls on no task): `total` (the window's sum) less the marketplaces'.

    A marketplace's share: the tasks its won bids became (revenue, its fee, their model calls and
    compute) and the model calls that evaluated its postings."""

    def money(pk: int, name: str) -> Money:
        return Money(label=name, url=_changelist("bids.bid", marketplace__id__exact=pk))

    # Every active marketplace has a row, busy or not; inactive ones only if they brought something.
    rows = {pk: money(pk, name) for pk, name in Marketplace.objects.filter(active=True).values_list("pk", "name")}

    def row(values: dict) -> Money:
        pk = values["marketplace_id"]
        if pk not in rows:
            rows[pk] = money(pk, values["marketplace__name"])
        return rows[pk]

    def per_marketplace(queryset, **totals):
        return queryset.values("marketplace_id", "marketplace__name").annotate(**totals).order_by()

    for values in per_marketplace(_won_in(start, end), revenue=Sum("task__price_cents"), fees=Sum(_FEE)):
        row(values).revenue, row(values).fees = values["revenue"], values["fees"]
    # The filter and the sum go through the same join: only the window's calls and attempts count.
    calls = Bid.objects.filter(task__model_calls__created_at__gte=start, task__model_calls__created_at__lt=end)
    for values in per_marketplace(calls, cost=Sum("task__model_calls__cost_cents")):
        row(values).model_cost = values["cost"]
    evaluations = Posting.objects.filter(
        model_calls__created_at__gte=start, model_calls__created_at__lt=end, model_calls__task__isnull=True
    )
    for values in per_marketplace(evaluations, cost=Sum("model_calls__cost_cents")):
        row(values).model_cost += values["cost"]  # on top of its tasks' calls
    attempts = Bid.objects.filter(task__work_attempts__created_at__gte=start, task__work_attempts__created_at__lt=end)
    for values in per_marketplace(attempts, ms=Sum("task__work_attempts__compute_ms")):
        row(values).compute_cost = _compute_cents(values["ms"])
    found = sorted(rows.values(), key=lambda m: (-m.revenue, m.label))
    rest = replace(total, label="Direct and unattributed", url="") - money_total(found, label="")
    return [*found, rest]


def money_total(rows: list[Money], *, label: str) -> Money:
    return sum(rows, start=Money(label=label))


# --- Arena ----------------------------------------------------------------------------------------


def arena_standings(*, limit: int) -> list[PairStanding]:
    """The pairs with the most duels first (one query; the rest are on the standings page)."""
    fought = F("first_wins") + F("second_wins") + F("ties") + F("none_passed")
    return list(
        PairStanding.objects.select_related("domain__routed_profile", "first", "second")
        .annotate(fought=fought)
        .order_by("-fought", "domain__slug", "pk")[:limit]
    )
