from django.contrib import admin
from django.urls import include, path

from agency import views
from agency.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(("agency.api.urls", "api"), namespace="api")),
    path("deliver/<int:task_id>/<str:token>/", views.delivery_page, name="delivery-page"),
    path(
        "deliver/<int:task_id>/<str:token>/<int:deliverable_id>",
        views.delivery_download,
        name="delivery-download",
    ),
]

handler404 = "agency.api.errors.not_found_view"
handler500 = "agency.api.errors.server_error_view"
