"""The back office's site: every model admin registered on it reads money in dollars and links
trace ids to the trace search; its landing page is the operator's dashboard (docs/console.md)."""

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import FieldDoesNotExist
from django.db import DataError
from django.template.response import TemplateResponse
from django.urls import path, reverse, reverse_lazy
from django.utils.html import format_html

from agency.money import DollarsField, dollars, is_money, money_label
from tracing.views import trace_search_admin_view

# The installed apps' tables and our own plumbing: listed last, under one "System" heading.
SYSTEM_MODELS = {
    "django_celery_results.taskresult",
    "django_celery_results.groupresult",
    "django_celery_results.chordcounter",
    "django_celery_beat.periodictask",
    "django_celery_beat.crontabschedule",
    "django_celery_beat.intervalschedule",
    "django_celery_beat.solarschedule",
    "django_celery_beat.clockedschedule",
    "agency.idempotencyrecord",
}


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


def _money_column(field):
    @admin.display(description=money_label(field), ordering=field.name)
    def column(obj) -> str:
        return dollars(getattr(obj, field.attname))

    return column


@admin.display(description="trace id", ordering="trace_id")
def _trace_link(obj) -> str:
    if not obj.trace_id:
        return ""
    search = reverse("admin:trace_search")
    return format_html('<a href="{}?trace_id={}" class="trace-link">{}</a>', search, obj.trace_id, obj.trace_id)


class _ReadableFields:
    """Money fields (cents in the database) read and typed in dollars; trace ids link to the
    trace search. Applies to list columns and read-only fields by showing a display column
    instead of the field (`<name>_shown`), and to editable money fields by their form field."""

    def _shown(self, name):
        if not isinstance(name, str):
            return name
        try:
            field = self.model._meta.get_field(name)
        except FieldDoesNotExist:
            return name
        if is_money(field):
            column = _money_column(field)
        elif name == "trace_id":
            column = _trace_link
        else:
            return name
        alias = f"{name}_shown"
        if not hasattr(self, alias):
            setattr(self, alias, column)  # the same function each time: harmless if two threads race
        return alias

    def get_list_display(self, request):
        editable = set(getattr(self, "list_editable", ()))
        return [name if name in editable else self._shown(name) for name in super().get_list_display(request)]

    def get_readonly_fields(self, request, obj=None):
        return [self._shown(name) for name in super().get_readonly_fields(request, obj)]

    def get_fields(self, request, obj=None):
        readonly = set(super().get_readonly_fields(request, obj))
        return [self._shown(name) if name in readonly else name for name in super().get_fields(request, obj)]

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if is_money(db_field) and db_field.editable and not db_field.choices:
            fraction_digits = getattr(db_field, "decimal_places", 0)
            kwargs = {"form_class": DollarsField, "fraction_digits": fraction_digits, **kwargs}
            kwargs.setdefault("label", money_label(db_field).capitalize() + " (USD)")
            kwargs.setdefault("help_text", "")  # the model's help speaks of cents
            return db_field.formfield(**kwargs)
        return super().formfield_for_dbfield(db_field, request, **kwargs)


def _with(mixins: tuple, admin_class: type) -> type:
    missing = tuple(m for m in mixins if not issubclass(admin_class, m))
    if not missing:
        return admin_class
    return type(admin_class.__name__, (*missing, admin_class), {"__module__": admin_class.__module__})


class AgencyAdminSite(admin.AdminSite):
    site_header = "Agency back office"
    site_title = "Agency"
    index_title = "Dashboard"
    site_url = reverse_lazy("admin:index")  # "View site" opens the dashboard

    def register(self, model_or_iterable, admin_class=None, **options):
        """Every model admin, ours and the installed apps' (users, Celery results), and their
        inlines check their lookup values and read money in dollars."""
        admin_class = _with((_LookupValuesChecked, _ReadableFields), admin_class or admin.ModelAdmin)
        admin_class.inlines = [_with((_ReadableFields,), inline) for inline in admin_class.inlines]
        super().register(model_or_iterable, admin_class, **options)

    def get_urls(self):
        extra = [path("traces/", self.admin_view(trace_search_admin_view(self)), name="trace_search")]
        return extra + super().get_urls()

    def get_app_list(self, request, app_label=None):
        """The apps as Django lists them, with the system tables moved to one "System" section last."""
        apps, system = [], []
        for app in super().get_app_list(request, app_label):
            ours = [m for m in app["models"] if m["model"]._meta.label_lower not in SYSTEM_MODELS]
            system += [m for m in app["models"] if m["model"]._meta.label_lower in SYSTEM_MODELS]
            if ours:
                apps.append({**app, "models": ours})
        if system:
            apps.append({
                "name": "System", "app_label": "system", "app_url": reverse("admin:index") + "#system",
                "has_module_perms": True,
                "models": sorted(system, key=lambda m: m["name"]),
            })  # fmt: skip
        return apps

    def index(self, request, extra_context=None) -> TemplateResponse:
        from agency.console.dashboard import dashboard_context

        return super().index(request, {**dashboard_context(request), **(extra_context or {})})
