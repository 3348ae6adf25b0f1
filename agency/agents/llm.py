"""The LLM agent: plan → work → review, every step a model call through the gateway, linked to the
task and the attempt (docs/agents.md).

For tables, the plan is a list of steps from the fixed analysis catalogue
(`agency.agents.operations`), checked and run by our code; the model only writes the narrative
around the results. For text domains the model drafts the deliverable as Markdown. Nothing a model
writes is executed or evaluated: plans and verdicts are JSON validated against schemas, and a plan
naming anything outside the catalogue is refused.
"""

import json
from functools import cached_property

from django.utils.html import escape

from agency.agents.base import AgentOutput, Produced, TeacherStep, images_inlined, task_input
from agency.agents.operations import (
    ARGS_SCHEMAS,
    PLAN_SCHEMA,
    PlanRefused,
    plan_run,
    step_results_charts,
    step_results_html,
)
from agency.agents.tables import TableUnreadable, table_is_supported, table_read
from agency.gateway import gateway_complete
from agency.gateway.selectors import route_for
from agency.models import AgentProfile, Attempt, Route, Task
from agency.services.experience import experience_similar

Outcome = Attempt.Outcome
SAMPLE_ROWS = 5
RESULT_ROWS_SHOWN = 20
# A client's document goes into the prompt up to this many characters (a model's context is finite;
# uploads may be far larger).
DOCUMENT_CHARS_MAX = 60_000

TEXT_PLAN_SCHEMA = {
    "type": "object",
    "properties": {
        "approach": {"type": "string", "maxLength": 2000},
        "outline": {"type": "array", "items": {"type": "string", "maxLength": 300}, "minItems": 1, "maxItems": 20},
    },
    "required": ["approach", "outline"],
    "additionalProperties": False,
}
VERDICT_SCHEMA = {
    "type": "object",
    "properties": {
        "approved": {"type": "boolean"},
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
        "issues": {"type": "array", "items": {"type": "string", "maxLength": 500}, "maxItems": 20},
    },
    "required": ["approved", "score", "issues"],
    "additionalProperties": False,
}


class _Run:
    """One attempt's calls: the route per purpose, and the answers that made the deliverable."""

    def __init__(self, profile: AgentProfile, task: Task, attempt: Attempt):
        self.profile, self.task, self.attempt = profile, task, attempt
        self.teacher_steps: list[TeacherStep] = []

    @cached_property
    def brief(self) -> str:
        """The task as every step's prompt states it, with the closest approved work of its domain."""
        task = self.task
        examples = experience_similar(domain=task.domain, text=f"{task.title}\n{task.description}")
        shown = "".join(f"\n- {e.title}: {e.summary}" for e in examples)
        lines = [f"Task: {task.title}", f"Domain: {task.domain.name}", f"Description: {task.description or '(none)'}"]
        if shown:
            lines.append(f"Approved work on similar tasks, as examples:{shown}")
        return "\n".join(lines)

    def route(self, purpose: str) -> Route:
        return self.profile.route or route_for(domain=self.task.domain, purpose=purpose)

    def ask(self, purpose: str, messages: list[dict], schema: dict | None = None, keep: bool = False):
        completion = gateway_complete(
            purpose=purpose,
            route=self.route(purpose),
            messages=messages,
            response_schema=schema,
            task=self.task,
            agent_attempt=self.attempt,
        )
        if keep:  # the answer that becomes the deliverable: a training example once approved
            self.teacher_steps.append(TeacherStep(completion.model_call, messages, completion.text))
        return completion


def llm_work(*, profile: AgentProfile, task: Task, attempt: Attempt) -> AgentOutput:
    run = _Run(profile, task, attempt)
    if task.input_name and table_is_supported(task.input_name):
        try:
            table = table_read(name=task.input_name, content=task_input(task))
        except TableUnreadable as exc:
            return AgentOutput(outcome=Outcome.ERROR, detail=str(exc), error_class=type(exc).__name__)
        return _table_work(run, table)
    return _text_work(run)


def _system(run: _Run, role: str) -> dict:
    style = f"\n{run.profile.prompt_style}" if run.profile.prompt_style else ""
    return {"role": "system", "content": f"{role}{style}"}


def _table_work(run: _Run, table) -> AgentOutput:
    columns = ", ".join(f"{name} ({dtype})" for name, dtype in table.dtypes.astype(str).items())
    sample = table.head(SAMPLE_ROWS).to_csv(index=False)
    plan_messages = [
        _system(
            run,
            "You plan data analyses. Answer with a JSON plan of steps using only these operations, whose "
            f"arguments follow these JSON schemas: {json.dumps(ARGS_SCHEMAS)}",
        ),
        {"role": "user", "content": f"{run.brief}\nColumns: {columns}\nFirst rows (CSV):\n{sample}"},
    ]
    # Validated against the schema by the gateway; read again with floats, as pandas compares them.
    plan = json.loads(run.ask("plan", plan_messages, PLAN_SCHEMA).text)
    try:
        results = plan_run(plan, table)
    except PlanRefused as exc:
        detail = f"The model's plan was refused: {exc}"
        return AgentOutput(outcome=Outcome.ERROR, detail=detail, error_class="PlanRefused", retryable=True, plan=plan)
    html, charts = step_results_html(results), step_results_charts(results)
    figures = "\n\n".join(
        f"## {r.title}\n{r.table.head(RESULT_ROWS_SHOWN).to_csv(index=False)}" for r in results if r.table is not None
    )
    narrative = run.ask(
        "work",
        [
            _system(
                run, "You write the narrative of a data analysis for a client, in Markdown, from the results given."
            ),
            {"role": "user", "content": f"{run.brief}\nResults (CSV):\n{figures}"},
        ],
        keep=True,
    ).text
    page = _report_page(run.task.title, narrative, html, charts)
    files = [Produced("report.html", page.encode(), "text/html; charset=utf-8")]
    files += [Produced(name, png, "image/png") for name, png in charts.items()]
    return _reviewed(run, narrative + "\n\n" + figures, files, plan=plan, summary=narrative)


def _text_work(run: _Run) -> AgentOutput:
    source = task_input(run.task).decode("utf-8", errors="replace") if run.task.input_file else ""
    if len(source) > DOCUMENT_CHARS_MAX:
        source = source[:DOCUMENT_CHARS_MAX] + "\n[… the rest of the document is left out]"
    material = f"\nThe client's document:\n{source}" if source else ""
    plan = run.ask(
        "plan",
        [
            _system(run, "You plan professional written work. Answer with JSON."),
            {"role": "user", "content": run.brief},
        ],
        TEXT_PLAN_SCHEMA,
    ).data
    draft = run.ask(
        "work",
        [
            _system(run, "You write the deliverable for a client in Markdown, following the plan."),
            {"role": "user", "content": f"{run.brief}\nPlan: {json.dumps(plan, default=str)}{material}"},
        ],
        keep=True,
    ).text
    files = [Produced("deliverable.md", draft.encode(), "text/markdown; charset=utf-8")]
    return _reviewed(run, draft, files, plan=plan, summary=draft[:1000])


def _reviewed(run: _Run, work: str, files: list[Produced], *, plan, summary: str) -> AgentOutput:
    verdict = run.ask(
        "review",
        [
            _system(run, "You review a deliverable against its task. Answer with a JSON verdict."),
            {"role": "user", "content": f"{run.brief}\nDeliverable:\n{work}"},
        ],
        VERDICT_SCHEMA,
    ).data
    if not verdict["approved"]:
        issues = "; ".join(verdict["issues"]) or "no reason given"
        return AgentOutput(outcome=Outcome.REJECTED, detail=f"Review rejected it: {issues}", plan=plan, verdict=verdict)
    return AgentOutput(
        outcome=Outcome.APPROVED,
        files=files,
        summary=summary,
        plan=plan,
        verdict=verdict,
        teacher_steps=run.teacher_steps,
    )


def _report_page(title: str, narrative: str, results_html: str, charts: dict[str, bytes]) -> str:
    """One self-contained page: the narrative as escaped text, the results, the charts inline."""
    results_html = images_inlined(results_html, charts)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title></head><body>"
        f"<h1>{escape(title)}</h1><div style='white-space: pre-wrap'>{escape(narrative)}</div>{results_html}"
        "</body></html>"
    )
