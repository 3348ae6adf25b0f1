from django.urls import path

from agency.api import gateway, tasks, views

urlpatterns = [
    path("keys", views.ApiKeyListApi.as_view(), name="key-list"),
    path("keys/<int:pk>/revoke", views.ApiKeyRevokeApi.as_view(), name="key-revoke"),
    path("cycles", views.CycleStartApi.as_view(), name="cycle-start"),
    path("cycles/<int:pk>", views.CycleDetailApi.as_view(), name="cycle-detail"),
    path("quote", tasks.QuoteApi.as_view(), name="quote"),
    path("tasks", tasks.TaskListCreateApi.as_view(), name="task-list"),
    path("tasks/<int:pk>", tasks.TaskDetailApi.as_view(), name="task-detail"),
    path("tasks/<int:pk>/cancel", tasks.TaskCancelApi.as_view(), name="task-cancel"),
    path("model-calls", gateway.ModelCallListApi.as_view(), name="model-call-list"),
    path("webhooks/stripe", tasks.StripeWebhookApi.as_view(), name="stripe-webhook"),
]
