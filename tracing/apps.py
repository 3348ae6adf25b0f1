from django.apps import AppConfig
from django.conf import settings


class TracingConfig(AppConfig):
    name = "tracing"
    verbose_name = "Tracing"

    def ready(self) -> None:
        if settings.TRACING_ENABLED:
            from tracing.otel import configure_tracing

            configure_tracing()
