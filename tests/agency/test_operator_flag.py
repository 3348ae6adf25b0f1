"""Flagging a task for an operator (`task_flag`): every caller's flag is kept, none hides another."""

import pytest

from agency.services.tasks import task_flag
from escalations.services import escalation_open, escalation_resolve
from tests.agency.factories import TaskFactory

pytestmark = pytest.mark.django_db


def test_it_flags_the_task_with_its_note_and_leaves_other_tasks_alone():
    task, other = TaskFactory(status="completed"), TaskFactory(status="completed")
    task_flag(task=task, note="Stripe: paid twice", actor="stripe")
    task.refresh_from_db()
    other.refresh_from_db()
    assert (task.needs_operator, task.operator_note) == (True, "Stripe: paid twice")
    assert task.status == "completed"  # a flag is not a status change
    assert (other.needs_operator, other.operator_note) == (False, "")


def test_a_second_flag_is_added_below_the_first_instead_of_replacing_it():
    task = TaskFactory(status="processing")
    task_flag(task=task, note="Stripe: paid 100 USD, but the task costs 150 USD", actor="stripe")
    escalation = escalation_open(task=task, reason="attempts_exhausted", actor="pipeline")[0]
    escalation_resolve(escalation=escalation, resolution="refunded", actor="op")
    task.refresh_from_db()
    assert task.operator_note == "Stripe: paid 100 USD, but the task costs 150 USD\nRefund the client."
    assert task.needs_operator and task.status == "failed"


def test_it_updates_the_instance_it_was_given():
    task = TaskFactory(status="paid")
    task_flag(task=task, note="  check the input file  ", actor="admin:user:1")
    assert (task.needs_operator, task.operator_note) == (True, "check the input file")


def test_it_refuses_a_flag_without_a_note():
    task = TaskFactory(status="paid")
    with pytest.raises(ValueError, match="note"):
        task_flag(task=task, note="  ", actor="admin:user:1")
    task.refresh_from_db()
    assert not task.needs_operator
