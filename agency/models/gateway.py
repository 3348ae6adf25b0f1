"""The model gateway's configuration, its circuit breakers and its ledger (docs/gateway.md).

Operators edit providers, deployments and routes in the admin; breaker rows and
ledger rows are written by `agency.gateway` only.
"""

from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

from tracing.models import TraceStamped

# Prices are cents per million tokens with up to 4 decimals (0.0125 ¢ = $0.000125 per 1M);
# a cost is tokens * price / 1 000 000, so 10 decimals hold every cost exactly.
PRICE = {"max_digits": 14, "decimal_places": 4}
COST = {"max_digits": 24, "decimal_places": 10}


class ProviderKind(models.TextChoices):
    LOCAL = "local"  # Ollama, vLLM, llama.cpp on our own hardware
    CLOUD = "cloud"  # OpenAI, OpenRouter, Together…


class Provider(models.Model):
    """An OpenAI-compatible server. Its key stays in the environment: the row holds the variable's *name*."""

    Kind = ProviderKind

    name = models.CharField(max_length=50)
    kind = models.CharField(max_length=10, choices=ProviderKind.choices)
    base_url = models.URLField(max_length=300, help_text="The OpenAI-compatible API root, e.g. https://host/v1.")
    api_key_env = models.CharField(
        max_length=100,
        blank=True,
        validators=[RegexValidator(r"^[A-Za-z_][A-Za-z0-9_]*$", "An environment variable name.")],
        help_text="Name of the environment variable holding the API key (never the key). Empty: no key.",
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["name"], name="agency_provider_unique_name"),
            models.CheckConstraint(condition=Q(kind__in=ProviderKind.values), name="agency_provider_known_kind"),
        ]

    def __str__(self) -> str:
        return self.name


class ModelDeployment(models.Model):
    """One model on one provider, with its price. A deployment without a price never runs.

    Priced means both token prices are set (zero is a valid, explicit price) or, for a local
    model, the cost of a GPU-second is set (charged for the call's wall-clock time).
    """

    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="deployments")
    model = models.CharField(max_length=200, help_text="The model name as the provider knows it.")
    price_in_cents_per_1m = models.DecimalField(**PRICE, null=True, blank=True, verbose_name="input ¢ per 1M tokens")
    price_out_cents_per_1m = models.DecimalField(**PRICE, null=True, blank=True, verbose_name="output ¢ per 1M tokens")
    gpu_second_cents = models.DecimalField(
        **PRICE, null=True, blank=True, verbose_name="¢ per GPU-second", help_text="Local models only."
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["provider__name", "model"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "model"], name="agency_modeldeployment_unique_model"),
            models.CheckConstraint(
                condition=Q(price_in_cents_per_1m__isnull=True) | Q(price_in_cents_per_1m__gte=0),
                name="agency_modeldeployment_price_in_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(price_out_cents_per_1m__isnull=True) | Q(price_out_cents_per_1m__gte=0),
                name="agency_modeldeployment_price_out_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(gpu_second_cents__isnull=True) | Q(gpu_second_cents__gte=0),
                name="agency_modeldeployment_gpu_second_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider.name}/{self.model}" if self.provider_id else self.model

    @property
    def is_priced(self) -> bool:
        tokens = self.price_in_cents_per_1m is not None and self.price_out_cents_per_1m is not None
        return tokens or self.gpu_second_cents is not None


class Purpose(models.TextChoices):
    EVALUATE = "evaluate"
    PROPOSE = "propose"
    PLAN = "plan"
    WORK = "work"
    REVIEW = "review"
    JUDGE = "judge"


class Route(models.Model):
    """Which deployments serve a task domain and purpose, in order: the primary, then fallbacks.

    An empty domain serves every domain, an empty purpose every purpose; the most specific
    route wins (`agency.gateway.selectors.route_for`).
    """

    name = models.SlugField(max_length=50)
    domain = models.ForeignKey("agency.Domain", null=True, blank=True, on_delete=models.CASCADE, related_name="routes")
    purpose = models.CharField(max_length=10, choices=Purpose.choices, blank=True)
    deployments = models.ManyToManyField(ModelDeployment, through="RouteStep", related_name="routes")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["name"], name="agency_route_unique_name"),
            models.UniqueConstraint(fields=["domain", "purpose"], name="agency_route_unique_domain_purpose"),
            models.CheckConstraint(
                condition=Q(purpose="") | Q(purpose__in=Purpose.values), name="agency_route_known_purpose"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class RouteStep(models.Model):
    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="steps")
    deployment = models.ForeignKey(ModelDeployment, on_delete=models.PROTECT, related_name="route_steps")
    position = models.PositiveSmallIntegerField(help_text="0 is the primary; higher positions are fallbacks.")

    class Meta:
        ordering = ["route", "position"]
        constraints = [
            models.UniqueConstraint(fields=["route", "position"], name="agency_routestep_unique_position"),
            models.UniqueConstraint(fields=["route", "deployment"], name="agency_routestep_unique_deployment"),
        ]

    def __str__(self) -> str:
        return f"{self.route_id}#{self.position}"


class BreakerStatus(models.TextChoices):
    CLOSED = "closed"  # calls go through
    OPEN = "open"  # no call goes out until the cool-down has passed
    HALF_OPEN = "half_open", "Half-open (one trial call running)"


class BreakerState(models.Model):
    """The circuit breaker of one deployment, shared by every process through this row.

    Changed only by compare-and-set UPDATEs in `agency.gateway.breaker`. `changed_at` is when
    the status last changed: for `open` the start of the cool-down, for `half_open` the start
    of the trial (a trial older than the cool-down is presumed lost and may be claimed again).
    """

    Status = BreakerStatus

    deployment = models.OneToOneField(
        ModelDeployment, primary_key=True, on_delete=models.CASCADE, related_name="breaker"
    )
    status = models.CharField(max_length=10, choices=BreakerStatus.choices, default=BreakerStatus.CLOSED)
    failures = models.PositiveIntegerField(default=0, help_text="Consecutive failed calls.")
    changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "breaker state"
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=BreakerStatus.values), name="agency_breakerstate_known_status"
            ),
            models.CheckConstraint(
                condition=Q(status="closed") | Q(changed_at__isnull=False), name="agency_breakerstate_open_has_time"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.deployment_id}: {self.status}"


class BreakerEvent(TraceStamped):
    """The audit trail of a breaker: one row per status change, written with it."""

    deployment = models.ForeignKey(ModelDeployment, on_delete=models.CASCADE, related_name="breaker_events")
    from_status = models.CharField(max_length=10, choices=BreakerStatus.choices)
    to_status = models.CharField(max_length=10, choices=BreakerStatus.choices)
    actor = models.CharField(max_length=100)
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.deployment_id}: {self.from_status} → {self.to_status}"


class CallOutcome(models.TextChoices):
    OK = "ok"
    ERROR = "error"  # no usable answer: timeout, connection, HTTP error, malformed envelope
    INVALID_OUTPUT = "invalid_output", "Invalid output (answered, failed its schema)"


class ModelCall(TraceStamped):
    """The ledger: one row per HTTP attempt at a model, written whether it worked or not.

    Calls the breaker refused and calls refused for configuration made no request and have
    no row. `attempt` counts the attempts of one `gateway_complete` call from 1, across its
    deployments. Task, bid and arena costs are sums over these rows; other apps link their
    rows to these, never the reverse.
    """

    Outcome = CallOutcome
    Purpose = Purpose

    # No single-column indexes on deployment and task: the (column, created_at) indexes below lead
    # with them, and every index is one more write on every model call.
    deployment = models.ForeignKey(ModelDeployment, on_delete=models.PROTECT, related_name="calls", db_index=False)
    route = models.ForeignKey(Route, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls")
    purpose = models.CharField(max_length=10, choices=Purpose.choices)
    task = models.ForeignKey(
        "agency.Task", null=True, blank=True, on_delete=models.PROTECT, related_name="model_calls", db_index=False
    )
    agent_attempt = models.ForeignKey(
        "agency.Attempt", null=True, blank=True, on_delete=models.PROTECT, related_name="model_calls"
    )
    attempt = models.PositiveSmallIntegerField()
    outcome = models.CharField(max_length=16, choices=CallOutcome.choices)
    error_class = models.CharField(max_length=100, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    cost_cents = models.DecimalField(**COST, default=0, help_text="From our price table, exact.")
    provider_cost_cents = models.DecimalField(
        **COST, null=True, blank=True, help_text="What the provider's answer said it cost, when it said."
    )
    latency_ms = models.PositiveIntegerField()

    class Meta:
        verbose_name = "model call"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["task", "created_at"], name="agency_modelcall_task"),
            models.Index(fields=["deployment", "created_at"], name="agency_modelcall_deployment"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(purpose__in=Purpose.values), name="agency_modelcall_known_purpose"),
            models.CheckConstraint(condition=Q(outcome__in=CallOutcome.values), name="agency_modelcall_known_outcome"),
            models.CheckConstraint(condition=Q(attempt__gte=1), name="agency_modelcall_attempt_from_one"),
            models.CheckConstraint(
                condition=Q(tokens_in__gte=0, tokens_out__gte=0), name="agency_modelcall_tokens_non_negative"
            ),
            models.CheckConstraint(condition=Q(cost_cents__gte=0), name="agency_modelcall_cost_non_negative"),
            models.CheckConstraint(
                condition=Q(provider_cost_cents__isnull=True) | Q(provider_cost_cents__gte=0),
                name="agency_modelcall_provider_cost_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(outcome="ok", error_class="") | (~Q(outcome="ok") & ~Q(error_class="")),
                name="agency_modelcall_error_class_iff_failed",
            ),
        ]

    def __str__(self) -> str:
        return f"Model call #{self.pk} ({self.purpose}, {self.outcome})"
