"""Paid tasks on the bundled samples, as the product makes them, for the pipeline's tests."""

from pathlib import Path

from agency.models import AgentProfile, Task
from agency.services.tasks import TaskOrder, task_create
from agency.services.uploads import upload_validate
from tests.agency.factories import domain

SAMPLES = Path(__file__).resolve().parents[2] / "agency" / "samples"
# An LLM agent's plan of the regional sales sample, and a review that approves.
BY_REGION = {
    "steps": [
        {
            "op": "group_aggregate",
            "args": {"by": ["region"], "column": "revenue_usd", "agg": "sum"},
            "title": "By region",
        }
    ],
    "narrative_focus": "which region sells most",
}
APPROVED = {"approved": True, "score": 4, "issues": []}


def paid_task(slug: str = "data_analysis", sample: str | None = "regional_sales.csv", **order) -> Task:
    """A prepaid task in `paid` (its hand-over to the pipeline runs only if the test runs commit hooks)."""
    # The migrations' baseline profile, made again after a transactional test flushed it.
    AgentProfile.objects.get_or_create(name="baseline", defaults={"kind": "baseline", "priority": 1000})
    fields = {
        "domain": domain(slug),
        "title": "Summarise sales by region",
        "description": "Which region sells most?",
        "complexity": "simple",  # 15000 cents: below the high-value threshold
        "urgency": "standard",
        "client_email": "client@example.com",
        "client_name": "Client",
        "upload": None,
    } | order
    if sample is None:
        return task_create(order=TaskOrder(**fields), payment=Task.Payment.PREPAID, actor="test")[0]
    path = SAMPLES / sample
    with path.open("rb") as file:
        fields["upload"] = upload_validate(name=path.name, file=file, size=path.stat().st_size)
        return task_create(order=TaskOrder(**fields), payment=Task.Payment.PREPAID, actor="test")[0]
