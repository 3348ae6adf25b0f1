"""The admin's trace search: paste a trace id, read every stored record of that trace."""

from django.contrib.admin import AdminSite
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse

from tracing.selectors import TraceRecord, is_trace_id, trace_records, traced_models


def admin_change_url(record: TraceRecord) -> str | None:
    app_label, model_name = record.model.split(".")
    try:
        return reverse(f"admin:{app_label}_{model_name}_change", args=[record.pk])
    except NoReverseMatch:
        return None


def viewable_models(user) -> list:
    """Staff see the rows of the models their admin permissions let them view."""
    return [m for m in traced_models() if user.has_perm(f"{m._meta.app_label}.view_{m._meta.model_name}")]


def trace_search_admin_view(site: AdminSite):
    """The admin page where an operator pastes a trace id and reads its timeline."""

    def view(request: HttpRequest) -> TemplateResponse:
        trace_id = request.GET.get("trace_id", "").strip().lower()
        error = ""
        records: list[TraceRecord] = []
        if trace_id:
            if is_trace_id(trace_id):
                records = trace_records(trace_id, models=viewable_models(request.user))
            else:
                error = "A trace id is 32 hexadecimal characters."
        context = {
            **site.each_context(request),
            "title": "Trace search",
            "trace_id": trace_id,
            "error": error,
            "rows": [(r, admin_change_url(r)) for r in records],
            "searched": bool(trace_id) and not error,
        }
        return TemplateResponse(request, "admin/trace_search.html", context)

    return view
