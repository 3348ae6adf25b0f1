"""Competitions: two agent profiles work one task at once, each side a Celery task of its own, and
the join picks the winner (docs/arena.md).

Transaction boundaries: starting a competition (its row, the task's move and lease) is one
transaction, and the sides are queued after it commits. A side claims its result row (one per
side: the unique constraint decides between two workers), runs its agent outside any transaction,
then finishes the row by a compare-and-set on the attempt it claimed with. The join runs after
each side: it decides only once both sides are finished, by a compare-and-set on the competition's
status, and in the same transaction delivers the winner's files or escalates the task.
"""

import hashlib
import time
from datetime import timedelta
from decimal import Decimal

import structlog
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from agency.agents.base import AgentOutput, Produced, agent_run
from agency.errors import DomainError
from agency.models import AgentProfile, Attempt, Task
from agency.pipeline import LeaseLost, attempt_close, attempt_open, task_deliver
from agency.services.experience import training_capture
from agency.services.routing import profile_routed, profiles_eligible
from agency.services.tasks import InvalidTransition, task_transition
from arena.models import ArenaFile, ArenaResult, Competition, pair_key
from arena.rules import Contender, winner_select
from escalations.models import Escalation
from escalations.services import escalation_open

logger = structlog.get_logger(__name__)

S = Task.Status
Status = Competition.Status
CENT_PLACES = Decimal("0.0000000001")
RESPONSE_CHARS_MAX = 100_000
TEXT_TYPES = ("text/markdown", "text/plain")


class CompetitionRefused(DomainError):
    code = "competition_refused"


# --- Which tasks compete, and who -----------------------------------------------------------


def competition_wanted(*, task: Task) -> bool:
    """Every high-value task, and ARENA_SAMPLE_RATE of the others, picked by task id (the same
    answer however often it is asked)."""
    if task.is_high_value:
        return True
    digest = hashlib.sha256(f"arena sample {task.pk}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < settings.ARENA_SAMPLE_RATE


def challenger_for(*, task: Task, incumbent: AgentProfile) -> AgentProfile | None:
    """The first profile after the incumbent in routing order that may work the task's domain."""
    return profiles_eligible(domain=task.domain).exclude(pk=incumbent.pk).first()


def task_compete(*, task: Task, worker: str) -> str | None:
    """The pipeline's arena hook (PIPELINE_ARENA_HOOK), called on a task's first attempt while
    `worker` holds its lease: "arena" when a competition works the task, None for a single agent."""
    running = Competition.objects.filter(task=task, mode=Competition.Mode.LIVE, status=Status.RUNNING).first()
    if running is not None:  # its sides went silent and the task's lease ran out: wake them
        _lease_take(task=task, competition=running, worker=worker)
        _sides_enqueue(running)
        return "arena"
    if Competition.objects.filter(task=task, mode=Competition.Mode.LIVE).exists():
        return None  # it competed already (retried after an escalation): one agent this time
    if not competition_wanted(task=task):
        return None
    incumbent = profile_routed(domain=task.domain)
    challenger = challenger_for(task=task, incumbent=incumbent) if incumbent is not None else None
    if challenger is None:
        return None
    try:
        competition_start(
            task=task, profile_a=incumbent, profile_b=challenger, actor=f"pipeline {worker}", holder=worker
        )
    except CompetitionRefused as exc:
        logger.warning("arena_refused", task_id=task.pk, reason=str(exc))
        return None
    return "arena"


# --- Starting ---------------------------------------------------------------------------------


def competition_start(
    *, task: Task, profile_a: AgentProfile, profile_b: AgentProfile, actor: str, holder: str | None = None
) -> Competition:
    """Start `profile_a` against `profile_b` on `task`.

    A paid task (or one the pipeline holds as `holder`) is worked by the competition: *live*, the
    winner's files become the deliverable. A completed task is *replayed*: results and standings
    only. Anything else, or a pair that already met on this task, is refused.
    """
    if profile_a.pk == profile_b.pk:
        raise CompetitionRefused("A competition needs two different profiles.")
    eligible = set(profiles_eligible(domain=task.domain).values_list("pk", flat=True))
    for profile in (profile_a, profile_b):
        if profile.pk not in eligible:
            raise CompetitionRefused(f"Profile {profile.name} is inactive or does not work {task.domain.slug} tasks.")
    key = pair_key(profile_a.pk, profile_b.pk)
    existing = Competition.objects.filter(task=task, pair_key=key).first()
    if existing is not None:  # before the status: a live competition has moved its task on
        raise CompetitionRefused(
            f"{profile_a.name} and {profile_b.name} already met on task #{task.pk}.", existing_id=existing.pk
        )
    incumbent = profile_routed(domain=task.domain)
    mode = Competition.Mode.REPLAY if task.status == S.COMPLETED else Competition.Mode.LIVE
    if mode == Competition.Mode.LIVE and task.status != S.PAID and holder is None:
        raise CompetitionRefused(
            f"Task #{task.pk} is {task.status}: only a paid task (live) or a completed one (replay) can compete."
        )
    try:
        with transaction.atomic():
            competition = Competition.objects.create(
                task=task,
                domain_id=task.domain_id,
                profile_a=profile_a,
                profile_b=profile_b,
                pair_key=key,
                incumbent=incumbent if incumbent is not None and incumbent.pk in (profile_a.pk, profile_b.pk) else None,
                mode=mode,
                started_by=actor[:100],
            )
            if mode == Competition.Mode.LIVE:
                _task_take(task=task, competition=competition, actor=actor, holder=holder)
    except IntegrityError:
        existing = Competition.objects.filter(task=task, pair_key=key).first()
        if existing is None:
            raise
        raise CompetitionRefused(
            f"{profile_a.name} and {profile_b.name} already met on task #{task.pk}.", existing_id=existing.pk
        ) from None
    except InvalidTransition as exc:
        raise CompetitionRefused(f"Task #{task.pk} cannot compete now: {exc}") from None
    transaction.on_commit(lambda: _sides_enqueue(competition))
    logger.info("competition_started", competition_id=competition.pk, task_id=task.pk, mode=mode)
    return competition


def _lease_until():
    return timezone.now() + timedelta(seconds=settings.ARENA_SIDE_TIMEOUT_SECONDS)


def _task_take(*, task: Task, competition: Competition, actor: str, holder: str | None) -> None:
    """Move the task to `processing` under the competition's lease (from `paid`, or from the
    pipeline's `planning` as `holder`)."""
    reason = f"competition #{competition.pk}"
    if task.status == S.PAID:
        task_transition(
            task=task,
            to=S.PLANNING,
            actor=actor,
            reason=reason,
            lease_owner=competition.holder,
            lease_until=_lease_until(),
        )
        holder = competition.holder
    task_transition(
        task=task,
        to=S.PROCESSING,
        actor=actor,
        reason=reason,
        holder=holder,
        lease_owner=competition.holder,
        lease_until=_lease_until(),
    )


def _lease_take(*, task: Task, competition: Competition, worker: str) -> None:
    if not Task.objects.filter(pk=task.pk, lease_owner=worker).update(
        lease_owner=competition.holder, lease_until=_lease_until()
    ):
        raise LeaseLost(f"Task #{task.pk} was taken over by another worker.")


def _sides_enqueue(competition: Competition) -> None:
    from arena.tasks import competition_side

    for side in ArenaResult.Side.values:
        competition_side.delay(competition.pk, side)


def competitions_resume(*, now=None) -> dict:
    """Cycle step: queue again the sides of competitions silent for longer than a side's timeout
    (a worker died, a message was lost); a side still running elsewhere is left alone by its claim."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.ARENA_SIDE_TIMEOUT_SECONDS)
    stale = Competition.objects.filter(status=Status.RUNNING, created_at__lt=cutoff).order_by("pk")[:100]
    for competition in stale:
        _sides_enqueue(competition)
    return {"competitions_resumed": len(stale)}


# --- A side -------------------------------------------------------------------------------------


def competition_side_run(*, competition_id: int, side: str, worker: str) -> str:
    """Run one side to its finished result, then try the join. Safe to run twice and at once: the
    result row's claim lets one worker run a side (another after its timeout)."""
    competition = Competition.objects.select_related("task__domain", "profile_a", "profile_b").get(pk=competition_id)
    if competition.status != Status.RUNNING:
        return "already decided"
    profile = competition.profile_a if side == ArenaResult.Side.A else competition.profile_b
    result = _side_claim(competition=competition, side=side, profile=profile, worker=worker)
    if result is None:
        return "not claimed"
    with structlog.contextvars.bound_contextvars(competition_id=competition.pk, side=side):
        started = time.monotonic()
        output = agent_run(profile=profile, task=competition.task, attempt=result.attempt)
        try:
            _side_finish(result=result, output=output, compute_ms=round((time.monotonic() - started) * 1000))
        except LeaseLost:
            logger.warning("arena_side_lost", attempt_id=result.attempt_id)
            return "lost"
    _join_enqueue(competition)
    return "finished"


def _side_claim(*, competition: Competition, side: str, profile: AgentProfile, worker: str) -> ArenaResult | None:
    existing = ArenaResult.objects.filter(competition=competition, side=side).select_related("attempt").first()
    if existing is None:
        try:
            with transaction.atomic():
                # Claimants of one competition take turns on its row: InnoDB would otherwise deadlock
                # concurrent inserts into the same unique indexes instead of refusing all but one.
                Competition.objects.select_for_update().filter(pk=competition.pk).values_list("pk", flat=True).get()
                attempt = attempt_open(task=competition.task, profile=profile, worker=worker)
                return ArenaResult.objects.create(
                    competition=competition, side=side, profile=profile, attempt=attempt, started_at=timezone.now()
                )
        except IntegrityError:
            return None  # another worker claimed this side first
    if existing.state == ArenaResult.State.FINISHED:
        _join_enqueue(competition)  # a side redelivered after it finished: the join may still be due
        return None
    stale = existing.started_at < timezone.now() - timedelta(seconds=settings.ARENA_SIDE_TIMEOUT_SECONDS)
    if not stale and existing.attempt.outcome != Attempt.Outcome.ABANDONED:
        return None  # running elsewhere
    return _side_take_over(existing=existing, profile=profile, worker=worker)


def _side_take_over(*, existing: ArenaResult, profile: AgentProfile, worker: str) -> ArenaResult | None:
    """A side whose worker went silent: abandon its attempt and run it again under a new one."""
    now = timezone.now()
    try:
        with transaction.atomic():
            attempt = attempt_open(task=existing.competition.task, profile=profile, worker=worker)
            taken = ArenaResult.objects.filter(
                pk=existing.pk, attempt=existing.attempt_id, state=ArenaResult.State.RUNNING
            ).update(attempt=attempt, started_at=now)
            if not taken:
                raise IntegrityError("taken over by another worker")
            Attempt.objects.filter(pk=existing.attempt_id, outcome=Attempt.Outcome.RUNNING).update(
                outcome=Attempt.Outcome.ABANDONED, finished_at=now, detail="Its arena side went silent."
            )
    except IntegrityError:
        return None
    existing.attempt, existing.started_at = attempt, now
    logger.warning("arena_side_taken_over", result_id=existing.pk)
    return existing


def side_money(*, passed: bool, price_cents: int, model_cost: Decimal, compute_ms: int) -> dict:
    """What a side earned: the task's price if it passed the gate, less its model and compute cost."""
    revenue = price_cents if passed else 0
    compute = (Decimal(compute_ms) / 1000 * settings.COMPUTE_CENTS_PER_SECOND).quantize(CENT_PLACES)
    return {
        "revenue_cents": revenue,
        "model_cost_cents": model_cost,
        "compute_cost_cents": compute,
        "profit_cents": revenue - model_cost - compute,
    }


def response_text(output: AgentOutput) -> str:
    """The deliverable as text for training exports: its first Markdown or plain-text file, else its summary."""
    for produced in output.files:
        if produced.content_type.split(";")[0].strip() in TEXT_TYPES:
            return produced.content.decode("utf-8", errors="replace")[:RESPONSE_CHARS_MAX]
    return output.summary[:RESPONSE_CHARS_MAX]


def _side_finish(*, result: ArenaResult, output: AgentOutput, compute_ms: int) -> None:
    attempt = result.attempt
    task = result.competition.task
    passed = output.outcome == Attempt.Outcome.APPROVED and bool(output.files)
    stored: list[ArenaFile] = []
    try:
        with transaction.atomic():
            attempt_close(attempt=attempt, output=output, compute_ms=compute_ms)
            money = side_money(
                passed=passed, price_cents=task.price_cents, model_cost=attempt.model_cost_cents, compute_ms=compute_ms
            )
            finished = ArenaResult.objects.filter(
                pk=result.pk, attempt=attempt, state=ArenaResult.State.RUNNING
            ).update(
                state=ArenaResult.State.FINISHED,
                passed_gate=passed,
                latency_ms=compute_ms,
                summary=output.summary,
                response=response_text(output) if passed else "",
                error=output.detail if not passed else "",
                finished_at=timezone.now(),
                **money,
            )
            if not finished:
                raise LeaseLost(f"Arena result #{result.pk} was taken over.")
            for produced in output.files if passed else []:
                stored.append(_file_store(result=result, produced=produced))
            if passed:
                training_capture(task=task, attempt=attempt, calls=output.teacher_steps, verdict=output.verdict)
    except BaseException:
        for row in stored:  # the rollback removed the rows, not the files
            row.file.delete(save=False)
        raise


def _file_store(*, result: ArenaResult, produced: Produced) -> ArenaFile:
    row = ArenaFile(
        result=result,
        name=produced.name[:200],
        content_type=produced.content_type[:100],
        size=len(produced.content),
        sha256=hashlib.sha256(produced.content).hexdigest(),
    )
    row.file.save(produced.name, ContentFile(produced.content), save=False)
    try:
        row.save()
    except BaseException:
        row.file.delete(save=False)  # stored, but its row is not: the caller's clean-up cannot see it
        raise
    return row


# --- The join -----------------------------------------------------------------------------------


def _join_enqueue(competition: Competition) -> None:
    from arena.tasks import competition_join

    competition_join.delay_on_commit(competition.pk)


def competition_decide(*, competition_id: int) -> str:
    """Decide a competition whose two sides are finished; "waiting" before that. A second call, or
    two at once, find it decided and change nothing."""
    competition = Competition.objects.select_related("task__domain").get(pk=competition_id)
    if competition.status != Status.RUNNING:
        return "already decided"
    results = list(competition.results.filter(state=ArenaResult.State.FINISHED).select_related("profile"))
    if len(results) < 2:
        return "waiting"
    contenders = [
        Contender(r.profile_id, r.passed_gate, r.profit_cents, r.model_cost_cents + r.compute_cost_cents)
        for r in sorted(results, key=lambda r: r.side)
    ]
    winner_id, reason = winner_select(contenders, incumbent_id=competition.incumbent_id)
    status = Status.DECIDED if winner_id is not None else Status.NO_WINNER
    with transaction.atomic():
        if not Competition.objects.filter(pk=competition.pk, status=Status.RUNNING).update(
            status=status, winner=winner_id, reason=reason, decided_at=timezone.now()
        ):
            return "decided elsewhere"
        competition.status, competition.winner_id, competition.reason = status, winner_id, reason
        if competition.mode == Competition.Mode.LIVE:
            winner = next((r for r in results if r.profile_id == winner_id), None)
            _task_settle(competition=competition, winner=winner, results=results)
    logger.info("competition_decided", competition_id=competition.pk, winner=winner_id, reason=reason)
    from arena.services.standings import standing_refresh

    standing_refresh(domain_id=competition.domain_id, pair=(competition.profile_a_id, competition.profile_b_id))
    return status


def _task_settle(*, competition: Competition, winner: ArenaResult | None, results: list[ArenaResult]) -> None:
    """The winner's files become the task's deliverable; with no winner the task is escalated. A task
    moved meanwhile by someone else (an operator cancelled it) keeps its state."""
    task = Task.objects.get(pk=competition.task_id)
    actor = f"arena competition #{competition.pk}"
    try:
        with transaction.atomic():
            if winner is None:
                detail = "; ".join(f"{r.profile.name}: {r.error or 'did not pass'}" for r in results)
                _lease_check(task=task, competition=competition)
                escalation_open(task=task, reason=Escalation.Reason.ARENA_NO_WINNER, actor=actor, detail=detail)
                Task.objects.filter(pk=task.pk).update(lease_owner="", lease_until=None)
                return
            task_transition(task=task, to=S.REVIEWING, actor=actor, holder=competition.holder)
            files = [Produced(f.name, _read(f), f.content_type) for f in winner.files.all()]
            task_deliver(
                task=task,
                files=files,
                summary=winner.summary,
                actor=actor,
                reason=f"{winner.profile.name} won ({competition.reason})",
                holder=competition.holder,
            )
    except (InvalidTransition, LeaseLost) as exc:
        logger.warning("arena_task_moved", competition_id=competition.pk, task_id=task.pk, reason=str(exc))


def _lease_check(*, task: Task, competition: Competition) -> None:
    if task.lease_owner != competition.holder or task.status != S.PROCESSING:
        raise LeaseLost(f"Task #{task.pk} is no longer the competition's ({task.status}).")


def _read(row: ArenaFile) -> bytes:
    with row.file.open("rb") as file:
        return file.read()
