"""Flagging a task for an operator (`task_flag`): every caller's flag is kept, none hides another;
`task_unflag` withdraws one note and no other."""

from datetime import timedelta

import pytest
from django.utils import timezone

from agency.models import Task
from agency.services.tasks import task_flag, task_unflag
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
    with pytest.raises(ValueError) as refused:
        task_flag(task=task, note="  ", actor="admin:user:1")
    assert str(refused.value) == "A flag needs a note saying what to look at."
    task.refresh_from_db()
    assert not task.needs_operator


def test_withdrawing_a_note_keeps_the_others_word_for_word_and_the_flag_up():
    task = TaskFactory(status="completed")
    for note in ("Check the invoice.", "Stripe: payment failed", "Refund the client."):
        task_flag(task=task, note=note, actor="stripe")
    assert task_unflag(task=task, note="Stripe: payment failed", actor="stripe")
    task.refresh_from_db()
    assert (task.needs_operator, task.operator_note) == (True, "Check the invoice.\nRefund the client.")


def test_withdrawing_the_last_note_lowers_the_flag():
    task = TaskFactory(status="completed")
    task_flag(task=task, note="Stripe: payment failed", actor="stripe")
    assert task_unflag(task=task, note="  Stripe: payment failed ", actor="stripe")
    task.refresh_from_db()
    assert (task.needs_operator, task.operator_note) == (False, "")


def test_withdrawing_a_note_that_is_not_there_changes_nothing():
    task = TaskFactory(status="completed")
    task_flag(task=task, note="Check the invoice.", actor="op")
    assert not task_unflag(task=task, note="Stripe: payment failed", actor="stripe")
    task.refresh_from_db()
    assert (task.needs_operator, task.operator_note) == (True, "Check the invoice.")


def test_flagging_and_withdrawing_move_the_tasks_updated_time():
    task = TaskFactory(status="completed")
    long_ago = timezone.now() - timedelta(days=2)
    Task.objects.filter(pk=task.pk).update(updated_at=long_ago)
    before = timezone.now()
    task_flag(task=task, note="Check the invoice.", actor="op")
    flagged_at = Task.objects.get(pk=task.pk).updated_at
    assert before <= flagged_at <= timezone.now() and task.updated_at == flagged_at
    Task.objects.filter(pk=task.pk).update(updated_at=long_ago)
    task_unflag(task=task, note="Check the invoice.", actor="op")
    assert before <= Task.objects.get(pk=task.pk).updated_at <= timezone.now()
