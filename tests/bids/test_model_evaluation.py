"""The optional model evaluation and model-written proposals, against a loopback OpenAI-compatible server."""

import json
import os

import pytest

from bids.models import Bid, Posting
from bids.services.postings import posting_upsert_many, postings_evaluate
from tests.agency.fake_openai import ok, status
from tests.agency.gateway_setup import deployment_at, route_of
from tests.bids.factories import MarketplaceFactory
from tests.bids.test_feed import JSON_FEED

pytestmark = pytest.mark.django_db


@pytest.fixture
def model(fake_openai, fast_gateway, settings):
    settings.BID_MODEL_EVALUATION = True
    route_of(deployment_at(fake_openai.url))  # the any-domain, any-purpose route
    return fake_openai


def evaluated_one(marketplace=None) -> Posting:
    """One data posting the rules would bid on, scanned and evaluated."""
    from bids.marketplaces.base import FoundPosting

    marketplace = marketplace or MarketplaceFactory()
    found = FoundPosting("j-1", "Sales totals per region", "Orders CSV.", "https://jobs.example/j-1", 10000, 20000,
                         skills=("csv", "excel"))  # fmt: skip
    posting_upsert_many(marketplace=marketplace, found=[found])
    postings_evaluate(marketplace=marketplace, actor="scan")
    return Posting.objects.get(marketplace=marketplace, external_id="j-1")


def opinion(decision: str, confidence: float = 0.9, *reasons: str) -> str:
    return json.dumps({"decision": decision, "reasons": list(reasons) or ["fine"], "confidence": confidence})


def test_the_model_can_turn_a_bid_into_a_skip_with_its_reasons(domains, model):
    model.then(ok(opinion("skip", 0.8, "The client wants weekly calls.")))
    posting = evaluated_one()
    assert posting.decision == Posting.Decision.SKIP
    assert posting.reasons[-1] == "Model: The client wants weekly calls."
    assert not Bid.objects.exists()
    (call,) = posting.model_calls.all()
    assert (call.purpose, call.outcome) == ("evaluate", "ok")
    sent = model.requests[0]["json"]["messages"]
    assert "Sales totals per region" in sent[1]["content"] and "csv, excel" in sent[1]["content"]


def test_an_agreeing_model_lowers_the_confidence_to_its_own(domains, model):
    model.then(ok(opinion("bid", 0.6)))
    posting = evaluated_one()
    assert (posting.decision, str(posting.confidence)) == (Posting.Decision.BID, "0.60")
    assert Bid.objects.get().posting == posting


@pytest.mark.parametrize(
    "answer",
    [
        "__import__('os').system('touch /tmp/agency-pwned')",
        "Sure! I think you should bid.",
        json.dumps({"decision": "bid", "reasons": [], "confidence": 7}),
        json.dumps({"decision": "always", "reasons": [], "confidence": 0.5}),
    ],
)
def test_an_answer_that_is_not_the_schema_asks_a_person_and_runs_nothing(domains, model, answer):
    model.then(ok(answer))
    posting = evaluated_one()
    assert posting.decision == Posting.Decision.REVIEW
    assert "The model evaluation failed (GatewayOutputInvalid)" in posting.reasons[-1]
    assert posting.model_calls.get().outcome == "invalid_output"
    assert not Bid.objects.exists()
    assert not os.path.exists("/tmp/agency-pwned")  # noqa: S108 (the path the hostile answer names)


def test_no_model_answering_asks_a_person(domains, model):
    model.default = status(503)
    posting = evaluated_one()
    assert posting.decision == Posting.Decision.REVIEW
    assert "GatewayUnavailable" in posting.reasons[-1]


def test_the_rules_skip_before_any_model_is_asked(domains, model):
    marketplace = MarketplaceFactory()
    flagged = JSON_FEED["items"][0] | {"description": "Phone interview required."}
    from bids.marketplaces.base import FoundPosting

    posting_upsert_many(marketplace=marketplace, found=[FoundPosting("f-1", flagged["title"], flagged["description"])])
    postings_evaluate(marketplace=marketplace, actor="scan")
    assert Posting.objects.get().decision == Posting.Decision.SKIP
    assert model.requests == []


def test_a_model_writes_the_proposal_and_the_template_stands_in_when_it_cannot(domains, model, settings):
    settings.BID_MODEL_EVALUATION, settings.BID_MODEL_PROPOSALS = False, True
    letter = "We will total the orders per region and send an HTML report with a chart, fixed price."
    model.then(ok(json.dumps({"proposal": letter})))
    posting = evaluated_one()
    assert Bid.objects.get(posting=posting).proposal == letter
    assert posting.model_calls.get().purpose == "propose"
    model.then(ok("not json"))
    other = MarketplaceFactory()
    evaluated_one(other)
    assert "Our fixed price is" in Bid.objects.get(marketplace=other).proposal  # the template


def test_the_model_reads_the_posting_and_the_rules_reasons_stay(domains, model):
    model.then(ok(opinion("skip", 0.8, "Weekly calls.")))
    posting = evaluated_one()
    system, user = model.requests[0]["json"]["messages"]
    assert system["role"] == "system" and user["role"] == "user"
    assert "delivers Data analysis work" in system["content"]
    assert '"decision": {"enum": ["bid", "skip", "needs_review"]}' in system["content"]
    assert (
        user["content"]
        == "Title: Sales totals per region\nBudget: 100.00 to 200.00 USD\nSkills: csv, excel\n\nOrders CSV."
    )
    assert posting.reasons == ["Matches data_analysis.", "Model: Weekly calls."]


def test_a_long_description_reaches_the_model_cut(domains, model):
    from bids.marketplaces.base import FoundPosting

    model.then(ok(opinion("bid")))
    marketplace = MarketplaceFactory()
    found = FoundPosting("long", "Sales", "d" * 5000, budget_min_cents=10000, budget_max_cents=20000, skills=("csv",))
    posting_upsert_many(marketplace=marketplace, found=[found])
    postings_evaluate(marketplace=marketplace, actor="scan")
    assert model.requests[0]["json"]["messages"][1]["content"].endswith("\n\n" + "d" * 4000)


def test_the_domains_evaluate_route_is_asked(domains, model, second_fake_openai):
    evaluate = route_of(deployment_at(second_fake_openai.url), name="data-evaluate")
    evaluate.domain, evaluate.purpose = domains["data_analysis"], "evaluate"
    evaluate.save()
    second_fake_openai.then(ok(opinion("bid", 0.9)))
    evaluated_one()
    assert (len(second_fake_openai.requests), len(model.requests)) == (1, 0)


def test_the_models_confidence_is_rounded_half_up(domains, model):
    model.then(ok(opinion("bid", 0.565)))
    assert str(evaluated_one().confidence) == "0.57"


def test_a_proposal_states_the_amount_and_a_failed_one_is_still_in_the_ledger(domains, model, settings):
    settings.BID_MODEL_EVALUATION, settings.BID_MODEL_PROPOSALS = False, True
    model.then(ok("not json"))
    posting = evaluated_one()
    system, user = model.requests[0]["json"]["messages"]
    assert (system["role"], user["role"]) == ("system", "user")
    assert "State the fixed price of 200.00 USD" in system["content"] and "Data analysis work" in system["content"]
    assert '"proposal": {"type": "string"' in system["content"]
    assert user["content"].startswith("Title: Sales totals per region\nBudget: 100.00 to 200.00 USD")
    assert posting.model_calls.get().outcome == "invalid_output"


def test_the_domains_propose_route_writes_the_proposal(domains, model, second_fake_openai, settings):
    settings.BID_MODEL_EVALUATION, settings.BID_MODEL_PROPOSALS = False, True
    propose = route_of(deployment_at(second_fake_openai.url), name="data-propose")
    propose.domain, propose.purpose = domains["data_analysis"], "propose"
    propose.save()
    letter = "Totals per region and a chart, delivered as an HTML report, at a fixed price of 200.00 USD."
    second_fake_openai.then(ok(json.dumps({"proposal": f"  {letter}  "})))
    posting = evaluated_one()
    assert Bid.objects.get(posting=posting).proposal == letter
    assert model.requests == []


def test_the_model_writes_proposals_only_when_asked_and_only_for_bids(domains, model, settings):
    model.then(ok(opinion("bid")))
    evaluated_one()
    assert [r["json"]["messages"][0]["content"][:20] for r in model.requests] == ["You screen freelance"]
    settings.BID_MODEL_PROPOSALS = True
    letter = "Totals per region and a chart, delivered as an HTML report, at a fixed price of 200.00 USD."
    model.then(ok(opinion("bid")), ok(json.dumps({"proposal": letter})))
    posting = evaluated_one(MarketplaceFactory())
    assert sorted(posting.model_calls.values_list("purpose", flat=True)) == ["evaluate", "propose"]
    model.then(ok(opinion("skip")))
    evaluated_one(MarketplaceFactory())
    assert len(model.requests) == 4  # a skipped posting gets no proposal


def test_a_budget_with_only_a_maximum_reads_up_to_it(domains, model):
    from bids.marketplaces.base import FoundPosting

    model.then(ok(opinion("bid")))
    marketplace = MarketplaceFactory()
    found = FoundPosting("cap", "Sales", "Orders.", budget_min_cents=None, budget_max_cents=20000, skills=("csv",))
    posting_upsert_many(marketplace=marketplace, found=[found])
    postings_evaluate(marketplace=marketplace, actor="scan")
    assert "\nBudget: up to 200.00 USD\n" in model.requests[0]["json"]["messages"][1]["content"]


def test_no_answer_at_all_links_no_ledger_row_it_does_not_have(domains, model):
    model.default = status(503)
    posting = evaluated_one()
    assert posting.model_calls.count() == 0  # the failures are in the ledger, unlinked: no call answered
