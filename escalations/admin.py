import json
import re
from collections.abc import Callable, Iterable
from datetime import datetime

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.auth import get_user_model
from django.db.models import Case, Value, When
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator
from django.views.decorators.http import require_POST

from agency.admin import (
    ChangedFieldsOnlyAdmin,
    ReadOnlyAdmin,
    ReadOnlyInline,
    admin_actor,
    admin_object,
    each_row,
)
from agency.durations import duration_text
from agency.errors import DomainError
from escalations.models import Escalation, EscalationEvent, Notification, NotificationChannel
from escalations.services import (
    escalation_acknowledge,
    escalation_assign,
    escalation_resolve,
    notification_requeue,
)

Resolution = Escalation.Resolution
User = get_user_model()
# Actors as the services record them (agency.admin.admin_actor, agency.api.auth.actor_of).
_USER_ACTOR = re.compile(r"^(admin|api):user:(\d+)$")
_KEY_ACTOR = re.compile(r"^api:key:(\d+)$")
_NAMED_ACTORS = {"pipeline": "the pipeline", "timer": "the timer", "api:anonymous": "an anonymous API caller"}


def _stamp(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M %Z")


def _short(moment: datetime | None) -> str | None:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M") if moment else None


def _clipped(text: str, length: int):
    """The first `length` characters; the whole text on hover."""
    return format_html('<span title="{}">{}</span>', text, Truncator(text).chars(length)) if text else ""


def _context_value(value) -> str:
    # Strings as they are (an error message reads better unquoted); anything else as compact JSON.
    # Keys sorted: PostgreSQL's jsonb keeps its own order, the other databases the writer's.
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _context_table(context) -> str | None:
    rows = sorted(context.items()) if isinstance(context, dict) else [("value", context)]
    if not rows:
        return None  # the admin's "-"
    cells = format_html_join(
        "", '<tr><th scope="row">{}</th><td>{}</td></tr>', ((k, _context_value(v)) for k, v in rows)
    )
    return format_html('<table class="escalation-context"><tbody>{}</tbody></table>', cells)


def _usernames(actors: Iterable[str]) -> dict[int, str]:
    """The users named in `actors` (operators in the admin or the API), in one query."""
    pks = {int(match[2]) for match in map(_USER_ACTOR.match, actors) if match}
    return dict(User.objects.filter(pk__in=pks).values_list("pk", User.USERNAME_FIELD)) if pks else {}


def _actor_name(actor: str, usernames: dict[int, str]) -> str:
    if match := _USER_ACTOR.match(actor):
        via = "admin" if match[1] == "admin" else "API"
        name = usernames.get(int(match[2]))
        return f"operator {name} ({via})" if name else f"a deleted operator (#{match[2]}, {via})"
    if match := _KEY_ACTOR.match(actor):
        return f"API key #{match[1]}"
    if actor.startswith("pipeline "):  # "pipeline <worker>"
        return f"the pipeline ({actor.removeprefix('pipeline ')})"
    return _NAMED_ACTORS.get(actor, actor or "someone")


def _event_sentence(event: EscalationEvent, escalation: Escalation, usernames: dict[int, str]) -> str:
    """One timeline row as a sentence; a kind this does not know still reads as one, in the kind's words."""
    who, detail = _actor_name(event.actor, usernames), event.detail.strip()
    if event.kind == "opened":  # its detail is the escalation's own, shown above the timeline
        what = f"{who} opened the escalation: {escalation.get_reason_display().lower()}"
    elif event.kind == "acknowledged":
        what = f"{who} acknowledged it"
    elif event.kind == "assigned":  # detail: "to <username>" or "to nobody"
        what = f"{who} assigned it {detail}".rstrip()
    elif event.kind == "resolved":  # one per escalation, so its resolution is the escalation's
        resolution = escalation.get_resolution_display().lower()
        what = f"{who} resolved it as {resolution}" + (f": {detail}" if detail else "")
    elif event.kind in (Notification.Event.REMINDER, Notification.Event.SECONDARY):
        told = "reminded the primary channels" if event.kind == "reminder" else "told the secondary channels"
        what = f"{who} {told}: nobody had acknowledged it yet"
    else:
        what = f"{who} {event.kind.replace('_', ' ')}" + (f": {detail}" if detail else "")
    return f"{_stamp(event.created_at)} — {what}" + ("" if what.endswith((".", "!", "?")) else ".")


def _timeline(escalation: Escalation) -> str:
    events = list(escalation.events.all())  # oldest first (the model's ordering)
    usernames = _usernames(event.actor for event in events)
    rows = (
        # Trace links are the admin's business everywhere, not this list's; the id is at hand on hover.
        (f"trace {event.trace_id}" if event.trace_id else "", _event_sentence(event, escalation, usernames))
        for event in events
    )
    return format_html('<ol class="escalation-timeline">{}</ol>', format_html_join("", '<li title="{}">{}</li>', rows))


class NotificationInline(ReadOnlyInline):
    model = Notification
    fields = ["channel", "event", "status", "attempts", "next_attempt_at", "last_error", "sent_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("channel")


class ResolveForm(forms.Form):
    # No resolution preselected: a resolution changes the task, so the operator picks one on purpose.
    resolution = forms.ChoiceField(choices=[("", "— choose a resolution —"), *Resolution.choices])
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    deliverable = forms.FileField(
        required=False, help_text="The finished work, stored for the client; completes the task by hand."
    )

    def clean(self):
        cleaned = super().clean()
        resolution = cleaned.get("resolution")
        if cleaned.get("deliverable") and resolution and resolution != Resolution.COMPLETED_MANUALLY:
            # A file completes the task; taking it with another resolution would store work nobody delivers.
            self.add_error("resolution", "A deliverable goes with “completed manually”.")
        return cleaned


class AssignForm(forms.Form):
    assignee = forms.ModelChoiceField(
        queryset=User.objects.filter(is_active=True, is_staff=True).order_by(User.USERNAME_FIELD),
        required=False,
        empty_label="nobody",
        label="Assign to",
    )


@admin.register(Escalation)
class EscalationAdmin(ChangedFieldsOnlyAdmin):
    """The operator inbox: open work first, high severity on top, oldest first.

    The change page acts through the services (acknowledge, assign, resolve) with buttons of
    its own; saving the change form writes only the notes an operator edited, so it cannot
    put back a status that a service changed while the page was open.
    """

    list_display = ["task_short", "reason", "severity", "status", "waiting", "attempts", "error", "assignee"]
    list_display_links = ["task_short"]
    list_filter = ["status", "severity", "reason"]
    search_fields = ["task__title", "detail"]
    list_select_related = ["task", "assignee"]
    show_full_result_count = False
    fields = [
        "task", "reason", "severity", "status", "assignee", "detail", "context_table", "timeline", "notes",
        "resolution", "acknowledged_at", "resolved_at", "created_at", "idempotency_key", "trace_id",
    ]  # fmt: skip
    # Only the notes are edited here: the detail is what the opener reported, the rest changes through services.
    readonly_fields = [field for field in fields if field != "notes"]
    inlines = [NotificationInline]
    actions = ["acknowledge", "assign_to_me", "resolve_retried", "resolve_failed", "resolve_refunded", "dismiss"]

    def get_ordering(self, request):
        # Unresolved first; within them "high" sorts before "normal"; then oldest first.
        resolved_last = Case(When(live_key__isnull=True, then=Value(1)), default=Value(0))
        return [resolved_last.asc(), "severity", "created_at"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # the inbox is an audit trail: escalations are resolved, never deleted

    def changelist_view(self, request, extra_context=None):
        if IS_POPUP_VAR not in request.GET:  # a popup picking an escalation keeps Django's "Select …"
            extra_context = {"title": "Operator inbox", **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    @admin.display(description="task", ordering="task_id")
    def task_short(self, escalation: Escalation):
        task = escalation.task
        return format_html('<span title="{}">#{} {}</span>', task.title, task.pk, Truncator(task.title).chars(32))

    # Sorting "up" lists the shortest waits first: the newest escalations.
    @admin.display(description="waiting", ordering="-created_at")
    def waiting(self, escalation: Escalation):
        if escalation.resolved_at is not None:  # a closed one no longer waits: how long it took instead
            took = duration_text(escalation.resolved_at - escalation.created_at)
            resolved = _stamp(escalation.resolved_at)
            return format_html('<span title="resolved {}">took <span class="nowrap">{}</span></span>', resolved, took)
        waited = duration_text(timezone.now() - escalation.created_at)
        return format_html(
            '<span class="nowrap" title="open since {}">{}</span>', _stamp(escalation.created_at), waited
        )

    @admin.display(description="attempts")
    def attempts(self, escalation: Escalation):
        return escalation.context.get("attempts", "")

    @admin.display(description="last error")
    def error(self, escalation: Escalation):
        return _clipped(str(escalation.context.get("error") or ""), 60)

    @admin.display(description="context")
    def context_table(self, escalation: Escalation):
        return _context_table(escalation.context)

    @admin.display(description="timeline")
    def timeline(self, escalation: Escalation):
        return _timeline(escalation)

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

    # --- The change page: what the escalation is about, and the operator's buttons above the form.

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            reason = obj.get_reason_display().lower()
            context = {
                **context,
                "title": f"Escalation #{obj.pk}: {Truncator(obj.task.title).chars(60)} — {reason}",
                "subtitle": None,  # the title says it; str(obj) would repeat it in machine words
                "waited": self.waiting(obj),
                "resolution_label": obj.get_resolution_display().lower(),
                "assign_form": AssignForm(initial={"assignee": request.user.pk}, auto_id="assign_%s"),
            }
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self):
        opts = self.opts
        own = [
            # Each before the catch-all "<path:object_id>/"; admin_view checks the login and the CSRF token.
            path(
                f"<path:object_id>/{name}/",
                self.admin_site.admin_view(view),
                name=f"{opts.app_label}_{opts.model_name}_{name}",
            )
            for name, view in [
                ("resolve", self.resolve_view),
                ("acknowledge", require_POST(self.acknowledge_view)),
                ("assign", require_POST(self.assign_view)),
            ]
        ]
        return [*own, *super().get_urls()]

    def _changeable(self, request, object_id) -> Escalation:
        return admin_object(self, request, object_id, may=self.has_change_permission)

    def _change_page(self, escalation: Escalation) -> HttpResponseRedirect:
        return HttpResponseRedirect(
            reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[escalation.pk])
        )

    def _apply(self, request, escalation: Escalation, done_as: str, apply: Callable[[], object]):
        """Run one service for the change page's button; a refusal is shown there, not raised."""
        try:
            apply()
        except DomainError as exc:
            self.message_user(request, f"Escalation #{escalation.pk}: {exc}", level=messages.ERROR)
        else:
            self.message_user(request, f"Escalation #{escalation.pk} {done_as}.", level=messages.SUCCESS)
        return self._change_page(escalation)

    def acknowledge_view(self, request, object_id):
        escalation = self._changeable(request, object_id)
        actor = admin_actor(request)
        return self._apply(
            request, escalation, "acknowledged", lambda: escalation_acknowledge(escalation=escalation, actor=actor)
        )

    def assign_view(self, request, object_id):
        escalation = self._changeable(request, object_id)
        form = AssignForm(request.POST)
        if not form.is_valid():
            self.message_user(request, "Choose an active staff user to assign.", level=messages.ERROR)
            return self._change_page(escalation)
        assignee = form.cleaned_data["assignee"]
        actor = admin_actor(request)
        return self._apply(
            request,
            escalation,
            f"assigned to {assignee.get_username()}" if assignee else "unassigned",
            lambda: escalation_assign(escalation=escalation, assignee=assignee, actor=actor),
        )

    # --- The resolve page: a resolution with a note, or the finished work uploaded by hand.

    def resolve_view(self, request, object_id):
        escalation = self._changeable(request, object_id)
        form = ResolveForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                self._resolve_with_form(request, escalation, form.cleaned_data)
            except DomainError as exc:
                form.add_error(None, str(exc))
            else:
                self.message_user(request, f"Escalation #{escalation.pk} resolved: {form.cleaned_data['resolution']}.")
                return self._change_page(escalation)
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

    list_display = ["escalation_short", "channel_name", "event", "status", "attempts", "next_attempt", "sent", "error"]
    list_filter = ["status", "event", "channel__kind"]
    list_select_related = ["escalation__task", "channel"]
    show_full_result_count = False
    actions = ["retry_now"]

    def changelist_view(self, request, extra_context=None):
        if IS_POPUP_VAR not in request.GET:
            extra_context = {"title": "Notification outbox", **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    @admin.display(description="escalation", ordering="escalation_id")
    def escalation_short(self, notification: Notification):
        title = notification.escalation.task.title
        return format_html(
            '<span title="{}">#{} {}</span>', title, notification.escalation_id, Truncator(title).chars(24)
        )

    @admin.display(description="channel", ordering="channel__name")
    def channel_name(self, notification: Notification) -> str:
        return notification.channel.name

    @admin.display(description="next attempt", ordering="next_attempt_at")
    def next_attempt(self, notification: Notification) -> str | None:
        # Only a row still to be sent has a next attempt; on the others the stored time is history.
        waiting = notification.status in (Notification.Status.PENDING, Notification.Status.SENDING)
        return _short(notification.next_attempt_at) if waiting else None

    @admin.display(description="sent", ordering="sent_at")
    def sent(self, notification: Notification) -> str | None:
        return _short(notification.sent_at)

    @admin.display(description="last error")
    def error(self, notification: Notification):
        return _clipped(notification.last_error, 60)

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
