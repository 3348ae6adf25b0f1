"""Demo data: a few prepaid tasks with the sample inputs bundled in `agency/samples/`, an
operators' e-mail channel, an LLM agent profile to challenge the baseline in the arena, and a
marketplace in training mode reading the feed bundled in `bids/samples/` (the cycle scans it,
evaluates the postings and simulates the bids). With no model configured, the baseline agent reports
on the tables and wins their competitions, and the legal text, which no agent here can do, is
escalated to the operators; with a model, the LLM agent takes them all."""

from pathlib import Path

from agency.gateway.configuration import ENV_PROFILE
from agency.models import AgentProfile, Domain, Task
from agency.services.tasks import TaskOrder, task_create
from agency.services.uploads import upload_validate
from bids.models import Marketplace
from escalations.models import NotificationChannel

SAMPLES = Path(__file__).resolve().parent / "samples"
DEMO_CLIENT = "demo-client@agency.local"
DEMO_TASKS = [
    ("accounting", "Categorise Q3 expenses and flag anomalies", "quarterly_expenses.csv", "medium", "standard"),
    ("data_analysis", "Summarise Q2 sales by region and plan", "regional_sales.csv", "simple", "rush"),
    ("legal", "Review a consulting agreement for risky terms", "consulting_agreement.txt", "medium", "standard"),
]
DEMO_CHANNEL = "Operators (console e-mail)"
DEMO_MARKETPLACE = "demo"
CHALLENGER_PRIORITY = 2000  # behind the seeded baseline (1000): the baseline stays routed


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


def demo_marketplace_seed() -> Marketplace:
    """The demo marketplace: the bundled feed, in training mode (bids are simulated, nothing is sent)."""
    marketplace, _ = Marketplace.objects.get_or_create(
        slug=DEMO_MARKETPLACE,
        defaults={
            "name": "Demo marketplace (training)",
            "kind": Marketplace.Kind.FEED,
            "base_url": "bids/samples/demo_feed.json",
            "training_mode": True,
        },
    )
    return marketplace


def demo_challenger_seed() -> AgentProfile:
    """The LLM profile the baseline meets in the arena. Without a model it declines every task (its
    calls have no route), so the baseline wins where it can; with a model configured, that profile
    exists already, routed ahead of the baseline, and this leaves it alone."""
    profile, _ = AgentProfile.objects.get_or_create(
        name=ENV_PROFILE, defaults={"kind": AgentProfile.Kind.LLM, "priority": CHALLENGER_PRIORITY}
    )
    return profile
