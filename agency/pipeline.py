"""The work pipeline: a paid task is claimed once, worked by its agent, then completed, failed or
escalated (docs/agents.md).

Transaction boundaries: the claim, each status move and each attempt's record are short
transactions of their own; the agent's work (model calls, pandas, charts) runs outside any
transaction. A worker holds the task's lease (`Task.lease_owner`, `lease_until`) and renews it
between steps; every move it makes is a compare-and-set on the status *and* its lease, so a worker
whose task was taken over after its lease ran out changes nothing and stores nothing.
"""

import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

import structlog
from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone
from django.utils.module_loading import import_string

from agency.agents.base import AgentOutput, Produced, agent_run
from agency.models import AgentProfile, Attempt, Task
from agency.services.delivery import deliverable_add
from agency.services.experience import experience_record, training_capture
from agency.services.routing import profile_routed
from agency.services.tasks import InvalidTransition, task_transition
from escalations.services import escalation_open, failure_decide

logger = structlog.get_logger(__name__)

S = Task.Status
Outcome = Attempt.Outcome
IN_FLIGHT = (S.PLANNING, S.PROCESSING, S.REVIEWING)


class LeaseLost(Exception):
    """Another worker took the task over: this one stops and keeps nothing."""


def worker_name() -> str:
    """Who claims: host, process and a random suffix (two runs in one process are two claimants)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _lease_until():
    return timezone.now() + timedelta(seconds=settings.TASK_LEASE_SECONDS)


def task_claim(*, task_id: int, worker: str) -> Task | None:
    """Take a paid task (`paid` → `planning`), or an in-flight one whose lease ran out; None when
    the task is not ours to work (missing, finished, or another worker's live lease)."""
    task = Task.objects.filter(pk=task_id).first()
    if task is None:
        return None
    if task.status == S.PAID:
        try:
            return task_transition(
                task=task, to=S.PLANNING, actor=f"pipeline {worker}", lease_owner=worker, lease_until=_lease_until()
            )
        except InvalidTransition:
            return None  # another worker claimed it first
    now = timezone.now()
    if task.status not in IN_FLIGHT or (task.lease_until is not None and task.lease_until > now):
        return None
    with transaction.atomic():
        # Compare-and-set on the lease we saw: of two workers taking over, one wins.
        taken = Task.objects.filter(
            pk=task.pk, status=task.status, lease_owner=task.lease_owner, lease_until=task.lease_until
        ).update(lease_owner=worker, lease_until=_lease_until())
        if not taken:
            return None
        Attempt.objects.filter(task=task, outcome=Outcome.RUNNING).update(
            outcome=Outcome.ABANDONED,
            finished_at=now,
            detail=f"Its worker ({task.lease_owner or 'unknown'}) lost the lease.",
        )
    logger.warning("task_taken_over", task_id=task.pk, previous_worker=task.lease_owner, status=task.status)
    task.refresh_from_db()
    return task


def lease_renew(*, task: Task, worker: str) -> None:
    if not Task.objects.filter(pk=task.pk, lease_owner=worker).update(lease_until=_lease_until()):
        raise LeaseLost(f"Task #{task.pk} was taken over by another worker.")


def profile_for(*, task: Task) -> AgentProfile | None:
    """The profile routed for the task's domain (a promotion), else the active one with the lowest priority."""
    return profile_routed(domain=task.domain)


def task_work_run(*, task_id: int, worker: str | None = None) -> str:
    """Work one task to its end (completed, failed or escalated); returns what happened.

    Safe to call any number of times and from any number of workers at once: only the claimant
    works, and a redelivered message finds nothing to claim.
    """
    worker = worker or worker_name()
    task = task_claim(task_id=task_id, worker=worker)
    if task is None:
        return "not claimed"
    with structlog.contextvars.bound_contextvars(task_id=task.pk):
        try:
            while True:
                result = _attempt_one(task=task, worker=worker)
                if result != "retry":
                    return result
        except (LeaseLost, InvalidTransition) as exc:
            # Taken over after our lease ran out, or moved by someone else (an operator's cancel):
            # either way the task is no longer ours, and nothing of ours was kept.
            logger.warning("task_lost", worker=worker, reason=str(exc))
            return "lease lost"


def _arena(*, task: Task, worker: str) -> str | None:
    """The arena takes the task when one is plugged in (`PIPELINE_ARENA_HOOK`, the dotted path of a
    function taking the task and the worker) and wants it: the hook returns what happened, or None
    for the single-agent path."""
    if not settings.PIPELINE_ARENA_HOOK:
        return None
    return import_string(settings.PIPELINE_ARENA_HOOK)(task=task, worker=worker)


def _attempt_one(*, task: Task, worker: str) -> str:
    arena = _arena(task=task, worker=worker) if task.attempts == 0 else None
    if arena is not None:
        return arena
    profile = profile_for(task=task)
    if profile is None:
        return _escalate(task=task, worker=worker, reason="no_capable_agent", detail="No active agent profile.")
    lease_renew(task=task, worker=worker)
    if task.status != S.PROCESSING:  # planning, or reviewing after a rejection
        task_transition(task=task, to=S.PROCESSING, actor=f"pipeline {worker}", holder=worker)
    attempt = _attempt_start(task=task, profile=profile, worker=worker)
    started = time.monotonic()
    output = agent_run(profile=profile, task=task, attempt=attempt)
    attempt_close(attempt=attempt, output=output, compute_ms=int((time.monotonic() - started) * 1000))
    lease_renew(task=task, worker=worker)
    if output.outcome == Outcome.DECLINED:
        return _escalate(task=task, worker=worker, reason="no_capable_agent", detail=output.detail)
    if output.outcome in (Outcome.APPROVED, Outcome.REJECTED):
        task_transition(task=task, to=S.REVIEWING, actor=f"pipeline {worker}", holder=worker)
    if output.outcome == Outcome.APPROVED:
        return _complete(task=task, attempt=attempt, output=output, worker=worker)
    return _after_failure(task=task, profile=profile, output=output, worker=worker)


def _attempt_start(*, task: Task, profile: AgentProfile, worker: str) -> Attempt:
    with transaction.atomic():
        if not Task.objects.filter(pk=task.pk, lease_owner=worker).update(attempts=task.attempts + 1):
            raise LeaseLost(f"Task #{task.pk} was taken over by another worker.")
        task.attempts += 1
        return attempt_open(task=task, profile=profile, worker=worker)


def attempt_open(*, task: Task, profile: AgentProfile, worker: str) -> Attempt:
    """A running attempt of `profile` at `task`, numbered after the profile's earlier ones."""
    number = Attempt.objects.filter(task=task, profile=profile).count() + 1
    return Attempt.objects.create(task=task, profile=profile, number=number, worker=worker)


def attempt_close(*, attempt: Attempt, output: AgentOutput, compute_ms: int) -> None:
    """Record the attempt's result, its model cost summed from its ledger rows; an attempt abandoned
    meanwhile (takeover) keeps its state and the caller gets `LeaseLost`."""
    cost = attempt.model_calls.aggregate(total=Sum("cost_cents"))["total"] or 0
    fields = {
        "outcome": output.outcome,
        "error_class": output.error_class[:100],
        "detail": output.detail,
        "plan": output.plan,
        "verdict": output.verdict,
        "summary": output.summary,
        "model_cost_cents": cost,
        "compute_ms": compute_ms,
        "finished_at": timezone.now(),
    }
    if not Attempt.objects.filter(pk=attempt.pk, outcome=Outcome.RUNNING).update(**fields):
        raise LeaseLost(f"Attempt #{attempt.pk} was abandoned while it ran.")
    for name, value in fields.items():
        setattr(attempt, name, value)


def _complete(*, task: Task, attempt: Attempt, output: AgentOutput, worker: str) -> str:
    task_deliver(
        task=task,
        files=output.files,
        summary=output.summary,
        actor=f"pipeline {worker}",
        reason=f"attempt {attempt.number} by {attempt.profile.name} approved",
        holder=worker,
        then=lambda: training_capture(task=task, attempt=attempt, calls=output.teacher_steps, verdict=output.verdict),
    )
    logger.info("task_completed_by_agent", attempt=attempt.number, profile=attempt.profile.name)
    return "completed"


def task_deliver(
    *,
    task: Task,
    files: list[Produced],
    summary: str,
    actor: str,
    reason: str,
    holder: str,
    then: Callable[[], object] | None = None,
) -> None:
    """Store the deliverable and complete the task (from `reviewing`) in one transaction, with
    `then` (more writes of the same commit): the lease holder's compare-and-set decides, so a task
    gets one deliverable however many workers finish."""
    stored = []
    try:
        with transaction.atomic():
            for produced in files:
                stored.append(
                    deliverable_add(
                        task=task, name=produced.name, content=produced.content, content_type=produced.content_type
                    )
                )
            task_transition(
                task=task, to=S.COMPLETED, actor=actor, reason=reason, holder=holder, lease_owner="", lease_until=None
            )
            experience_record(task=task, summary=summary)
            if then is not None:
                then()
    except BaseException:
        for deliverable in stored:  # the rollback removed the rows, not the files
            deliverable.file.delete(save=False)
        raise


def _after_failure(*, task: Task, profile: AgentProfile, output: AgentOutput, worker: str) -> str:
    """The escalation rules decide: another attempt, failed, or escalated (docs/escalations.md)."""
    decision = failure_decide(
        attempts=task.attempts,
        is_high_value=task.is_high_value,
        errored=output.outcome == Outcome.ERROR,
        retryable=output.retryable,
        max_attempts=min(profile.retry_budget, settings.TASK_MAX_ATTEMPTS),
    )
    Task.objects.filter(pk=task.pk, lease_owner=worker).update(last_error=output.detail[:2000])
    task.last_error = output.detail[:2000]
    if decision.action == "retry":
        return "retry"
    if decision.action == "escalate":
        return _escalate(task=task, worker=worker, reason=decision.reason, detail=output.detail)
    task_transition(
        task=task,
        to=S.FAILED,
        actor=f"pipeline {worker}",
        reason=output.detail[:500],
        holder=worker,
        lease_owner="",
        lease_until=None,
    )
    return "failed"


def _escalate(*, task: Task, worker: str, reason: str, detail: str) -> str:
    lease_renew(task=task, worker=worker)
    escalation_open(task=task, reason=reason, actor=f"pipeline {worker}", detail=detail)
    Task.objects.filter(pk=task.pk, lease_owner=worker).update(lease_owner="", lease_until=None)
    return "escalated"


def task_work_enqueue(*, task_id: int) -> None:
    """Send the task to a worker (the Celery task `agency.task_work`)."""
    from agency.tasks import task_work

    task_work.delay(task_id)


def tasks_workable(*, now=None, limit: int = 500, paid_after_seconds: int = 0) -> list[int]:
    """Ids of tasks a worker could take now: paid ones (paid at least `paid_after_seconds` ago),
    oldest first, then in-flight ones whose worker's lease ran out (or that never had one)."""
    now = now or timezone.now()
    waited = now - timedelta(seconds=paid_after_seconds)
    paid = Task.objects.filter(status=S.PAID, paid_at__lte=waited).order_by("paid_at", "pk")
    stale = Task.objects.filter(Q(lease_until__lte=now) | Q(lease_until__isnull=True), status__in=IN_FLIGHT)
    ids = list(paid.values_list("pk", flat=True)[:limit])
    return ids + list(stale.order_by("pk").values_list("pk", flat=True)[: limit - len(ids)])


def tasks_requeue(*, now=None) -> dict:
    """Cycle step: send again the paid tasks that waited too long for a worker (a message lost
    with the broker) and the in-flight ones whose worker's lease ran out (a crash)."""
    ids = tasks_workable(now=now, paid_after_seconds=settings.TASK_REQUEUE_PAID_AFTER_SECONDS)
    for task_id in ids:
        task_work_enqueue(task_id=task_id)
    return {"requeued": len(ids)}
