from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class AgencyConfig(AppConfig):
    name = "agency"
    verbose_name = "Agency"

    def ready(self) -> None:
        from agency import checks  # noqa: F401  (registers the system checks)
        from agency.api import schema  # noqa: F401  (registers the schema extensions)


class AgencyAdminConfig(AdminConfig):
    """The operator back office: Django's admin with the agency's own pages."""

    default_site = "agency.admin_site.AgencyAdminSite"
