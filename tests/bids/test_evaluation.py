from decimal import Decimal

import pytest

from bids.models import Marketplace, Posting
from bids.services.evaluation import auto_submit_allowed, posting_evaluation, red_flags
from bids.services.postings import marketplace_scan
from tests.agency.gateway_setup import deployment_at, route_of
from tests.bids.factories import MarketplaceFactory, PostingFactory

pytestmark = pytest.mark.django_db

# The bundled demo feed (bids/samples/demo_feed.json), posting by posting.
RED_FLAGGED = ["demo-0007", "demo-0013", "demo-0018", "demo-0022", "demo-0027", "demo-0032"]
OUTSIDE_OUR_SKILLS = ["demo-0004", "demo-0011", "demo-0016", "demo-0023", "demo-0029"]
BUDGET_TOO_SMALL = ["demo-0008", "demo-0015", "demo-0033"]
NO_BUDGET = ["demo-0024", "demo-0035"]
BUDGET_TOO_LARGE = ["demo-0021"]


@pytest.fixture
def demo_postings(domains):
    marketplace = MarketplaceFactory(base_url="bids/samples/demo_feed.json", training_mode=True)
    marketplace_scan(marketplace=marketplace)
    return {posting.external_id: posting for posting in Posting.objects.filter(marketplace=marketplace)}


def test_it_decides_every_demo_posting_by_the_rule_table(demo_postings):
    decisions = {external_id: posting.decision for external_id, posting in demo_postings.items()}
    skip, review = Posting.Decision.SKIP, Posting.Decision.REVIEW
    expected_skips = RED_FLAGGED + OUTSIDE_OUR_SKILLS + BUDGET_TOO_SMALL
    assert sorted(k for k, v in decisions.items() if v == skip) == sorted(expected_skips)
    assert sorted(k for k, v in decisions.items() if v == review) == sorted(NO_BUDGET + BUDGET_TOO_LARGE)
    assert sum(1 for v in decisions.values() if v == Posting.Decision.BID) == 36 - 14 - 3


def test_it_says_why_it_skips(demo_postings):
    assert demo_postings["demo-0007"].reasons == ["Red flag: in-person work."]
    assert demo_postings["demo-0018"].reasons == ["Red flag: contact or payment off the platform."]
    assert demo_postings["demo-0004"].reasons == ["No domain of ours covers these skills."]
    assert "below our minimum" in demo_postings["demo-0015"].reasons[-1]
    assert demo_postings["demo-0024"].reasons[-1] == "No budget is stated."


def test_every_bid_decision_has_an_amount_within_the_budget_and_bounds(demo_postings, settings):
    for posting in demo_postings.values():
        if posting.decision != Posting.Decision.BID:
            continue
        assert settings.BID_MIN_CENTS <= posting.proposed_cents <= settings.BID_MAX_CENTS
        assert (posting.budget_min_cents or 0) <= posting.proposed_cents <= posting.budget_max_cents


@pytest.mark.parametrize(
    ("low", "high", "amount"),
    [
        (5000, 20000, 20000),  # our price (225.00 for a medium data task) is above the budget: its top
        (30000, 40000, 30000),  # below the budget: its bottom
        (10000, 30000, 22500),  # inside: our price
        (1000, 4000, 4000),
        (None, 9000, 9000),
    ],
)
def test_it_moves_our_price_into_the_budget(domains, low, high, amount):
    posting = PostingFactory.build(
        marketplace=MarketplaceFactory(), budget_min_cents=low, budget_max_cents=high, skills=["excel"]
    )
    evaluation = posting_evaluation(posting=posting, domains=list(domains.values()))
    assert (evaluation.decision, evaluation.proposed_cents) == (Posting.Decision.BID, amount)


def test_it_keeps_a_large_budget_within_our_maximum_and_asks_an_operator(domains, settings):
    posting = PostingFactory.build(marketplace=MarketplaceFactory(), budget_min_cents=80000, budget_max_cents=90000)
    evaluation = posting_evaluation(posting=posting, domains=list(domains.values()))
    assert (evaluation.decision, evaluation.proposed_cents) == (Posting.Decision.REVIEW, settings.BID_MAX_CENTS)


def test_the_bounds_follow_the_settings(domains, settings):
    settings.BID_MIN_CENTS, settings.BID_MAX_CENTS = 25000, 26000
    posting = PostingFactory.build(marketplace=MarketplaceFactory(), budget_min_cents=5000, budget_max_cents=90000)
    assert posting_evaluation(posting=posting, domains=list(domains.values())).proposed_cents == 25000


def test_expected_profit_is_the_amount_less_the_fee_and_the_model_cost(domains):
    # 6 000 tokens in at 250 ¢/1M + 1 500 out at 1 000 ¢/1M = 3 ¢ per call; plan, work, review = 9 ¢.
    route_of(deployment_at("http://127.0.0.1:9/v1", price_in="250", price_out="1000"))
    posting = PostingFactory.build(
        marketplace=MarketplaceFactory(fee_percent=20), budget_min_cents=10000, budget_max_cents=10000
    )
    evaluation = posting_evaluation(posting=posting, domains=list(domains.values()))
    assert evaluation.expected_cost_cents == 9
    assert evaluation.expected_profit_cents == 10000 - 2000 - 9


def test_no_model_configured_costs_nothing(domains):
    posting = PostingFactory.build(marketplace=MarketplaceFactory(fee_percent=15), budget_max_cents=10000)
    evaluation = posting_evaluation(posting=posting, domains=list(domains.values()))
    assert (evaluation.expected_cost_cents, evaluation.expected_profit_cents) == (0, 8500)


def test_it_skips_work_that_would_lose_money(domains):
    route_of(deployment_at("http://127.0.0.1:9/v1", price_in="1000000", price_out="1000000"))
    posting = PostingFactory.build(marketplace=MarketplaceFactory(), budget_min_cents=3000, budget_max_cents=3000)
    evaluation = posting_evaluation(posting=posting, domains=list(domains.values()))
    assert evaluation.decision == Posting.Decision.SKIP
    assert evaluation.reasons[-1] == "No profit is expected after the fee and the model cost."


def test_the_domain_covering_most_skills_wins_and_sets_the_confidence(domains):
    posting = PostingFactory.build(
        marketplace=MarketplaceFactory(), skills=["bookkeeping", "quickbooks", "excel", "logo design"]
    )
    evaluation = posting_evaluation(posting=posting, domains=list(domains.values()))
    assert evaluation.domain == domains["accounting"]
    assert str(evaluation.confidence) == "0.50"


@pytest.mark.parametrize(
    ("text", "flags"),
    [
        ("Phone interview required before we start.", ["calls"]),
        ("We'll hop on a Zoom call to discuss.", ["calls"]),
        ("Must work on-site in our Leeds office.", ["in-person work"]),
        ("Message me on WhatsApp, we pay outside the platform.", ["contact or payment off the platform"]),
        ("An unpaid test task comes first.", ["unpaid work"]),
        ("Edit a product video, then a short voice-over script.", []),
        ("Call totals per month from the CSV.", []),
    ],
)
def test_it_finds_red_flags(text, flags):
    assert red_flags(text) == flags


def test_only_api_marketplaces_with_enough_profit_and_confidence_bid_without_an_operator(domains, settings):
    settings.BID_AUTO_MIN_PROFIT_CENTS, settings.BID_AUTO_MIN_CONFIDENCE = 5000, 0.8
    freelancer, feed = MarketplaceFactory(kind=Marketplace.Kind.FREELANCER), MarketplaceFactory()

    def evaluation_at(marketplace, high, skills=("csv", "excel")):
        posting = PostingFactory.build(marketplace=marketplace, budget_max_cents=high, skills=list(skills))
        return posting_evaluation(posting=posting, domains=list(domains.values()))

    assert auto_submit_allowed(marketplace=freelancer, evaluation=evaluation_at(freelancer, 20000))
    assert not auto_submit_allowed(marketplace=feed, evaluation=evaluation_at(feed, 20000))
    assert not auto_submit_allowed(marketplace=freelancer, evaluation=evaluation_at(freelancer, 5000))  # 45.00 kept
    weak = evaluation_at(freelancer, 20000, skills=("csv", "excel", "flutter"))  # 0.67 confidence
    assert not auto_submit_allowed(marketplace=freelancer, evaluation=weak)


def evaluate(domains, **fields):
    posting = PostingFactory.build(marketplace=fields.pop("marketplace", None) or MarketplaceFactory(), **fields)
    return posting_evaluation(posting=posting, domains=list(domains.values()))


def test_a_skip_for_skills_keeps_the_share_covered(domains):
    assert evaluate(domains, skills=["logo design", "branding"]).confidence == Decimal("0.00")
    nothing_listed = evaluate(domains, skills=[])
    assert (nothing_listed.decision, nothing_listed.confidence) == (Posting.Decision.SKIP, Decimal("0.50"))


def test_the_reasons_say_the_figures(demo_postings):
    assert demo_postings["demo-0008"].reasons[-1] == "Budget $25.00 is below our minimum $30.00."
    assert demo_postings["demo-0021"].reasons[-1] == "The budget is above what the agency bids on by itself."


def test_a_budget_starting_at_our_maximum_is_still_ours(domains, settings):
    at_max = evaluate(domains, budget_min_cents=settings.BID_MAX_CENTS, budget_max_cents=60000)
    assert (at_max.decision, at_max.proposed_cents) == (Posting.Decision.BID, settings.BID_MAX_CENTS)


def test_the_expected_cost_asks_each_steps_own_route(domains):
    # The plan and work steps take the any-domain route (6 000 in at 100 ¢ + 1 500 out at 1 000 ¢ per 1M:
    # 2.1 ¢ a call); the data domain's review step its own, free, local route.
    route_of(deployment_at("http://127.0.0.1:9/v1", price_in="100", price_out="1000"))
    review = route_of(deployment_at("http://127.0.0.1:9/v1", model="local", price_in="0", price_out="0"), name="r")
    review.domain, review.purpose = domains["data_analysis"], "review"
    review.save()
    assert evaluate(domains).expected_cost_cents == 5  # 4.2 ¢ rounded up; the review would add 2.1 ¢
    assert evaluate(domains, skills=["bookkeeping"]).expected_cost_cents == 7  # 6.3 ¢, up


def test_a_step_without_a_route_costs_nothing_and_the_others_still_count(domains):
    work = route_of(deployment_at("http://127.0.0.1:9/v1", price_in="100", price_out="1000"), name="w")
    work.domain, work.purpose = domains["data_analysis"], "work"
    work.save()
    assert evaluate(domains).expected_cost_cents == 3  # plan and review have no route: 2.1 ¢ up


def test_gpu_time_is_not_part_of_the_expected_cost(domains):
    route_of(deployment_at("http://127.0.0.1:9/v1", price_in="0", price_out="0", gpu_second_cents="500"))
    assert evaluate(domains).expected_cost_cents == 0


def test_the_profit_is_rounded_half_up(domains):
    # 100.12 at a 12.5 % fee keeps 87.605, rounded half up to 87.61 (half even would give 87.60).
    evaluation = evaluate(
        domains,
        marketplace=MarketplaceFactory(fee_percent=Decimal("12.5")),
        budget_min_cents=10012,
        budget_max_cents=10012,
    )
    assert evaluation.expected_profit_cents == 8761


@pytest.mark.parametrize(("price_in", "decision"), [("999.6667", Posting.Decision.SKIP), ("999.6666", "bid")])
def test_a_bid_needs_at_least_a_cent_of_profit(domains, settings, price_in, decision):
    settings.BID_EXPECTED_TOKENS = (1_000_000, 0)  # three calls: 2 999.0001 ¢ or 2 998.9998 ¢, rounded up
    route_of(deployment_at("http://127.0.0.1:9/v1", price_in=price_in, price_out="0"))
    evaluation = evaluate(
        domains, marketplace=MarketplaceFactory(fee_percent=0), budget_min_cents=3000, budget_max_cents=3000
    )
    assert evaluation.decision == decision
    assert evaluation.expected_profit_cents == (0 if decision == Posting.Decision.SKIP else 1)


def test_the_auto_submit_thresholds_are_inclusive(domains, settings):
    freelancer = MarketplaceFactory(kind=Marketplace.Kind.FREELANCER, fee_percent=0)
    evaluation = evaluate(domains, marketplace=freelancer, budget_min_cents=10000, budget_max_cents=10000)
    settings.BID_AUTO_MIN_PROFIT_CENTS, settings.BID_AUTO_MIN_CONFIDENCE = 10000, 1.0
    assert auto_submit_allowed(marketplace=freelancer, evaluation=evaluation)
    settings.BID_AUTO_MIN_PROFIT_CENTS = 10001
    assert not auto_submit_allowed(marketplace=freelancer, evaluation=evaluation)


def test_the_confidence_is_rounded_half_up(domains):
    skills = ["excel", "flutter", "swift", "kotlin", "unity", "blender", "figma", "sketch"]  # 1 of 8: 0.125
    assert evaluate(domains, skills=skills).confidence == Decimal("0.13")
