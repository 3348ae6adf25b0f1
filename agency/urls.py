from django.contrib import admin
from django.urls import include, path

from agency.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(("agency.api.urls", "api"), namespace="api")),
]

handler404 = "agency.api.errors.not_found_view"
handler500 = "agency.api.errors.server_error_view"
