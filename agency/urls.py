"""The project's URLs: the one place where the apps' URL modules meet.

Each app ships its own `api/urls.py`; they are mounted together under
`/api/v1/` in one `api` namespace, beside the schema and its browsable docs;
any other path under `/api/` answers the JSON 404.
"""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from agency import views
from agency.api.errors import api_not_found_view
from agency.health import healthz

API_URL_MODULES = ["agency.api.urls", "arena.api.urls", "bids.api.urls", "escalations.api.urls", "tracing.api.urls"]

api_urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    *(path("", include(module)) for module in API_URL_MODULES),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include((api_urlpatterns, "api"), namespace="api")),
    re_path(r"^api/(?P<route>.*)$", api_not_found_view),
    path("deliver/<int:task_id>/<str:token>/", views.delivery_page, name="delivery-page"),
    path(
        "deliver/<int:task_id>/<str:token>/<int:deliverable_id>",
        views.delivery_download,
        name="delivery-download",
    ),
]

handler404 = "agency.api.errors.not_found_view"
handler500 = "agency.api.errors.server_error_view"
