"""Demo data: a few prepaid tasks with the sample inputs bundled in `agency/samples/`, an
operators' e-mail channel, and one task no agent can do, escalated to the operators."""

from pathlib import Path

from agency.models import Domain, Task
from agency.services.tasks import TaskOrder, task_create, task_transition
from agency.services.uploads import upload_validate
from escalations.models import Escalation, NotificationChannel
from escalations.services import escalation_open

SAMPLES = Path(__file__).resolve().parent / "samples"
DEMO_CLIENT = "demo-client@agency.local"
DEMO_TASKS = [
    ("accounting", "Categorise Q3 expenses and flag anomalies", "quarterly_expenses.csv", "medium", "standard"),
    ("data_analysis", "Summarise Q2 sales by region and plan", "regional_sales.csv", "simple", "rush"),
    ("legal", "Review a consulting agreement for risky terms", "consulting_agreement.txt", "medium", "standard"),
    ("legal", "Notarise the agreement in person and file it at the registry", "consulting_agreement.txt", "simple",
     "urgent"),
]  # fmt: skip
# Work that needs hands and a stamp: planning finds no capable agent and hands it to a person.
UNDOABLE_TITLE = DEMO_TASKS[-1][1]
UNDOABLE_DETAIL = "Needs a notary's stamp and a visit to the registry: no agent can do physical work."
DEMO_CHANNEL = "Operators (console e-mail)"


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


def demo_channel_seed() -> NotificationChannel:
    """The operators' e-mail channel; with the default console backend its mail is printed."""
    channel, _ = NotificationChannel.objects.get_or_create(
        name=DEMO_CHANNEL, defaults={"kind": NotificationChannel.Kind.EMAIL, "target": "operators@agency.local"}
    )
    return channel


def demo_undoable_escalate() -> Escalation | None:
    """Plan the undoable demo task, find no capable agent and escalate it (once; a rerun finds it open).

    Stands in for the planner until the work pipeline exists, through the same services: the
    move to planning and the escalation commit separately, and a rerun picks up where it stopped.
    """
    task = Task.objects.filter(client__email=DEMO_CLIENT, title=UNDOABLE_TITLE).first()
    if task is None:
        return None
    if task.status == Task.Status.PAID:
        task = task_transition(task=task, to=Task.Status.PLANNING, actor="demo planner")
    if task.status != Task.Status.PLANNING:
        return task.escalations.order_by("-pk").first()
    escalation, _ = escalation_open(
        task=task, reason=Escalation.Reason.NO_CAPABLE_AGENT, actor="demo planner", detail=UNDOABLE_DETAIL
    )
    return escalation
