"""The Celery application.

Without `CELERY_BROKER_URL` tasks run eagerly in the calling process (the
embedded default); with it they go to the broker. Results are stored in the
database by django-celery-results either way.
"""

import os

import structlog
from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agency.settings")

app = Celery("agency")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.setup_logging.connect
def _keep_project_logging(**_kwargs) -> None:
    """Connecting here stops Celery from replacing the logging that settings set up."""


def _add_worker_log_context() -> None:
    # django-structlog binds the enqueuing request's context (request_id) in
    # the worker; the trace ids come from OpenTelemetry's Celery propagation.
    from django_structlog.celery.steps import DjangoStructLogInitStep

    app.steps["worker"].add(DjangoStructLogInitStep)


_add_worker_log_context()


@signals.task_postrun.connect
def _forget_task_log_context(task=None, **_kwargs) -> None:
    """End the task's log context with the task.

    django-structlog binds `task_id` and the enqueuer's `request_id` when a
    task starts and only replaces them when the next one starts, so the
    worker's own lines in between (e.g. "Task … received") would name a task
    that is over. An eager task runs inside its caller's unit of work, whose
    context must stay.
    """
    if task is not None and not task.request.is_eager:
        structlog.contextvars.clear_contextvars()
