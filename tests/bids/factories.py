import factory
from django.utils import timezone

from agency.models import Domain
from bids.models import Bid, Marketplace, Posting
from tests.agency.factories import domain

# The skills migration 0015 gives the seeded domains (made again after a transactional test flushed them).
SKILLS = {
    "data_analysis": ["data analysis", "excel", "csv", "pandas", "statistics", "spreadsheets"],
    "legal": ["legal writing", "contract drafting", "legal research"],
    "accounting": ["accounting", "bookkeeping", "quickbooks"],
}


def skilled_domain(slug: str) -> Domain:
    found = domain(slug)
    if not found.skills:
        found.skills = SKILLS[slug]
        found.save(update_fields=["skills"])
    return found


class MarketplaceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Marketplace

    slug = factory.Sequence(lambda n: f"market{n}")
    name = factory.LazyAttribute(lambda m: m.slug.title())
    kind = Marketplace.Kind.FEED
    base_url = "bids/samples/demo_feed.json"
    training_mode = False
    fee_percent = 10


class PostingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Posting

    marketplace = factory.SubFactory(MarketplaceFactory)
    external_id = factory.Sequence(lambda n: f"job-{n}")
    title = factory.Sequence(lambda n: f"Tidy a sales spreadsheet {n}")
    description = "Totals per region from a CSV export."
    url = factory.LazyAttribute(lambda p: f"https://jobs.example/{p.external_id}")
    budget_min_cents = 5000
    budget_max_cents = 20000
    skills = factory.LazyFunction(lambda: ["csv", "excel"])
    first_seen_at = factory.LazyFunction(timezone.now)
    last_seen_at = factory.LazyAttribute(lambda p: p.first_seen_at)
    decision = Posting.Decision.BID
    domain = factory.LazyFunction(lambda: skilled_domain("data_analysis"))
    proposed_cents = 15000


class BidFactory(factory.django.DjangoModelFactory):
    """A bid placed directly in any status (set-up only; the product goes through the services)."""

    class Meta:
        model = Bid

    posting = factory.SubFactory(PostingFactory)
    marketplace = factory.LazyAttribute(lambda b: b.posting.marketplace)
    amount_cents = 15000
    proposal = "We will do it."
    status = Bid.Status.DRAFT
    live_key = factory.LazyAttribute(lambda b: None if b.status in ("withdrawn", "rejected", "failed") else "live")
