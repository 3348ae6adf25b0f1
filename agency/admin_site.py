from django.contrib import admin
from django.template.response import TemplateResponse
from django.urls import path

from tracing.views import trace_search_admin_view


class AgencyAdminSite(admin.AdminSite):
    site_header = "Agency back office"
    site_title = "Agency"
    index_title = "Operations"

    def get_urls(self):
        extra = [path("traces/", self.admin_view(trace_search_admin_view(self)), name="trace_search")]
        return extra + super().get_urls()

    def index(self, request, extra_context=None) -> TemplateResponse:
        extra_context = {**(extra_context or {}), "show_trace_search": True}
        return super().index(request, extra_context)
