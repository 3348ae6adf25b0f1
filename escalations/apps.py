from django.apps import AppConfig


class EscalationsConfig(AppConfig):
    name = "escalations"

    def ready(self):
        from escalations import checks  # noqa: F401  (registers the system checks)
