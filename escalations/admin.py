from collections.abc import Callable

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Case, Value, When
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.text import Truncator

from agency.admin import ChangedFieldsOnlyAdmin, ReadOnlyAdmin, ReadOnlyInline, admin_actor, each_row
from agency.errors import DomainError
from escalations.models import Escalation, EscalationEvent, Notification, NotificationChannel
from escalations.services import (
    escalation_acknowledge,
    escalation_assign,
    escalation_resolve,
    notification_requeue,
)

Resolution = Escalation.Resolution


class EscalationEventInline(ReadOnlyInline):
    model = EscalationEvent
    fields = ["created_at", "kind", "actor", "detail", "trace_id"]


class NotificationInline(ReadOnlyInline):
    model = Notification
    fields = ["channel", "event", "status", "attempts", "next_attempt_at", "last_error", "sent_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("channel")


class ResolveForm(forms.Form):
    resolution = forms.ChoiceField(choices=Resolution.choices)
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    deliverable = forms.FileField(
        required=False, help_text="The finished work, stored for the client; completes the task by hand."
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("deliverable") and cleaned.get("resolution") != Resolution.COMPLETED_MANUALLY:
            # A file completes the task; taking it with another resolution would store work nobody delivers.
            self.add_error("resolution", "A deliverable goes with “completed manually”.")
        return cleaned


@admin.register(Escalation)
class EscalationAdmin(ChangedFieldsOnlyAdmin):
    """The operator inbox: open work first, high severity on top, oldest first.

    Saving the change page writes only the fields the operator edited (notes, detail), so
    it cannot put back a status that a service changed while the page was open.
    """

    list_display = ["id", "task", "reason", "severity", "status", "attempts", "error", "assignee", "created_at"]
    list_filter = ["status", "severity", "reason"]
    search_fields = ["task__title", "detail"]
    list_select_related = ["task", "assignee"]
    show_full_result_count = False
    readonly_fields = [
        "task", "reason", "severity", "status", "assignee", "idempotency_key", "context", "resolution",
        "acknowledged_at", "resolved_at", "created_at", "trace_id",
    ]  # fmt: skip
    fields = ["detail", "notes", *readonly_fields]  # assignee changes go through the "assign" action
    inlines = [EscalationEventInline, NotificationInline]
    actions = ["acknowledge", "assign_to_me", "resolve_retried", "resolve_failed", "resolve_refunded", "dismiss"]

    def get_ordering(self, request):
        # Unresolved first; within them "high" sorts before "normal"; then oldest first.
        resolved_last = Case(When(live_key__isnull=True, then=Value(1)), default=Value(0))
        return [resolved_last.asc(), "severity", "created_at"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # the inbox is an audit trail: escalations are resolved, never deleted

    @admin.display(description="attempts")
    def attempts(self, escalation: Escalation):
        return escalation.context.get("attempts", "")

    @admin.display(description="last error")
    def error(self, escalation: Escalation) -> str:
        return Truncator(escalation.context.get("error") or "").chars(80)

    # --- Actions: each row goes through the service on its own; one refusal does not stop the rest.

    @admin.action(description="Acknowledge selected escalations", permissions=["change"])
    def acknowledge(self, request, queryset):
        self._each(
            request,
            queryset,
            "acknowledged",
            lambda e: escalation_acknowledge(escalation=e, actor=admin_actor(request)),
        )

    @admin.action(description="Assign selected escalations to me", permissions=["change"])
    def assign_to_me(self, request, queryset):
        self._each(
            request,
            queryset,
            "assigned to you",
            lambda e: escalation_assign(escalation=e, assignee=request.user, actor=admin_actor(request)),
        )

    @admin.action(description="Resolve: retry the task", permissions=["change"])
    def resolve_retried(self, request, queryset):
        self._resolve(request, queryset, Resolution.RETRIED)

    @admin.action(description="Resolve: fail the task", permissions=["change"])
    def resolve_failed(self, request, queryset):
        self._resolve(request, queryset, Resolution.FAILED)

    @admin.action(description="Resolve: refunded (fail the task, flag it for a refund)", permissions=["change"])
    def resolve_refunded(self, request, queryset):
        self._resolve(request, queryset, Resolution.REFUNDED)

    @admin.action(description="Dismiss (resolve, task unchanged)", permissions=["change"])
    def dismiss(self, request, queryset):
        self._resolve(request, queryset, Resolution.DISMISSED)

    def _resolve(self, request, queryset, resolution: str) -> None:
        self._each(
            request,
            queryset,
            f"resolved ({resolution})",
            lambda e: escalation_resolve(escalation=e, resolution=resolution, actor=admin_actor(request)),
        )

    def _each(self, request, queryset, done_as: str, apply: Callable[[Escalation], object]) -> None:
        done, refused = each_row(queryset, apply)
        for refusal in refused:
            self.message_user(request, refusal, level=messages.WARNING)
        self.message_user(request, f"{done} escalation(s) {done_as}.")

    # --- The resolve page: a resolution with a note, or the finished work uploaded by hand.

    def get_urls(self):
        opts = self.opts
        resolve = path(
            "<path:object_id>/resolve/",
            self.admin_site.admin_view(self.resolve_view),
            name=f"{opts.app_label}_{opts.model_name}_resolve",
        )
        return [resolve, *super().get_urls()]  # before the catch-all "<path:object_id>/"

    def resolve_view(self, request, object_id):
        escalation = self.get_object(request, unquote(object_id))
        if escalation is None:
            raise Http404("No such escalation.")
        if not self.has_change_permission(request, escalation):
            raise PermissionDenied
        form = ResolveForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                self._resolve_with_form(request, escalation, form.cleaned_data)
            except DomainError as exc:
                form.add_error(None, str(exc))
            else:
                self.message_user(request, f"Escalation #{escalation.pk} resolved: {form.cleaned_data['resolution']}.")
                change = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[escalation.pk])
                return HttpResponseRedirect(change)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Resolve escalation #{escalation.pk}",
            "opts": self.opts,
            "original": escalation,
            "form": form,
        }
        return TemplateResponse(request, "admin/escalations/escalation/resolve.html", context)

    def _resolve_with_form(self, request, escalation: Escalation, data: dict) -> None:
        escalation_resolve(
            escalation=escalation,
            resolution=data["resolution"],
            actor=admin_actor(request),
            note=data["note"],
            deliverable=data["deliverable"] or None,
        )


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "kind", "tier", "severities", "active"]
    list_filter = ["kind", "tier", "active"]
    search_fields = ["name", "slug"]
    fields = ["name", "slug", "secret_variable", "kind", "target", "severities", "tier", "active"]

    def get_readonly_fields(self, request, obj=None):
        # The slug names the channel's secret variable: fixed once the channel exists.
        return ["secret_variable", "slug"] if obj else ["secret_variable"]

    @admin.display(description="secret variable")
    def secret_variable(self, channel: NotificationChannel) -> str:
        return channel.secret_variable if channel.slug else "NOTIFY_SECRET_<SLUG> (set the slug)"


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    """The outbox: written by the escalation services, sent by the relay; an operator can only requeue."""

    list_display = ["id", "escalation", "channel", "event", "status", "attempts", "next_attempt_at", "sent_at"]
    list_filter = ["status", "event", "channel__kind"]
    list_select_related = ["escalation", "channel"]
    show_full_result_count = False
    actions = ["retry_now"]

    def has_requeue_permission(self, request) -> bool:
        # Rows are never edited by hand, but whoever may change them may give a dead one another go.
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    @admin.action(description="Retry now (dead notifications)", permissions=["requeue"])
    def retry_now(self, request, queryset):
        rows = list(queryset)
        requeued = sum(notification_requeue(notification=n) for n in rows)
        self.message_user(request, f"{requeued} notification(s) queued again.")
        skipped = len(rows) - requeued
        if skipped:
            self.message_user(request, f"{skipped} skipped: only dead notifications are retried.", messages.WARNING)
