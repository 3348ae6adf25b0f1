"""What every agent returns, and the one call that runs an agent on a task (docs/agents.md).

Running an agent is pure work: it reads the task, may call models through the gateway (linked to
the attempt), and returns files and a verdict. It never changes the task's status; the pipeline
(`agency.services.pipeline`) and later the arena decide what happens with the result.
"""

import base64
from dataclasses import dataclass, field

import structlog

from agency.gateway.errors import GatewayConfigError, GatewayError
from agency.models import AgentProfile, Attempt, ModelCall, Task

logger = structlog.get_logger(__name__)

Outcome = Attempt.Outcome


@dataclass(frozen=True)
class Produced:
    """One file of a deliverable, in memory until the pipeline stores it."""

    name: str
    content: bytes
    content_type: str


@dataclass(frozen=True)
class TeacherStep:
    """A model's answer that went into the deliverable, with the exact messages it was sent."""

    call: ModelCall
    messages: list[dict]
    response: str


@dataclass
class AgentOutput:
    outcome: str  # an Attempt.Outcome other than running and abandoned
    files: list[Produced] = field(default_factory=list)
    summary: str = ""  # plain text: what was delivered (experience and the operator's view)
    detail: str = ""  # why it failed, was rejected or declined
    error_class: str = ""
    retryable: bool = False  # an error another attempt may not meet (a model unavailable)
    plan: dict | None = None
    verdict: dict | None = None
    teacher_steps: list[TeacherStep] = field(default_factory=list)


class AgentDeclined(Exception):
    """The agent cannot do this kind of work at all: a person (or another agent) must."""


def images_inlined(html: str, images: dict[str, bytes]) -> str:
    """`html` with each `src="NAME"` of `images` replaced by the PNG itself: a report that still
    shows its charts when the client opens the downloaded file alone."""
    for name, png in images.items():
        html = html.replace(f'src="{name}"', f'src="data:image/png;base64,{base64.b64encode(png).decode()}"')
    return html


def task_input(task: Task) -> bytes:
    """The client's uploaded file, whole (uploads are bounded by TASK_INPUT_MAX_BYTES)."""
    if not task.input_file:
        return b""
    with task.input_file.open("rb") as file:
        return file.read()


def agent_run(*, profile: AgentProfile, task: Task, attempt: Attempt) -> AgentOutput:
    """Run `profile`'s agent on `task` for `attempt`. Never raises for the agent's own failures:
    they come back as an `error` or `declined` output with the reason."""
    from agency.agents import baseline, llm

    work = baseline.baseline_work if profile.kind == AgentProfile.Kind.BASELINE else llm.llm_work
    try:
        return work(profile=profile, task=task, attempt=attempt)
    except AgentDeclined as exc:
        return AgentOutput(outcome=Outcome.DECLINED, detail=str(exc))
    except GatewayConfigError as exc:
        # Ours to fix, not the client's: no attempt will do better until an operator acts.
        return AgentOutput(
            outcome=Outcome.DECLINED, detail=f"Model configuration: {exc}", error_class=type(exc).__name__
        )
    except GatewayError as exc:
        return AgentOutput(outcome=Outcome.ERROR, detail=str(exc), error_class=type(exc).__name__, retryable=True)
    except Exception as exc:
        logger.exception("agent_failed", task_id=task.pk, attempt_id=attempt.pk, profile=profile.name)
        return AgentOutput(outcome=Outcome.ERROR, detail=f"{type(exc).__name__}: {exc}", error_class=type(exc).__name__)
