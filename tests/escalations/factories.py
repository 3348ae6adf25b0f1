import factory

from escalations.models import Escalation, NotificationChannel
from escalations.services import escalation_open
from tests.agency.factories import TaskFactory


class ChannelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = NotificationChannel

    name = factory.Sequence(lambda n: f"channel-{n}")
    kind = NotificationChannel.Kind.WEBHOOK
    target = "http://127.0.0.1:9/"
    slug = factory.Sequence(lambda n: f"channel_{n}")
    severities = factory.LazyFunction(lambda: ["normal", "high"])
    tier = NotificationChannel.Tier.PRIMARY


def escalate(high_value: bool = False, reason: str = "attempts_exhausted") -> Escalation:
    """A task the pipeline escalated: open, with its notifications queued."""
    task = TaskFactory(status="processing", is_high_value=high_value)
    return escalation_open(task=task, reason=reason, actor="pipeline")[0]
