"""System checks for production settings that start fine but behave badly."""

from django.conf import settings
from django.core.checks import Warning, register


@register(deploy=True)
def shared_cache_check(app_configs, **kwargs):
    backend = settings.CACHES["default"]["BACKEND"]
    if not settings.DEBUG and backend.endswith(("LocMemCache", "DummyCache")):
        return [
            Warning(
                "The default cache is private to each process, so API throttling budgets and other "
                "shared counters are per process.",
                hint="Set CACHE_URL=redis://… (or another shared cache) in production.",
                id="agency.W001",
            )
        ]
    return []
