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
