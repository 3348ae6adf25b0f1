import factory

from escalations.models import NotificationChannel


class ChannelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = NotificationChannel

    name = factory.Sequence(lambda n: f"channel-{n}")
    kind = NotificationChannel.Kind.WEBHOOK
    target = "http://127.0.0.1:9/"
    secret_env = ""
    severities = factory.LazyFunction(lambda: ["normal", "high"])
    tier = NotificationChannel.Tier.PRIMARY
