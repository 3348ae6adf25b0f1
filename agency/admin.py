from collections.abc import Callable, Iterable

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import (
    ALL_VAR,
    ERROR_FLAG,
    IS_FACETS_VAR,
    IS_POPUP_VAR,
    ORDER_VAR,
    PAGE_VAR,
    TO_FIELD_VAR,
)
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html

from agency.errors import DomainError
from agency.gateway.breaker import breaker_reset
from agency.gateway.selectors import model_call_totals
from agency.models import (
    AgentProfile,
    ApiKey,
    Attempt,
    BreakerEvent,
    Client,
    ClientEmail,
    CycleRun,
    Deliverable,
    DeliveryLink,
    Domain,
    Experience,
    IdempotencyRecord,
    ModelCall,
    ModelDeployment,
    Provider,
    Route,
    RouteStep,
    RoutingChange,
    StripeEvent,
    Task,
    TaskEvent,
    TrainingExample,
)
from agency.services.api_keys import api_key_create, api_key_revoke
from agency.services.delivery import DeliveryRefused, delivery_email_enqueue, delivery_link_revoke
from agency.services.routing import routing_revert
from agency.services.tasks import task_cancel, task_transition
from agency.views import private_file


def admin_actor(request) -> str:
    """How the audit trail names an operator acting in the admin."""
    return f"admin:user:{request.user.pk}"


def admin_object(model_admin, request, object_id: str, *, may: Callable[[object, object], bool]):
    """The row an admin's own view (a download, a button) acts on: 404 when there is none, 403 when
    `may(request, row)` (the admin's has_view_permission, has_change_permission…) says no."""
    found = model_admin.get_object(request, unquote(object_id))
    if found is None:
        raise Http404(f"No such {model_admin.opts.verbose_name}.")
    if not may(request, found):
        raise PermissionDenied
    return found


def each_row(rows: Iterable, apply: Callable[[object], object]) -> tuple[int, list[str]]:
    """Run a service on each row on its own, for admin actions: one refusal (a `DomainError`)
    does not stop the rest. Returns how many went through and a "#<pk>: <why>" per refusal."""
    done, refused = 0, []
    for row in rows:
        try:
            apply(row)
            done += 1
        except DomainError as exc:
            refused.append(f"#{row.pk}: {exc}")
    return done, refused


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "scope", "created_at", "last_used_at", "revoked_at", "created_by"]
    list_filter = ["scope", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix"]
    list_select_related = ["created_by"]
    readonly_fields = ["prefix", "created_by", "created_at", "last_used_at", "revoked_at", "trace_id"]
    fields = ["name", "scope", *readonly_fields]
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        # A key's scope is fixed once issued: widen access by issuing a new key.
        return [*self.readonly_fields, "scope"] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["name"])
            return
        created, raw_key = api_key_create(name=obj.name, scope=obj.scope, created_by=request.user)
        obj.pk, obj.prefix, obj.key_hash, obj.created_at = (
            created.pk,
            created.prefix,
            created.key_hash,
            created.created_at,
        )
        messages.warning(request, f"Copy this key now, it is not shown again: {raw_key}")

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke(self, request, queryset):
        revoked, _ = each_row(queryset, lambda api_key: api_key_revoke(api_key=api_key))  # revoked ones: skipped
        self.message_user(request, f"Revoked {revoked} key(s).")


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(admin.ModelAdmin):
    list_display = ["key", "principal", "status_code", "created_at", "completed_at"]
    list_filter = ["status_code"]
    search_fields = ["key", "principal"]
    readonly_fields = [f.name for f in IdempotencyRecord._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records written by services only: visible, never edited by hand."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ChangedFieldsOnlyAdmin(admin.ModelAdmin):
    """Saves only what the operator changed: a full save would write back every column as it was
    loaded (status, counters) and undo whatever services did meanwhile."""

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=[f for f in form.changed_data if f in {x.name for x in obj._meta.fields}])
        else:
            super().save_model(request, obj, form, change)


@admin.register(Client)
class ClientAdmin(ChangedFieldsOnlyAdmin):
    """Clients come from their first task (`client_for_email`), one per address whatever its case;
    the address is not edited here, or it would part from the normalised one that identifies them."""

    list_display = ["email", "name", "completed_tasks", "spent_cents", "created_at"]
    search_fields = ["email", "name"]
    readonly_fields = ["email", "completed_tasks", "spent_cents", "created_at", "trace_id"]

    def has_add_permission(self, request):
        return False


@admin.register(Domain)
class DomainAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "base_rate_cents", "currency", "active"]
    list_editable = ["base_rate_cents", "active"]
    search_fields = ["slug", "name"]


class ReadOnlyInline(admin.TabularInline):
    """A record's history or attachments shown under it; written by services only."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None):
        return False


class TaskEventInline(ReadOnlyInline):
    model = TaskEvent
    fields = ["created_at", "from_status", "to_status", "actor", "reason", "trace_id"]


class DeliverableInline(ReadOnlyInline):
    model = Deliverable
    fields = ["download", "content_type", "size", "sha256", "created_at"]

    @admin.display(description="file")
    def download(self, deliverable: Deliverable) -> str:
        url = reverse("admin:agency_task_deliverable", args=[deliverable.task_id, deliverable.pk])
        return format_html('<a href="{}">{}</a>', url, deliverable.name)


class AttemptInline(ReadOnlyInline):
    """The agents' attempts at the task: who, how it ended, why, and what its model calls cost."""

    model = Attempt
    fields = ["number", "profile", "outcome", "error_class", "detail", "verdict", "model_cost_cents", "compute_ms",
              "worker", "created_at", "finished_at"]  # fmt: skip


@admin.register(Task)
class TaskAdmin(ChangedFieldsOnlyAdmin):
    list_display = ["id", "title", "domain", "client", "status", "price_cents", "is_high_value", "created_at"]
    list_filter = ["status", "domain", "payment", "is_high_value", "needs_operator"]
    search_fields = ["title", "client__email"]
    list_select_related = ["domain", "client"]
    show_full_result_count = False  # no COUNT(*) over the whole table on every page
    readonly_fields = [
        "status", "source", "client", "domain", "complexity", "urgency", "payment", "base_price_cents",
        "discount_cents", "price_cents", "currency", "is_high_value", "input_download", "input_name",
        "input_content_type", "input_size", "input_sha256", "attempts", "last_error", "lease_owner", "lease_until",
        "paid_at", "completed_at", "created_at", "updated_at", "trace_id",
    ]  # fmt: skip
    fields = ["title", "description", "needs_operator", "operator_note", *readonly_fields]
    inlines = [TaskEventInline, AttemptInline, DeliverableInline]
    actions = ["mark_paid", "cancel", "new_delivery_link"]

    def has_add_permission(self, request):
        return False  # tasks come from the API, marketplaces and commands, priced by the service

    # --- The task's files: private storage, so staff download them through these views only.

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/input/", view(self.input_view), name="agency_task_input"),
            path("<path:object_id>/deliverables/<int:deliverable_id>/", view(self.deliverable_view),
                 name="agency_task_deliverable"),
            *super().get_urls(),
        ]  # fmt: skip

    def input_view(self, request, object_id):
        task = admin_object(self, request, object_id, may=self.has_view_permission)
        if not task.input_file:
            raise Http404("This task has no input file.")
        return private_file(task.input_file, name=task.input_name or "input", content_type=task.input_content_type,
                            sha256=task.input_sha256)  # fmt: skip

    def deliverable_view(self, request, object_id, deliverable_id: int):
        task = admin_object(self, request, object_id, may=self.has_view_permission)
        deliverable = get_object_or_404(Deliverable, pk=deliverable_id, task=task)
        return private_file(deliverable.file, name=deliverable.name, content_type=deliverable.content_type,
                            sha256=deliverable.sha256)  # fmt: skip

    @admin.display(description="input file")
    def input_download(self, task: Task) -> str:
        if not task.input_file:
            return "—"
        url = reverse("admin:agency_task_input", args=[task.pk])
        return format_html('<a href="{}">{}</a> ({} bytes)', url, task.input_name or "input", task.input_size)

    @admin.action(description="E-mail the client a new delivery link (completed tasks)", permissions=["change"])
    def new_delivery_link(self, request, queryset):
        queued = 0
        for task in queryset.select_related("client"):
            try:
                queued += delivery_email_enqueue(task=task) is not None
            except DeliveryRefused as exc:
                self.message_user(request, f"#{task.pk}: {exc}", level=messages.WARNING)
        self.message_user(request, f"{queued} e-mail(s) with a new delivery link queued.")

    @admin.action(description="Mark selected pending tasks as paid", permissions=["change"])
    def mark_paid(self, request, queryset):
        self._transition(request, queryset, Task.Status.PAID, "marked paid by an operator")

    @admin.action(description="Cancel selected tasks", permissions=["change"])
    def cancel(self, request, queryset):
        self._transition(request, queryset, Task.Status.CANCELLED, "cancelled by an operator")

    def _transition(self, request, queryset, to: str, reason: str) -> None:
        actor = admin_actor(request)

        def apply(task: Task) -> None:
            if to == Task.Status.CANCELLED:
                task_cancel(task=task, actor=actor, reason=reason)
            else:
                task_transition(task=task, to=to, actor=actor, reason=reason)

        done, refused = each_row(queryset, apply)
        self.message_user(request, f"{done} task(s) are now {to}.")
        if refused:
            self.message_user(request, "Refused: " + "; ".join(refused), level=messages.WARNING)


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ["event_id", "type", "outcome", "task", "created_at"]
    list_filter = ["outcome", "type"]
    search_fields = ["event_id"]
    list_select_related = ["task"]


@admin.register(DeliveryLink)
class DeliveryLinkAdmin(ReadOnlyAdmin):
    """Links are issued by services (completion, the task's *new delivery link* action); an operator
    can only revoke them. A new link leaves older ones working: revoke those that should stop."""

    list_display = ["task", "downloads", "max_downloads", "expires_at", "revoked_at", "created_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    list_select_related = ["task"]
    exclude = ["token_hash"]
    actions = ["revoke"]

    def has_revoke_permission(self, request) -> bool:
        # Links are never edited by hand, but whoever may change them may stop one.
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    @admin.action(description="Revoke selected links (they answer 404 from now on)", permissions=["revoke"])
    def revoke(self, request, queryset):
        actor = admin_actor(request)
        revoked, refused = each_row(queryset, lambda link: delivery_link_revoke(link=link, actor=actor))
        self.message_user(request, f"Revoked {revoked} delivery link(s).")
        if refused:
            self.message_user(request, "Skipped: " + "; ".join(refused), level=messages.WARNING)


@admin.register(CycleRun)
class CycleRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "trigger", "status", "created_at", "finished_at", "trace_id"]
    list_filter = ["status", "trigger"]
    search_fields = ["trace_id"]
    show_full_result_count = False


@admin.register(ClientEmail)
class ClientEmailAdmin(ReadOnlyAdmin):
    """The clients' outbox: written with the completion, sent by the relay. A dead e-mail has flagged its
    task; "E-mail the client a new delivery link" on the task queues another."""

    list_display = ["id", "task", "kind", "to", "status", "attempts", "next_attempt_at", "sent_at", "last_error"]
    list_filter = ["status", "kind"]
    search_fields = ["to"]
    list_select_related = ["task"]
    show_full_result_count = False


# --- Model gateway (docs/gateway.md) -------------------------------------------------------------


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "base_url", "api_key_env"]
    list_filter = ["kind"]
    search_fields = ["name", "base_url"]


class BreakerEventInline(ReadOnlyInline):
    model = BreakerEvent
    fields = ["created_at", "from_status", "to_status", "actor", "reason", "trace_id"]


@admin.register(ModelDeployment)
class ModelDeploymentAdmin(admin.ModelAdmin):
    """Deployments with their live breaker; "Reset breaker" closes one by hand (`breaker_reset`)."""

    list_display = [
        "__str__", "enabled", "price_in_cents_per_1m", "price_out_cents_per_1m", "gpu_second_cents",
        "breaker_status", "breaker_failures", "breaker_changed_at",
    ]  # fmt: skip
    list_filter = ["enabled", "provider", "breaker__status"]
    search_fields = ["model", "provider__name"]
    list_select_related = ["provider", "breaker"]
    readonly_fields = ["breaker_status", "breaker_failures", "breaker_changed_at"]
    inlines = [BreakerEventInline]
    actions = ["reset_breaker"]

    def _breaker(self, obj):
        return getattr(obj, "breaker", None)  # no row yet: never called, closed

    @admin.display(description="breaker", ordering="breaker__status")
    def breaker_status(self, obj) -> str:
        breaker = self._breaker(obj)
        return breaker.get_status_display() if breaker else "Closed"

    @admin.display(description="consecutive failures")
    def breaker_failures(self, obj) -> int:
        breaker = self._breaker(obj)
        return breaker.failures if breaker else 0

    @admin.display(description="breaker changed")
    def breaker_changed_at(self, obj):
        breaker = self._breaker(obj)
        return breaker.changed_at if breaker else None

    @admin.action(description="Reset breaker (close it now)", permissions=["change"])
    def reset_breaker(self, request, queryset):
        actor = admin_actor(request)
        reset = sum(breaker_reset(deployment=deployment, actor=actor) for deployment in queryset)
        self.message_user(request, f"Reset {reset} breaker(s); the others were already closed.")


class RouteStepInline(admin.TabularInline):
    model = RouteStep
    fields = ["position", "deployment"]
    ordering = ["position"]
    extra = 1
    autocomplete_fields = ["deployment"]


@admin.register(Route)
class RouteAdmin(admin.ModelAdmin):
    """A route's deployments in order: position 0 is the primary. To swap two, move one to a free
    position first (positions are unique per route)."""

    list_display = ["name", "domain", "purpose"]
    list_filter = ["purpose", "domain"]
    list_select_related = ["domain"]
    inlines = [RouteStepInline]


class DeploymentListFilter(admin.RelatedFieldListFilter):
    """Deployments named with their provider, in one query (the stock filter asks per deployment)."""

    def field_choices(self, field, request, model_admin):
        return [(d.pk, str(d)) for d in ModelDeployment.objects.select_related("provider")]


class LedgerPaginator(Paginator):
    """Counts the filtered ledger rows with their totals, in one pass over them instead of two.
    Without a filter or a search there are no totals (`None`): they would read the whole ledger on
    every page, and the dashboard has its money."""

    def __init__(self, *args, with_totals: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.with_totals = with_totals

    @cached_property
    def totals(self) -> dict | None:
        return model_call_totals(calls=self.object_list) if self.with_totals else None

    @cached_property
    def count(self) -> int:
        return self.totals["calls"] if self.with_totals else super().count


# The changelist's own parameters: ordering, paging and the like narrow nothing.
_LIST_PARAMS = {ALL_VAR, ORDER_VAR, PAGE_VAR, ERROR_FLAG, IS_POPUP_VAR, TO_FIELD_VAR, IS_FACETS_VAR}


@admin.register(ModelCall)
class ModelCallAdmin(ReadOnlyAdmin):
    """The ledger, with the totals of the filtered rows (one aggregate query) above the list."""

    list_display = [
        "created_at", "deployment", "purpose", "task", "attempt", "outcome", "error_class", "tokens_in",
        "tokens_out", "cost_cents", "provider_cost_cents", "latency_ms", "trace_id",
    ]  # fmt: skip
    list_filter = [
        "purpose", "outcome", ("deployment", DeploymentListFilter), ("created_at", admin.DateFieldListFilter),
        ("task", admin.EmptyFieldListFilter),
    ]  # fmt: skip
    search_fields = ["trace_id"]
    list_select_related = ["deployment__provider", "task"]
    show_full_result_count = False
    paginator = LedgerPaginator

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        narrowed = any(value for key, value in request.GET.items() if key not in _LIST_PARAMS)
        return self.paginator(queryset, per_page, orphans, allow_empty_first_page, with_totals=narrowed)

    def lookup_allowed(self, lookup, value, request=None):
        # One task's calls: ?task__id__exact=<id> (linked from wherever a task is shown).
        return lookup in {"task__id__exact", "task"} or super().lookup_allowed(lookup, value, request)

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:
            response.context_data["ledger_totals"] = changelist.paginator.totals
        return response


@admin.register(AgentProfile)
class AgentProfileAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "domain", "route", "priority", "retry_budget", "active"]
    list_editable = ["priority", "active"]
    list_filter = ["kind", "active", "domain"]
    list_select_related = ["domain", "route"]


@admin.register(Experience)
class ExperienceAdmin(ReadOnlyAdmin):
    list_display = ["title", "domain", "task", "created_at"]
    list_filter = ["domain"]
    search_fields = ["title", "summary"]
    list_select_related = ["domain", "task"]
    show_full_result_count = False


@admin.register(TrainingExample)
class TrainingExampleAdmin(ReadOnlyAdmin):
    list_display = ["task", "domain", "purpose", "teacher", "rating", "created_at", "trace_id"]
    list_filter = ["domain", "purpose", "rating"]
    list_select_related = ["domain", "task", "teacher__provider"]
    show_full_result_count = False


@admin.register(RoutingChange)
class RoutingChangeAdmin(ReadOnlyAdmin):
    """The audit trail of routing: the arena's promotions and operators' reverts, written by
    `agency.services.routing` only. "Revert" undoes a domain's latest change (another row)."""

    list_display = ["created_at", "domain", "from_profile", "to_profile", "actor", "reason", "reverts"]
    list_filter = ["domain"]
    search_fields = ["actor", "reason"]
    list_select_related = ["domain", "from_profile", "to_profile", "reverts"]
    show_full_result_count = False
    actions = ["revert"]

    def has_revert_permission(self, request) -> bool:
        # Changes are never edited by hand, but whoever may change them may undo one.
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    @admin.action(description="Revert (the domain goes back to the profile it had before)", permissions=["revert"])
    def revert(self, request, queryset):
        actor = admin_actor(request)
        done, refused = each_row(queryset, lambda change: routing_revert(change=change, actor=actor))
        self.message_user(request, f"Reverted {done} routing change(s).")
        for refusal in refused:
            self.message_user(request, refusal, level=messages.ERROR)
