"""Marketplaces, postings and bids in the operator back office: actions call the same services as the API."""

from django.contrib import admin, messages

from agency.admin import ChangedFieldsOnlyAdmin, ReadOnlyInline, admin_actor, each_row
from bids.models import Bid, BidEvent, Marketplace, Posting
from bids.services.bids import BidExists, BidRefused, bid_approve, bid_create, bid_reject, bid_transition, bid_win
from bids.services.bids import bid_withdraw as withdraw
from bids.services.postings import marketplaces_scan


@admin.register(Marketplace)
class MarketplaceAdmin(admin.ModelAdmin):
    list_display = [
        "slug", "name", "kind", "active", "training_mode", "scan_interval_seconds", "fee_percent", "last_scan_at",
        "postings_seen", "bids_placed", "bids_won", "revenue_cents", "open_until",
    ]  # fmt: skip
    list_filter = ["kind", "active", "training_mode"]
    search_fields = ["slug", "name"]
    readonly_fields = [
        "last_scan_at", "postings_seen", "bids_placed", "bids_won", "revenue_cents", "failures", "open_until",
    ]  # fmt: skip
    actions = ["scan_now", "close_breaker"]

    @admin.action(description="Scan the selected marketplaces now", permissions=["change"])
    def scan_now(self, request, queryset):
        summary = marketplaces_scan(slugs=list(queryset.values_list("slug", flat=True)))
        self.message_user(
            request,
            f"Scanned {summary['scanned']}: {summary['new']} new posting(s), {summary['bids']} bid(s) made.",
        )
        for problem in summary["failed"] + [f"{slug}: another scan took this round." for slug in summary["skipped"]]:
            self.message_user(request, problem, level=messages.WARNING)

    @admin.action(description="Close the breaker (calls resume at once)", permissions=["change"])
    def close_breaker(self, request, queryset):
        closed = queryset.update(failures=0, open_until=None)
        self.message_user(request, f"{closed} breaker(s) closed.")


class BidInline(ReadOnlyInline):
    model = Bid
    fields = ["id", "status", "amount_cents", "remote_id", "created_at", "submitted_at"]
    show_change_link = True


@admin.register(Posting)
class PostingAdmin(admin.ModelAdmin):
    list_display = [
        "id", "title", "marketplace", "decision", "domain", "budget_max_cents", "proposed_cents",
        "expected_profit_cents", "confidence", "first_seen_at",
    ]  # fmt: skip
    list_filter = ["decision", "marketplace", "domain"]
    search_fields = ["title", "external_id"]
    list_select_related = ["marketplace", "domain"]
    show_full_result_count = False  # no COUNT(*) over the whole table on every page
    readonly_fields = [
        "marketplace", "external_id", "title", "description", "url", "budget_min_cents", "budget_max_cents",
        "currency", "skills", "posted_at", "first_seen_at", "last_seen_at", "decision", "reasons", "domain",
        "proposed_cents", "expected_cost_cents", "expected_profit_cents", "confidence", "evaluated_at", "raw",
    ]  # fmt: skip
    inlines = [BidInline]
    actions = ["draft_bid"]

    def has_add_permission(self, request):
        return False  # postings come from scans

    @admin.action(description="Draft a bid on the selected postings", permissions=["change"])
    def draft_bid(self, request, queryset):
        actor = admin_actor(request)
        made, refused = 0, []
        for posting in queryset.select_related("domain"):
            try:
                bid_create(posting=posting, actor=actor)
                made += 1
            except (BidExists, BidRefused) as exc:
                refused.append(f"#{posting.pk}: {exc}")
        self.message_user(request, f"{made} draft bid(s) made.")
        if refused:
            self.message_user(request, "Refused: " + "; ".join(refused), level=messages.WARNING)


class BidEventInline(ReadOnlyInline):
    model = BidEvent
    fields = ["created_at", "kind", "from_status", "to_status", "actor", "detail", "trace_id"]


@admin.register(Bid)
class BidAdmin(ChangedFieldsOnlyAdmin):
    """Bids, newest first. Saving the change page writes only the proposal and amount an operator edited
    (of a draft); every status change is an action calling the services."""

    list_display = ["id", "posting", "marketplace", "status", "amount_cents", "remote_id", "task", "created_at"]
    list_filter = ["status", "marketplace"]
    search_fields = ["posting__title", "remote_id"]
    list_select_related = ["posting", "marketplace", "task"]
    show_full_result_count = False
    readonly_fields = [
        "marketplace", "posting", "status", "currency", "remote_id", "idempotency_key", "claimed_at", "sends",
        "last_error", "submitted_at", "decided_at", "task", "created_at", "updated_at", "trace_id",
    ]  # fmt: skip
    fields = ["amount_cents", "proposal", *readonly_fields]
    inlines = [BidEventInline]
    actions = ["approve", "reject", "withdraw", "mark_submitted", "mark_won"]

    def has_add_permission(self, request):
        return False  # made by scans, the API or the postings' action

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.status != Bid.Status.DRAFT:
            return ["amount_cents", "proposal", *self.readonly_fields]
        return self.readonly_fields

    @admin.action(description="Approve (send, or simulate in training mode)", permissions=["change"])
    def approve(self, request, queryset):
        self._each(request, queryset, lambda bid, actor: bid_approve(bid=bid, actor=actor), "approved")

    @admin.action(description="Reject", permissions=["change"])
    def reject(self, request, queryset):
        self._each(request, queryset, lambda bid, actor: bid_reject(bid=bid, actor=actor), "rejected")

    @admin.action(description="Withdraw (retracted at the marketplace if sent)", permissions=["change"])
    def withdraw(self, request, queryset):
        self._each(request, queryset, lambda bid, actor: withdraw(bid=bid, actor=actor), "withdrawn")

    @admin.action(description="Mark as submitted by hand (marketplaces without a bid API)", permissions=["change"])
    def mark_submitted(self, request, queryset):
        def apply(bid, actor):
            return bid_transition(bid=bid, to=Bid.Status.SUBMITTED, actor=actor, detail="Submitted by hand.")

        self._each(request, queryset, apply, "marked submitted")

    @admin.action(description="Mark as won (becomes a paid task)", permissions=["change"])
    def mark_won(self, request, queryset):
        self._each(request, queryset, lambda bid, actor: bid_win(bid=bid, actor=actor), "marked won")

    def _each(self, request, queryset, apply, done_words: str) -> None:
        actor = admin_actor(request)
        rows = queryset.select_related("marketplace", "posting__domain")
        done, refused = each_row(rows, lambda bid: apply(bid, actor))
        self.message_user(request, f"{done} bid(s) {done_words}.")
        if refused:
            self.message_user(request, "Refused: " + "; ".join(refused), level=messages.WARNING)
