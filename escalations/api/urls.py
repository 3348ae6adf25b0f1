from django.urls import path

from escalations.api import views

urlpatterns = [
    path("escalations", views.EscalationListCreateApi.as_view(), name="escalation-list"),
    path("escalations/<int:pk>", views.EscalationDetailApi.as_view(), name="escalation-detail"),
    path("escalations/<int:pk>/acknowledge", views.EscalationAcknowledgeApi.as_view(), name="escalation-ack"),
    path("escalations/<int:pk>/resolve", views.EscalationResolveApi.as_view(), name="escalation-resolve"),
]
