"""The baseline agent: no model at all. It profiles tables honestly and declines everything else."""

from agency.agents.base import AgentDeclined, AgentOutput, Produced, images_inlined, task_input
from agency.agents.report import table_report
from agency.agents.tables import TableUnreadable, table_is_supported
from agency.models import AgentProfile, Attempt, Task

REPORT_NAME = "report.html"
CHART_NAME = "chart.png"


def baseline_work(*, profile: AgentProfile, task: Task, attempt: Attempt) -> AgentOutput:
    """A profile report (HTML) and a chart (PNG) of the task's table; anything else is declined."""
    if not task.input_name or not table_is_supported(task.input_name):
        raise AgentDeclined(
            "The baseline agent reports on CSV, XLSX and JSON tables only; this task needs a person "
            "or a language model."
        )
    try:
        report = table_report(name=task.input_name, content=task_input(task), title=task.title, chart_name=CHART_NAME)
    except TableUnreadable as exc:
        return AgentOutput(outcome=Attempt.Outcome.ERROR, detail=str(exc), error_class=type(exc).__name__)
    return AgentOutput(
        outcome=Attempt.Outcome.APPROVED,
        files=[
            Produced(
                REPORT_NAME, images_inlined(report.html, {CHART_NAME: report.png}).encode(), "text/html; charset=utf-8"
            ),
            Produced(CHART_NAME, report.png, "image/png"),
        ],
        summary=report.summary,
        verdict={"approved": True, "by": "baseline checks: the figures are computed, not written"},
    )


def proposal_from_template(*, title: str, domain_name: str, skills: list[str], amount_cents: int, currency: str) -> str:
    """A bid proposal written without a model: what we will deliver, for how much, and how."""
    matched = ", ".join(skills[:4]) if skills else domain_name.lower()
    return (
        f'Hello, and thank you for posting "{title.strip()}".\n\n'
        f"We are a small {domain_name.lower()} team ({matched}). We would deliver the finished work as "
        f"files you can open directly, with a short note on what we did and what we found, and we "
        f"check every figure before it goes out.\n\n"
        f"Our fixed price is {amount_cents / 100:,.2f} {currency}, everything included. If any part of "
        f"the brief is unclear we will ask in the first hour rather than guess.\n\n"
        f"Kind regards,\nThe Agency"
    )
