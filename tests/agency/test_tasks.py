import pytest
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler
from django_celery_results.models import TaskResult

from agency.celery import app as celery_app
from agency.tasks import agency_cycle, cycle_step

pytestmark = pytest.mark.django_db


@pytest.mark.django_db(transaction=True)  # the scheduler closes the connection, as beat does
def test_it_gives_beat_the_cycle_schedule_from_code(settings):
    DatabaseScheduler(app=celery_app)  # what `celery beat` does at start-up
    task = PeriodicTask.objects.get(name="agency-cycle")
    assert task.task == "agency.cycle"
    assert task.interval.every == settings.AGENCY_CYCLE_INTERVAL_SECONDS


def test_it_runs_every_step_of_an_eager_cycle_and_stores_named_results():
    result = agency_cycle.apply_async()
    assert result.get() == [
        "bids.services.postings.marketplaces_scan",
        "bids.services.bids.bids_reconcile_all",
        "agency.pipeline.tasks_requeue",
        "arena.services.competitions.competitions_resume",
        "escalations.services.notifications_relay",
        "agency.services.delivery.client_emails_relay",
        "agency.cycle.housekeeping",
    ]
    names = set(TaskResult.objects.values_list("task_name", flat=True))
    assert {"agency.cycle", "agency.cycle_step"} <= names
    assert TaskResult.objects.filter(task_name="agency.cycle_step", status="SUCCESS").count() == 7


def test_it_refuses_to_run_anything_but_a_known_step():
    with pytest.raises(ValueError, match="not a cycle step"):
        cycle_step.apply(args=["os.system"]).get()
