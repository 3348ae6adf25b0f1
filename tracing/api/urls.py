from django.urls import path

from tracing.api.views import TraceDetailApi

urlpatterns = [
    path("traces/<str:trace_id>", TraceDetailApi.as_view(), name="trace-detail"),
]
