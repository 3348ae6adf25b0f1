from django.contrib import admin, messages
from django.db.models import Case, Value, When

from agency.admin import ReadOnlyInline
from agency.errors import DomainError
from escalations.models import Escalation, EscalationEvent
from escalations.services import escalation_acknowledge


class EscalationEventInline(ReadOnlyInline):
    model = EscalationEvent
    fields = ["created_at", "kind", "actor", "detail", "trace_id"]


@admin.register(Escalation)
class EscalationAdmin(admin.ModelAdmin):
    """The operator inbox (first cut): open work first, high severity on top, oldest first."""

    list_display = ["id", "task", "reason", "severity", "status", "assignee", "created_at"]
    list_filter = ["status", "severity", "reason"]
    search_fields = ["task__title", "detail"]
    list_select_related = ["task", "assignee"]
    show_full_result_count = False
    readonly_fields = [
        "task", "reason", "severity", "status", "idempotency_key", "context", "resolution",
        "acknowledged_at", "resolved_at", "created_at", "trace_id",
    ]  # fmt: skip
    fields = ["assignee", "detail", "notes", *readonly_fields]
    inlines = [EscalationEventInline]
    actions = ["acknowledge"]

    def get_ordering(self, request):
        # Unresolved first; within them "high" sorts before "normal"; then oldest first.
        resolved_last = Case(When(live_key__isnull=True, then=Value(1)), default=Value(0))
        return [resolved_last.asc(), "severity", "created_at"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Acknowledge selected escalations")
    def acknowledge(self, request, queryset):
        for escalation in queryset:
            try:
                escalation_acknowledge(escalation=escalation, actor=f"admin:user:{request.user.pk}")
            except DomainError as exc:
                self.message_user(request, f"#{escalation.pk}: {exc}", level=messages.WARNING)
