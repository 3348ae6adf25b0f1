"""Demo data: a few prepaid tasks with the sample inputs bundled in `agency/samples/`."""

from pathlib import Path

from agency.models import Domain, Task
from agency.services.tasks import TaskOrder, task_create
from agency.services.uploads import upload_validate

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
DEMO_CLIENT = "demo-client@agency.local"
DEMO_TASKS = [
    ("accounting", "Categorise Q3 expenses and flag anomalies", "quarterly_expenses.csv", "medium", "standard"),
    ("data_analysis", "Summarise Q2 sales by region and plan", "regional_sales.csv", "simple", "rush"),
    ("legal", "Review a consulting agreement for risky terms", "consulting_agreement.txt", "medium", "standard"),
]


def demo_tasks_seed() -> list[Task]:
    """Create the demo tasks that do not exist yet (by title); returns the ones created."""
    created = []
    for slug, title, sample, complexity, urgency in DEMO_TASKS:
        if Task.objects.filter(client__email=DEMO_CLIENT, title=title).exists():
            continue
        path = SAMPLES / sample
        with path.open("rb") as file:
            upload = upload_validate(name=path.name, file=file, size=path.stat().st_size)
            order = TaskOrder(
                domain=Domain.objects.get(slug=slug),
                title=title,
                description=f"Demo task on the bundled sample {sample}.",
                complexity=complexity,
                urgency=urgency,
                client_email=DEMO_CLIENT,
                client_name="Demo Client",
                upload=upload,
            )
            task, _ = task_create(order=order, payment=Task.Payment.PREPAID, actor="demo")
            created.append(task)
    return created
