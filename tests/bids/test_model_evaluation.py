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
