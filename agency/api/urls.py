from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from agency.api import tasks, views
from escalations import api as escalations
from tracing.views import TraceDetailApi

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("keys", views.ApiKeyListApi.as_view(), name="key-list"),
    path("keys/<int:pk>/revoke", views.ApiKeyRevokeApi.as_view(), name="key-revoke"),
    path("cycles", views.CycleStartApi.as_view(), name="cycle-start"),
    path("cycles/<str:task_id>", views.CycleStatusApi.as_view(), name="cycle-status"),
    path("traces/<str:trace_id>", TraceDetailApi.as_view(), name="trace-detail"),
    path("quote", tasks.QuoteApi.as_view(), name="quote"),
    path("tasks", tasks.TaskListCreateApi.as_view(), name="task-list"),
    path("tasks/<int:pk>", tasks.TaskDetailApi.as_view(), name="task-detail"),
    path("tasks/<int:pk>/cancel", tasks.TaskCancelApi.as_view(), name="task-cancel"),
    path("webhooks/stripe", tasks.StripeWebhookApi.as_view(), name="stripe-webhook"),
    path("escalations", escalations.EscalationListCreateApi.as_view(), name="escalation-list"),
    path("escalations/<int:pk>/acknowledge", escalations.EscalationAcknowledgeApi.as_view(), name="escalation-ack"),
    path("escalations/<int:pk>/resolve", escalations.EscalationResolveApi.as_view(), name="escalation-resolve"),
]
