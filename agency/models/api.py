"""API credentials and idempotent requests."""

import uuid

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q

from agency.models.fields import ExactCharField
from tracing.models import TraceStamped


class ApiKey(TraceStamped):
    """A credential for integrations. Only a SHA-256 of the key is stored.

    Keys are 256-bit random tokens, so a plain SHA-256 is enough: there is
    nothing to brute-force, and a hash lookup keeps authentication to one
    indexed query.
    """

    class Scope(models.TextChoices):
        READ = "read"
        WRITE = "write"
        OPERATOR = "operator"

    # Each scope includes the ones before it.
    SCOPE_ORDER = (Scope.READ, Scope.WRITE, Scope.OPERATOR)

    name = models.CharField(max_length=100)
    prefix = ExactCharField(max_length=16, help_text="The key's public start, to recognise it.")
    key_hash = ExactCharField(max_length=64, editable=False)
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.READ)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API key"
        constraints = [
            models.UniqueConstraint(fields=["key_hash"], name="agency_apikey_unique_hash"),
            models.UniqueConstraint(fields=["prefix"], name="agency_apikey_unique_prefix"),
            models.CheckConstraint(
                condition=Q(scope__in=["read", "write", "operator"]), name="agency_apikey_known_scope"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…, {self.scope})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        return self.SCOPE_ORDER.index(self.scope) >= self.SCOPE_ORDER.index(scope)


class IdempotencyRecord(TraceStamped):
    """The first answer to a creating POST sent with an `Idempotency-Key`.

    A row is inserted (claimed) before the request is processed, so two
    concurrent requests with the same key cannot both create; `status_code`
    stays empty until the answer is stored.
    """

    principal = ExactCharField(max_length=64, help_text="Who sent it: key:<id> or user:<id>.")
    key = ExactCharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of method, path and body.")
    work_key = models.UUIDField(
        default=uuid.uuid4,
        editable=False,
        help_text="Names the work of this claim: kept when a stale claim is taken over, new after a release.",
    )
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["principal", "key"], name="agency_idempotency_one_per_principal_key"),
            models.CheckConstraint(
                condition=Q(status_code__isnull=True) | Q(status_code__gte=100, status_code__lt=600),
                name="agency_idempotency_http_status",
            ),
        ]

    def __str__(self) -> str:
        state = self.status_code or "in progress"
        return f"Idempotency-Key {self.key} ({self.principal}): {state}"
