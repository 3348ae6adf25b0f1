from dataclasses import dataclass
from datetime import datetime

from django.apps import apps
from django.db import models

from tracing.models import TraceStamped

# A trace id is 32 lowercase hex characters; anything else cannot match a row.
TRACE_ID_LENGTH = 32
_MAX_ROWS_PER_MODEL = 500


@dataclass(frozen=True)
class TraceRecord:
    model: str  # "app_label.modelname"
    verbose_name: str
    pk: object
    created_at: datetime
    summary: str
    instance: models.Model


def traced_models() -> list[type[TraceStamped]]:
    """Concrete stamped models, each table once (no proxies, no multi-table children)."""
    return [
        m
        for m in apps.get_models()
        if issubclass(m, TraceStamped)
        and not m._meta.proxy
        and not any(issubclass(parent, TraceStamped) for parent in m._meta.parents)
    ]


def is_trace_id(value: str) -> bool:
    return len(value) == TRACE_ID_LENGTH and all(c in "0123456789abcdef" for c in value)


def trace_records(trace_id: str, models: list[type[TraceStamped]] | None = None) -> list[TraceRecord]:
    """Every stamped row of one trace, oldest first (ties broken by model, then pk)."""
    if not is_trace_id(trace_id):
        return []
    records = []
    for model in traced_models() if models is None else models:
        rows = model._default_manager.filter(trace_id=trace_id).order_by("created_at", "pk")[:_MAX_ROWS_PER_MODEL]
        label = model._meta.label_lower
        records.extend(
            TraceRecord(
                model=label,
                verbose_name=str(model._meta.verbose_name),
                pk=row.pk,
                created_at=row.created_at,
                summary=row.trace_summary(),
                instance=row,
            )
            for row in rows
        )
    records.sort(key=lambda r: (r.created_at, r.model, str(r.pk)))
    return records
