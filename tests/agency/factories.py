import factory

from agency.models import Client, Domain, Task


class ClientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Client

    email = factory.Sequence(lambda n: f"client{n}@example.com")
    email_normalized = factory.LazyAttribute(lambda client: Client.normalize_email(client.email))
    name = factory.Faker("name")


SEEDED_RATES = {"accounting": 10000, "legal": 17500, "data_analysis": 15000}  # docs/tasks.md


def domain(slug: str = "legal") -> Domain:
    """One of the domains the migrations seed (made again after a transactional test flushed them)."""
    found, _ = Domain.objects.get_or_create(
        slug=slug, defaults={"name": slug.replace("_", " ").title(), "base_rate_cents": SEEDED_RATES[slug]}
    )
    return found


class TaskFactory(factory.django.DjangoModelFactory):
    """A task placed directly in any status (test set-up only; the product goes through the service)."""

    class Meta:
        model = Task

    client = factory.SubFactory(ClientFactory)
    domain = factory.LazyFunction(domain)
    title = factory.Sequence(lambda n: f"Task {n}")
    base_price_cents = 26250
    discount_cents = 0
    price_cents = factory.LazyAttribute(lambda t: t.base_price_cents - t.discount_cents)
    payment = Task.Payment.PREPAID
    status = Task.Status.PENDING
