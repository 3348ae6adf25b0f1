"""Clients, domains and the tasks they pay for (docs/tasks.md)."""

import os
import uuid

from django.core.files.storage import storages
from django.db import models
from django.db.models import F, Q

from agency.models.fields import ExactCharField
from tracing.models import TraceStamped


def _known(field: str, choices: type[models.TextChoices]) -> Q:
    return Q(**{f"{field}__in": choices.values})


# Amounts are integer cents: only currencies with two decimal places (not JPY, not KWD).
TWO_DECIMAL_CURRENCIES = ["USD", "EUR", "GBP", "CAD", "AUD", "NZD", "CHF", "SEK", "NOK", "DKK", "PLN", "SGD"]


def private_storage():
    """Client inputs and deliverables: never under MEDIA_URL; reachable only through our views."""
    return storages["private"]


def _random_name(folder: str, filename: str) -> str:
    """Unguessable stored names; the original name is kept in its own column."""
    return f"{folder}/{uuid.uuid4().hex}{os.path.splitext(filename)[1].lower()}"


def input_upload_to(instance, filename: str) -> str:
    return _random_name("inputs", filename)


def deliverable_upload_to(instance, filename: str) -> str:
    return _random_name("deliverables", filename)


class Client(TraceStamped):
    """Someone who pays for tasks. One row per e-mail address, whatever its case.

    `email` is the address as the client first typed it; `email_normalized`
    (`normalize_email`, set by `agency.services.tasks.client_for_email`) is
    what makes two addresses one client. It has a column of its own so that a
    plain unique constraint holds on every database: MariaDB cannot index
    `Lower("email")`, and Django leaves such a constraint out there silently.
    """

    email = models.EmailField(max_length=254)
    email_normalized = ExactCharField(max_length=254, editable=False)
    name = models.CharField(max_length=200, blank=True)
    preferences = models.JSONField(default=dict, blank=True, help_text="Learned from review feedback.")
    completed_tasks = models.PositiveIntegerField(default=0, editable=False)
    spent_cents = models.PositiveBigIntegerField(default=0, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["email_normalized"], name="agency_client_unique_email_normalized"),
            models.CheckConstraint(condition=~Q(email_normalized=""), name="agency_client_email_normalized_set"),
        ]

    def __str__(self) -> str:
        return self.email

    @staticmethod
    def normalize_email(email: str) -> str:
        """The form two addresses share when they belong to one client: trimmed and lower-cased."""
        return email.strip().lower()


class Domain(models.Model):
    """A kind of work with its base rate; operators edit these in the admin."""

    slug = models.SlugField(max_length=50)
    name = models.CharField(max_length=100)
    base_rate_cents = models.PositiveIntegerField(help_text="Price of a simple, standard task, in cents.")
    currency = models.CharField(max_length=3, default="USD")
    active = models.BooleanField(default=True)
    skills = models.JSONField(
        default=list, blank=True, help_text="Marketplace skills this domain covers, lower-case (bid evaluation)."
    )
    routed_profile = models.ForeignKey(
        "agency.AgentProfile", null=True, blank=True, on_delete=models.SET_NULL, related_name="routed_domains",
        editable=False, help_text="The agent profile promoted for this domain (routing changes); empty: by priority.",
    )  # fmt: skip

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.UniqueConstraint(fields=["slug"], name="agency_domain_unique_slug"),
            models.CheckConstraint(condition=Q(base_rate_cents__gt=0), name="agency_domain_positive_rate"),
            models.CheckConstraint(
                condition=Q(currency__in=TWO_DECIMAL_CURRENCIES), name="agency_domain_two_decimal_currency"
            ),
        ]

    def __str__(self) -> str:
        return self.slug


class TaskStatus(models.TextChoices):
    PENDING = "pending"
    PAID = "paid"
    PLANNING = "planning"
    PROCESSING = "processing"
    REVIEWING = "reviewing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ESCALATED = "escalated"


class TaskSource(models.TextChoices):
    DIRECT = "direct"
    MARKETPLACE = "marketplace"


class TaskComplexity(models.TextChoices):
    SIMPLE = "simple"
    MEDIUM = "medium"
    COMPLEX = "complex"


class TaskUrgency(models.TextChoices):
    STANDARD = "standard"
    RUSH = "rush"
    URGENT = "urgent"


class TaskPayment(models.TextChoices):
    STRIPE = "stripe"
    PREPAID = "prepaid"
    MARKETPLACE = "marketplace"


class Task(TraceStamped):
    """A unit of paid work. Its status changes only through `agency.services.tasks.task_transition`."""

    Status = TaskStatus
    Source = TaskSource
    Complexity = TaskComplexity
    Urgency = TaskUrgency
    Payment = TaskPayment

    source = models.CharField(max_length=20, choices=Source.choices, default=Source.DIRECT)
    client = models.ForeignKey(Client, null=True, blank=True, on_delete=models.PROTECT, related_name="tasks")
    domain = models.ForeignKey(Domain, on_delete=models.PROTECT, related_name="tasks")
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    complexity = models.CharField(max_length=10, choices=Complexity.choices, default=Complexity.MEDIUM)
    urgency = models.CharField(max_length=10, choices=Urgency.choices, default=Urgency.STANDARD)

    input_file = models.FileField(upload_to=input_upload_to, storage=private_storage, blank=True)
    input_name = models.CharField(max_length=255, blank=True)
    input_content_type = models.CharField(max_length=100, blank=True)
    input_size = models.PositiveBigIntegerField(null=True, blank=True)
    input_sha256 = models.CharField(max_length=64, blank=True)

    base_price_cents = models.PositiveIntegerField()
    discount_cents = models.PositiveIntegerField(default=0)
    price_cents = models.PositiveIntegerField()
    currency = models.CharField(max_length=3, default="USD")
    is_high_value = models.BooleanField(default=False)

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, editable=False)
    payment = models.CharField(max_length=20, choices=Payment.choices)
    # NULL, not "", until a Checkout Session exists: NULLs never collide in the unique constraint.
    stripe_session_id = ExactCharField(max_length=255, null=True, blank=True, editable=False)
    # Sent to Stripe as the Idempotency-Key of the checkout: unique across databases and resets.
    checkout_key = models.UUIDField(default=uuid.uuid4, editable=False)
    needs_operator = models.BooleanField(default=False, help_text="Flagged for a person (e.g. a payment mismatch).")
    operator_note = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # The work pipeline's claim: the worker working the task and until when. A worker renews it
    # between steps; once it runs out, another worker may take the task over (docs/agents.md).
    lease_owner = models.CharField(max_length=200, blank=True, editable=False)
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    paid_at = models.DateTimeField(null=True, blank=True, editable=False)
    completed_at = models.DateTimeField(null=True, blank=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "created_at"], name="agency_task_status_created"),
            models.Index(fields=["client", "status"], name="agency_task_client_status"),
        ]
        constraints = [
            # A retried creation (same Idempotency-Key) finds its task by this key instead of making another.
            models.UniqueConstraint(fields=["checkout_key"], name="agency_task_unique_checkout_key"),
            models.CheckConstraint(condition=_known("status", TaskStatus), name="agency_task_known_status"),
            models.CheckConstraint(condition=_known("source", TaskSource), name="agency_task_known_source"),
            models.CheckConstraint(condition=_known("complexity", TaskComplexity), name="agency_task_known_complexity"),
            models.CheckConstraint(condition=_known("urgency", TaskUrgency), name="agency_task_known_urgency"),
            models.CheckConstraint(condition=_known("payment", TaskPayment), name="agency_task_known_payment"),
            models.CheckConstraint(
                condition=Q(discount_cents__lte=F("base_price_cents")), name="agency_task_discount_within_base"
            ),
            models.CheckConstraint(
                condition=Q(price_cents=F("base_price_cents") - F("discount_cents")),
                name="agency_task_price_is_base_minus_discount",
            ),
            models.UniqueConstraint(fields=["stripe_session_id"], name="agency_task_unique_stripe_session"),
            models.CheckConstraint(
                condition=Q(currency__in=TWO_DECIMAL_CURRENCIES), name="agency_task_two_decimal_currency"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"

    def trace_summary(self) -> str:
        return f"Task #{self.pk} {self.title} ({self.status}, {self.price_cents / 100:.2f} {self.currency})"


class TaskEvent(TraceStamped):
    """One accepted status change of a task: the audit trail."""

    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="events")
    from_status = models.CharField(max_length=20, blank=True, help_text="Empty for the creation of the task.")
    to_status = models.CharField(max_length=20)
    actor = models.CharField(max_length=100, help_text="Who made the change: api:key:3, stripe, admin:user:1 …")
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=_known("to_status", TaskStatus), name="agency_taskevent_known_to_status"),
            models.CheckConstraint(
                condition=Q(from_status="") | _known("from_status", TaskStatus),
                name="agency_taskevent_known_from_status",
            ),
        ]

    def __str__(self) -> str:
        return f"Task #{self.task_id}: {self.from_status or '∅'} → {self.to_status} by {self.actor}"


class Deliverable(TraceStamped):
    """A file the agency produced for a task."""

    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="deliverables")
    file = models.FileField(upload_to=deliverable_upload_to, storage=private_storage)
    name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(sha256__regex=r"^[0-9a-f]{64}$"), name="agency_deliverable_sha256_hex"),
        ]

    def __str__(self) -> str:
        return f"{self.name} (task #{self.task_id})"


class DeliveryLink(TraceStamped):
    """A client's expiring, count-limited link to a task's deliverables. Only its token's hash is kept."""

    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="delivery_links")
    token_hash = ExactCharField(max_length=64, editable=False)
    expires_at = models.DateTimeField()
    max_downloads = models.PositiveSmallIntegerField(default=5)
    downloads = models.PositiveIntegerField(default=0, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["token_hash"], name="agency_deliverylink_unique_token"),
            models.CheckConstraint(
                condition=Q(downloads__lte=F("max_downloads")), name="agency_deliverylink_downloads_within_limit"
            ),
        ]

    def __str__(self) -> str:
        return f"Delivery link for task #{self.task_id} ({self.downloads}/{self.max_downloads})"
