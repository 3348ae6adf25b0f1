from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.db import DataError
from django.template.response import TemplateResponse
from django.urls import path

from tracing.views import trace_search_admin_view


class _LookupValuesChecked:
    """A changelist whose filter values the database refuses answers like any other wrong filter
    (Django's redirect to `?e=1`), not 500.

    Django checks a lookup value when it builds the query, but some fail only when it runs:
    `created_at__gte=0001-01-01T00:00:00+01:00` is before year 1 in UTC (OverflowError on
    SQLite) and PostgreSQL refuses offsets beyond ±15:59 (DataError).
    """

    def get_changelist_instance(self, request):
        try:
            return super().get_changelist_instance(request)
        except (OverflowError, DataError) as exc:
            raise IncorrectLookupParameters(exc) from None


class AgencyAdminSite(admin.AdminSite):
    site_header = "Agency back office"
    site_title = "Agency"
    index_title = "Operations"

    def register(self, model_or_iterable, admin_class=None, **options):
        """Every model admin, ours and the installed apps' (users, Celery results), checks its lookup values."""
        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, _LookupValuesChecked):
            admin_class = type(
                admin_class.__name__, (_LookupValuesChecked, admin_class), {"__module__": admin_class.__module__}
            )
        super().register(model_or_iterable, admin_class, **options)

    def get_urls(self):
        extra = [path("traces/", self.admin_view(trace_search_admin_view(self)), name="trace_search")]
        return extra + super().get_urls()

    def index(self, request, extra_context=None) -> TemplateResponse:
        extra_context = {**(extra_context or {}), "show_trace_search": True}
        return super().index(request, extra_context)
