"""The arena's exactly-once rules under real concurrency: threads with their own connections on a
database server, and real Celery workers on Redis (docs/arena.md)."""

import os
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
from django.db.models.signals import pre_save
from django_celery_results.models import TaskResult

from agency.models import AgentProfile, Attempt, Deliverable, Task
from arena.models import ArenaResult, Competition, PairStanding
from arena.services.competitions import (
    CompetitionRefused,
    competition_decide,
    competition_side_run,
    competition_start,
)
from tests.agency.factories import TaskFactory
from tests.agency.pipeline_setup import paid_task
from tests.arena.factories import ProfileFactory
from tests.concurrency import run_at_once
from tests.conftest import database_url
from tests.processes import ROOT, stop, wait_for, worker_start


def _live_competition() -> Competition:
    """A live competition of two baselines on a paid table task, its sides' messages lost."""
    task = paid_task()
    baseline = task.domain.agent_profiles.model.objects.get(name="baseline")
    return competition_start(task=task, profile_a=baseline, profile_b=ProfileFactory(), actor="test")


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_workers")
def test_eight_workers_running_one_side_run_it_once():
    competition = _live_competition()
    results = run_at_once(8, lambda i: competition_side_run(competition_id=competition.pk, side="a", worker=f"w{i}"))
    assert Counter(results) == {"finished": 1, "not claimed": 7}
    assert ArenaResult.objects.filter(competition=competition).count() == 1
    assert Attempt.objects.filter(task=competition.task).count() == 1


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_workers")
def test_eight_joins_at_once_decide_once_and_deliver_once():
    competition = _live_competition()
    for side in ("a", "b"):  # each side's join message goes to the broker nobody reads
        assert competition_side_run(competition_id=competition.pk, side=side, worker=f"side-{side}") == "finished"
    outcomes = run_at_once(8, lambda i: competition_decide(competition_id=competition.pk))
    # One join decides; the others lose its compare-and-set, or start after it committed.
    assert outcomes.count("decided") == 1 and len(outcomes) == 8
    assert set(outcomes) - {"decided"} <= {"decided elsewhere", "already decided"}
    task = Task.objects.get(pk=competition.task_id)
    assert task.status == "completed"
    assert task.events.filter(to_status="completed").count() == 1
    assert Deliverable.objects.filter(task=task).count() == 2  # report.html and chart.png, once
    standing = PairStanding.objects.get()
    assert standing.first_wins + standing.second_wins + standing.ties == 1


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_workers")  # the sides' messages wait in the broker
def test_of_two_operators_starting_one_pair_at_once_the_second_is_pointed_at_the_first():
    task = TaskFactory(status="completed", domain=paid_task().domain)  # a replay: no task moves
    baseline, other = AgentProfile.objects.get(name="baseline"), ProfileFactory()
    first = []

    def start_first_in_between(sender, instance, **kwargs):
        """The first operator's start commits between the second's check and its insert."""
        pre_save.disconnect(start_first_in_between, sender=Competition)
        thread = threading.Thread(
            target=lambda: first.append(competition_start(task=task, profile_a=other, profile_b=baseline, actor="op 1"))
        )
        thread.start()
        thread.join(30)

    pre_save.connect(start_first_in_between, sender=Competition)
    try:
        with pytest.raises(CompetitionRefused, match=f"already met on task #{task.pk}") as refused:
            competition_start(task=task, profile_a=baseline, profile_b=other, actor="op 2")
    finally:
        pre_save.disconnect(start_first_in_between, sender=Competition)
    assert refused.value.existing_id == first[0].pk
    assert list(Competition.objects.values_list("pk", "started_by")) == [(first[0].pk, "op 1")]


# --- real workers --------------------------------------------------------------------------------


def _publish(env: dict, code: str) -> None:
    """Run `code` in a process of its own that publishes to the real broker."""
    subprocess.run([sys.executable, "-c", "import django; django.setup()\n" + code], cwd=ROOT,
                   env={**env, "DJANGO_SETTINGS_MODULE": "agency.settings"}, check=True, timeout=60)  # fmt: skip


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_workers")
def test_two_workers_run_the_sides_as_two_celery_tasks_and_redelivery_changes_nothing(broker_url, media_root):
    ProfileFactory(name="second-baseline")
    task = paid_task(complexity="complex")  # high value: the pipeline hands it to the arena
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": broker_url,
        "PRIVATE_MEDIA_ROOT": str(media_root / "private"),
    }
    workers = [worker_start(env, "-n", f"w{i}@%h") for i in range(2)]
    try:
        _publish(env, f"from agency.tasks import task_work\ntask_work.delay({task.pk})\n")
        wait_for(lambda: Competition.objects.filter(task=task).exclude(status="running").exists(), timeout=90,
                 what="the competition's decision")  # fmt: skip
        competition = Competition.objects.get(task=task)
        # The same side messages and the join again, as a broker redelivers them.
        _publish(env, "from arena.tasks import competition_side, competition_join\n"
                      f"for side in 'ab': competition_side.delay({competition.pk}, side)\n"
                      f"competition_join.delay({competition.pk})\n")  # fmt: skip
        wait_for(lambda: TaskResult.objects.filter(task_name="arena.competition_side").count() >= 4, timeout=60,
                 what="the redelivered sides")  # fmt: skip
        time.sleep(1)
    finally:
        stop(*workers)
    competition.refresh_from_db()
    assert competition.status == "decided"
    sides = TaskResult.objects.filter(task_name="arena.competition_side").order_by("date_created")
    assert [r.status for r in sides] == ["SUCCESS"] * 4
    assert sorted(r.result for r in sides) == ['"already decided"'] * 2 + ['"finished"'] * 2
    assert ArenaResult.objects.filter(competition=competition).count() == 2
    assert Attempt.objects.filter(task=task).count() == 2
    assert Task.objects.get(pk=task.pk).status == "completed"
    assert Deliverable.objects.filter(task=task).count() == 2
    assert task.events.filter(to_status="completed").count() == 1
