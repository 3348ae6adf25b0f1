from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class AgencyConfig(AppConfig):
    name = "agency"
    verbose_name = "Agency"


class AgencyAdminConfig(AdminConfig):
    """The operator back office: Django's admin with the agency's own pages."""

    default_site = "agency.admin_site.AgencyAdminSite"
