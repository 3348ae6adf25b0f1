"""The task state machine (docs/tasks.md): every ordered pair of statuses against the table there."""

from itertools import product

import pytest

from agency.models import Task, TaskEvent
from agency.services.tasks import InvalidTransition, task_transition
from tests.agency.factories import TaskFactory
from tests.concurrency import run_at_once
from tracing.context import current_trace_id, trace_started

# Written from the table in docs/tasks.md, not imported from the code under test.
ALLOWED = {
    ("pending", "paid"), ("pending", "cancelled"),
    ("paid", "planning"), ("paid", "cancelled"),
    ("planning", "processing"), ("planning", "failed"), ("planning", "escalated"),
    ("processing", "reviewing"), ("processing", "failed"), ("processing", "escalated"),
    ("reviewing", "completed"), ("reviewing", "processing"), ("reviewing", "escalated"),
    ("escalated", "processing"), ("escalated", "completed"), ("escalated", "failed"),
}  # fmt: skip
STATUSES = ["pending", "paid", "planning", "processing", "reviewing", "completed", "failed", "cancelled", "escalated"]
PAIRS = list(product(STATUSES, STATUSES))


@pytest.mark.django_db
@pytest.mark.parametrize(("start", "to"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_it_allows_exactly_the_transitions_of_the_spec(start, to):
    task = TaskFactory(status=start)
    if (start, to) in ALLOWED:
        with trace_started("test"):
            task_transition(task=task, to=to, actor="test", reason="because")
            trace_id = current_trace_id()
        task.refresh_from_db()
        assert task.status == to
        [event] = TaskEvent.objects.filter(task=task)
        assert (event.from_status, event.to_status, event.actor, event.reason) == (start, to, "test", "because")
        assert event.trace_id == trace_id != ""
    else:
        with pytest.raises(InvalidTransition):
            task_transition(task=task, to=to, actor="test")
        task.refresh_from_db()
        assert task.status == start
        assert not TaskEvent.objects.filter(task=task).exists()


@pytest.mark.django_db
def test_it_refuses_a_transition_from_a_stale_status():
    task = TaskFactory(status="paid")
    stale = Task.objects.get(pk=task.pk)
    task_transition(task=task, to="cancelled", actor="first")
    with pytest.raises(InvalidTransition, match="cancelled now"):
        task_transition(task=stale, to="planning", actor="second")
    assert Task.objects.get(pk=task.pk).status == "cancelled"
    assert TaskEvent.objects.filter(task=task).count() == 1


@pytest.mark.django_db
def test_it_stamps_paid_and_completed_times_and_counts_the_clients_completed_work():
    task = TaskFactory(status="pending", price_cents=26250)
    task_transition(task=task, to="paid", actor="t")
    for step in ["planning", "processing", "reviewing", "completed"]:
        task_transition(task=task, to=step, actor="t")
    task.refresh_from_db()
    assert task.paid_at and task.completed_at and task.completed_at >= task.paid_at
    task.client.refresh_from_db()
    assert (task.client.completed_tasks, task.client.spent_cents) == (1, 26250)


def _race(task_id: int, targets: tuple[str, str]) -> list[tuple[str, str]]:
    """Both threads load the task, then try their transition at the same moment."""
    loaded = [Task.objects.get(pk=task_id) for _ in targets]

    def move(i):
        try:
            task_transition(task=loaded[i], to=targets[i], actor=targets[i])
            return ("won", targets[i])
        except InvalidTransition:
            return ("lost", targets[i])

    return run_at_once(len(targets), move)


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
def test_it_lets_exactly_one_of_two_concurrent_conflicting_transitions_win():
    for _ in range(10):  # several rounds: a race that only sometimes overlaps proves little
        task = TaskFactory(status="paid")
        outcomes = _race(task.pk, ("planning", "cancelled"))
        assert sorted(o for o, _ in outcomes) == ["lost", "won"]
        [winner] = [to for o, to in outcomes if o == "won"]
        assert Task.objects.get(pk=task.pk).status == winner
        assert list(TaskEvent.objects.filter(task=task).values_list("to_status", flat=True)) == [winner]


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["status", "paid_at", "completed_at"])
def test_the_status_and_its_timestamps_cannot_be_set_alongside(field):

    task = TaskFactory(status="pending")
    with pytest.raises(ValueError, match=r"^status and its timestamps are set by the transition itself$"):
        task_transition(task=task, to="paid", actor="x", **{field: None})
    assert Task.objects.get(pk=task.pk).status == "pending"


@pytest.mark.django_db
def test_a_refused_transition_names_the_task():

    task = TaskFactory(status="pending")
    stale = Task.objects.get(pk=task.pk)
    task_transition(task=task, to="cancelled", actor="x")
    with pytest.raises(InvalidTransition) as refused:
        task_transition(task=stale, to="paid", actor="y")
    assert refused.value.existing_id == task.pk
    with pytest.raises(InvalidTransition, match=r"^A cancelled task cannot become paid.$") as impossible:
        task_transition(task=Task.objects.get(pk=task.pk), to="paid", actor="y")
    assert impossible.value.existing_id == task.pk
