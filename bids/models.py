"""Marketplaces, the postings found on them, and the agency's bids (docs/bids.md)."""

import uuid

from django.core.validators import MaxValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from agency.models import Domain, ModelCall, Task
from agency.models.fields import ExactCharField
from tracing.models import TraceStamped

# A marketplace's token is read from the variable its row names, and only from one starting with
# this prefix: whoever edits marketplaces in the admin cannot point one at DATABASE_URL or the
# Django secret key and have it sent to a remote server.
CREDENTIAL_ENV_PREFIX = "MARKETPLACE_"


class MarketplaceKind(models.TextChoices):
    FREELANCER = "freelancer", "Freelancer.com API"
    UPWORK = "upwork", "Upwork GraphQL (search only)"
    FEED = "feed", "JSON, RSS or Atom feed"


class Marketplace(models.Model):
    """Where the agency looks for work. Training mode records bids as `simulated` and sends none."""

    Kind = MarketplaceKind

    slug = models.SlugField(max_length=50)
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    base_url = models.CharField(
        max_length=500, help_text="API root, or a feed's URL or file path (relative paths: the repository)."
    )
    credential_env = models.CharField(
        max_length=100,
        blank=True,
        validators=[
            RegexValidator(
                rf"^{CREDENTIAL_ENV_PREFIX}[A-Z0-9_]+$",
                f"An environment variable name starting with {CREDENTIAL_ENV_PREFIX}.",
            )
        ],
        help_text="Name of the environment variable holding the OAuth token (never the token). Empty: none.",
    )
    active = models.BooleanField(default=True)
    training_mode = models.BooleanField(default=True, help_text="Bids are recorded as simulated; nothing is sent.")
    scan_interval_seconds = models.PositiveIntegerField(default=900)
    fee_percent = models.DecimalField(
        max_digits=5, decimal_places=2, default=10, validators=[MaxValueValidator(100)],
        help_text="What the marketplace keeps of a won bid.",
    )  # fmt: skip
    search = models.JSONField(
        default=dict,
        blank=True,
        help_text='Search parameters, e.g. {"query": "data analysis", "limit": 50}; feeds: {"fields": {…}} maps '
        "our field names to the feed's.",
    )
    last_scan_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Counters, kept with F() updates by the services.
    postings_seen = models.PositiveIntegerField(default=0, editable=False)
    bids_placed = models.PositiveIntegerField(default=0, editable=False)
    bids_won = models.PositiveIntegerField(default=0, editable=False)
    revenue_cents = models.PositiveBigIntegerField(default=0, editable=False)
    # Its circuit breaker: after MARKETPLACE_BREAKER_FAILURES failures in a row, calls stop until the cool-down ends.
    failures = models.PositiveSmallIntegerField(default=0, editable=False)
    open_until = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.UniqueConstraint(fields=["slug"], name="bids_marketplace_unique_slug"),
            models.CheckConstraint(condition=Q(kind__in=MarketplaceKind.values), name="bids_marketplace_known_kind"),
        ]

    def __str__(self) -> str:
        return self.slug

    @property
    def takes_api_bids(self) -> bool:
        """Whether bids can be sent by API (Upwork and feeds: an operator submits them by hand)."""
        return self.kind == MarketplaceKind.FREELANCER


class PostingDecision(models.TextChoices):
    PENDING = "pending"  # not evaluated yet
    BID = "bid"
    SKIP = "skip"
    REVIEW = "needs_review"


class Posting(models.Model):
    """A job seen on a marketplace; one row per marketplace and external id, however often it is seen."""

    Decision = PostingDecision

    marketplace = models.ForeignKey(Marketplace, on_delete=models.PROTECT, related_name="postings")
    external_id = ExactCharField(max_length=100, help_text="The marketplace's id, else SHA-256 of the canonical URL.")
    title = models.CharField(max_length=300)
    description = models.TextField(blank=True)
    url = models.URLField(max_length=1000, blank=True)
    budget_min_cents = models.PositiveBigIntegerField(null=True, blank=True)
    budget_max_cents = models.PositiveBigIntegerField(null=True, blank=True)
    currency = models.CharField(max_length=3, default="USD")
    skills = models.JSONField(default=list, blank=True)
    posted_at = models.DateTimeField(null=True, blank=True)
    first_seen_at = models.DateTimeField(editable=False)
    last_seen_at = models.DateTimeField(editable=False)
    raw = models.JSONField(default=dict, blank=True, editable=False)
    # The evaluation (docs/bids.md "Evaluation").
    decision = models.CharField(max_length=20, choices=Decision.choices, default=Decision.PENDING, editable=False)
    reasons = models.JSONField(default=list, blank=True, editable=False)
    domain = models.ForeignKey(Domain, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    proposed_cents = models.PositiveBigIntegerField(null=True, blank=True, editable=False)
    expected_cost_cents = models.PositiveBigIntegerField(null=True, blank=True, editable=False)
    expected_profit_cents = models.BigIntegerField(null=True, blank=True, editable=False)
    confidence = models.DecimalField(max_digits=3, decimal_places=2, null=True, blank=True, editable=False)
    evaluated_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Ledger rows of the model evaluation and proposal (the core never links back to bids).
    model_calls = models.ManyToManyField(ModelCall, blank=True, related_name="+", editable=False)

    class Meta:
        ordering = ["-first_seen_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["marketplace", "external_id"], name="bids_one_posting_per_external_id"),
            models.CheckConstraint(
                condition=Q(decision__in=PostingDecision.values), name="bids_posting_known_decision"
            ),
        ]
        # The admin's and the API's order, plain and by decision (the evaluation's count uses the second).
        indexes = [
            models.Index(fields=["-first_seen_at", "-id"], name="bids_posting_newest"),
            models.Index(fields=["decision", "-first_seen_at", "-id"], name="bids_posting_decision_newest"),
        ]

    def __str__(self) -> str:
        return f"{self.marketplace_id}:{self.external_id} {self.title[:60]}"


class BidStatus(models.TextChoices):
    DRAFT = "draft"  # waits for an operator
    APPROVED = "approved"  # to be sent
    SUBMITTING = "submitting"  # claimed by a sender; the remote call may or may not have happened
    SUBMITTED = "submitted"
    WON = "won"
    LOST = "lost"
    WITHDRAWN = "withdrawn"
    REJECTED = "rejected"  # by an operator, before sending
    FAILED = "failed"  # the marketplace refused it
    SIMULATED = "simulated"  # training mode: recorded, never sent


# A bid in one of these no longer counts as the posting's bid, so a new one may be made.
ENDED = (BidStatus.WITHDRAWN, BidStatus.REJECTED, BidStatus.FAILED)
LIVE_KEY = "live"


class Bid(TraceStamped):
    """The agency's bid on a posting.

    `live_key` is "live" while the bid counts as the posting's bid and NULL once it has ended
    (withdrawn, rejected, failed), so the unique (posting, live_key) allows one live bid per posting on
    every database: NULLs never collide and no partial index is needed. `idempotency_key` goes with
    every remote call for this bid, resubmissions included.
    """

    Status = BidStatus

    marketplace = models.ForeignKey(Marketplace, on_delete=models.PROTECT, related_name="bids")
    posting = models.ForeignKey(Posting, on_delete=models.PROTECT, related_name="bids")
    amount_cents = models.PositiveBigIntegerField()
    currency = models.CharField(max_length=3, default="USD")
    proposal = models.TextField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT, editable=False)
    live_key = ExactCharField(max_length=10, null=True, blank=True, default=LIVE_KEY, editable=False)
    remote_id = ExactCharField(max_length=100, null=True, blank=True, editable=False)
    idempotency_key = models.UUIDField(default=uuid.uuid4, editable=False)
    # The sender holding the `submitting` claim, and since when (reconciliation's grace period).
    claim_token = models.UUIDField(null=True, blank=True, editable=False)
    claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    sends = models.PositiveSmallIntegerField(default=0, editable=False, help_text="Remote placements tried.")
    last_error = models.TextField(blank=True, editable=False)
    submitted_at = models.DateTimeField(null=True, blank=True, editable=False)
    decided_at = models.DateTimeField(null=True, blank=True, editable=False)
    task = models.OneToOneField(
        Task, null=True, blank=True, on_delete=models.PROTECT, related_name="+", editable=False
    )  # the paid task a won bid became
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["posting", "live_key"], name="bids_one_live_bid_per_posting"),
            models.UniqueConstraint(fields=["marketplace", "remote_id"], name="bids_one_bid_per_remote_id"),
            models.UniqueConstraint(fields=["idempotency_key"], name="bids_unique_idempotency_key"),
            models.CheckConstraint(condition=Q(status__in=BidStatus.values), name="bids_bid_known_status"),
            models.CheckConstraint(
                condition=(Q(status__in=ENDED) & Q(live_key=None)) | (~Q(status__in=ENDED) & Q(live_key=LIVE_KEY)),
                name="bids_live_key_iff_not_ended",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "claimed_at"], name="bids_bid_status_claimed"),
            models.Index(fields=["-created_at", "-id"], name="bids_bid_newest"),
            models.Index(fields=["status", "-created_at", "-id"], name="bids_bid_status_newest"),
        ]

    def __str__(self) -> str:
        return f"Bid #{self.pk} on {self.posting_id} ({self.status})"


class BidEvent(TraceStamped):
    """The bid's timeline: created, approved, claimed, submitted, settled, withdrawn, won…"""

    bid = models.ForeignKey(Bid, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=30)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    actor = models.CharField(max_length=100)
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} by {self.actor}"
