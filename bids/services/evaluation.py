"""Whether to bid on a posting, for how much, and what the agency expects to keep (docs/bids.md).

Rules first, in this order, each adding a reason: red flags (in-person work, calls, payment off the
platform, unpaid tests) skip; no domain of ours covering the posting's skills skips; a budget below
BID_MIN_CENTS skips; no budget or one above BID_MAX_CENTS asks an operator. The amount is our own
price for the domain, moved into the posting's budget and then into [BID_MIN_CENTS, BID_MAX_CENTS].
The expected cost is what the domain's model route would charge for a plan, a piece of work and a
review (nothing when no model is configured: the baseline agent works for free); the expected
profit is the amount less the marketplace's fee and that cost.
"""

import json
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings

from agency.gateway.cost import call_cost
from agency.gateway.errors import GatewayConfigError, GatewayError
from agency.gateway.selectors import route_deployments, route_for
from agency.gateway.services import gateway_complete
from agency.models import Domain, ModelCall, Task
from agency.money import dollars
from agency.pricing import price
from bids.models import Marketplace, Posting

RED_FLAGS = {
    "in-person work": r"\b(on[- ]?site|in[- ]person|at our office)\b",
    "calls": r"\b(phone|zoom|skype|video|voice) (call|calls|interview|meeting)s?\b|\bhop on a (call|zoom)\b",
    "contact or payment off the platform": r"\b(whats ?app|telegram|outside (of )?the platform|off[- ]platform)\b",
    "unpaid work": r"\b(unpaid|free) (test|trial|sample)\b",
}
_RED_FLAGS = {name: re.compile(pattern, re.IGNORECASE) for name, pattern in RED_FLAGS.items()}
# Calls per task the expected cost counts: plan, work, review.
EXPECTED_CALLS = ("plan", "work", "review")


@dataclass
class Evaluation:
    decision: str
    reasons: list[str] = field(default_factory=list)
    domain: Domain | None = None
    proposed_cents: int | None = None
    expected_cost_cents: int | None = None
    expected_profit_cents: int | None = None
    confidence: Decimal | None = None


def posting_evaluation(*, posting: Posting, domains: list[Domain]) -> Evaluation:
    """The rules' verdict on one posting (reads the routes for the cost; writes nothing)."""
    flags = red_flags(f"{posting.title}\n{posting.description}")
    if flags:
        return Evaluation(Posting.Decision.SKIP, [f"Red flag: {flag}." for flag in flags])
    domain, confidence = domain_match(skills=posting.skills, domains=domains)
    if domain is None:
        return Evaluation(Posting.Decision.SKIP, ["No domain of ours covers these skills."], confidence=confidence)
    low, high = posting.budget_min_cents, posting.budget_max_cents
    evaluation = Evaluation(Posting.Decision.BID, [f"Matches {domain.slug}."], domain, confidence=confidence)
    if high is None:
        evaluation.decision = Posting.Decision.REVIEW
        evaluation.reasons.append("No budget is stated.")
        return evaluation
    if high < settings.BID_MIN_CENTS:
        evaluation.decision = Posting.Decision.SKIP
        evaluation.reasons.append(f"Budget {dollars(high)} is below our minimum {dollars(settings.BID_MIN_CENTS)}.")
        return evaluation
    if (low or 0) > settings.BID_MAX_CENTS:
        evaluation.decision = Posting.Decision.REVIEW
        evaluation.reasons.append("The budget is above what the agency bids on by itself.")
    evaluation.proposed_cents = amount_proposed(domain=domain, low=low, high=high)
    evaluation.expected_cost_cents = expected_cost_cents(domain=domain)
    fee = Decimal(evaluation.proposed_cents) * posting.marketplace.fee_percent / 100
    kept = Decimal(evaluation.proposed_cents) - fee - evaluation.expected_cost_cents
    evaluation.expected_profit_cents = int(kept.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    if evaluation.expected_profit_cents <= 0 and evaluation.decision == Posting.Decision.BID:
        evaluation.decision = Posting.Decision.SKIP
        evaluation.reasons.append("No profit is expected after the fee and the model cost.")
    return evaluation


def red_flags(text: str) -> list[str]:
    return [name for name, pattern in _RED_FLAGS.items() if pattern.search(text)]


def domain_match(*, skills: list[str], domains: list[Domain]) -> tuple[Domain | None, Decimal]:
    """The domain covering most of the posting's skills, and the share it covers (0.50 with no skills
    listed, where only the domain's own words could tell)."""
    wanted = {skill.strip().lower() for skill in skills or [] if skill.strip()}
    if not wanted:
        return None, Decimal("0.50")
    best, covered = None, 0
    for domain in domains:
        overlap = len(wanted & {skill.lower() for skill in domain.skills or []})
        if overlap > covered:
            best, covered = domain, overlap
    return best, (Decimal(covered) / len(wanted)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def amount_proposed(*, domain: Domain, low: int | None, high: int) -> int:
    """Our price for a standard task of the domain, within the budget, then within our bounds."""
    ours = price(
        base_rate_cents=domain.base_rate_cents,
        complexity=Task.Complexity.MEDIUM,
        urgency=Task.Urgency.STANDARD,
        completed_tasks=0,
    )[3]
    within_budget = min(max(ours, low or 0), high)
    return min(max(within_budget, settings.BID_MIN_CENTS), settings.BID_MAX_CENTS)


def expected_cost_cents(*, domain: Domain) -> int:
    """What the domain's routes would charge for one task's calls at the expected sizes, rounded up."""
    tokens_in, tokens_out = settings.BID_EXPECTED_TOKENS
    total = Decimal(0)
    for purpose in EXPECTED_CALLS:
        try:
            deployments = route_deployments(route=route_for(domain=domain, purpose=purpose))
        except GatewayConfigError:
            continue  # no model for this step: the baseline agent does the work
        if deployments:
            total += call_cost(deployment=deployments[0], tokens_in=tokens_in, tokens_out=tokens_out, latency_ms=0)
    return int(total.to_integral_value(rounding="ROUND_CEILING"))


def auto_submit_allowed(*, marketplace: Marketplace, evaluation: Evaluation) -> bool:
    """The approval policy: no operator needed where the marketplace takes API bids and the expected
    profit and confidence reach the thresholds."""
    return (
        marketplace.takes_api_bids
        and evaluation.decision == Posting.Decision.BID
        and evaluation.expected_profit_cents >= settings.BID_AUTO_MIN_PROFIT_CENTS
        and evaluation.confidence >= Decimal(str(settings.BID_AUTO_MIN_CONFIDENCE))
    )


# --- The optional model evaluation (BID_MODEL_EVALUATION) ------------------------------------------

OPINION_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["decision", "reasons", "confidence"],
    "properties": {
        "decision": {"enum": ["bid", "skip", "needs_review"]},
        "reasons": {"type": "array", "items": {"type": "string", "maxLength": 300}, "maxItems": 5},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
}
OPINION_INSTRUCTIONS = (
    "You screen freelance job postings for an agency that delivers {domain} work as files, remotely, "
    "without calls or meetings. Say whether to bid, skip it, or ask a person (needs_review), with short "
    "reasons and your confidence from 0 to 1. Answer with JSON only, matching this schema: {schema}"
)


def model_opinion(*, posting: Posting, evaluation: Evaluation) -> tuple[Evaluation, list[int]]:
    """Ask the domain's `evaluate` route about a posting the rules would bid on. Fails closed: an
    answer that is not valid JSON of the schema, or no answer, makes it `needs_review`; the model may
    turn a bid into a skip or a review, never the reverse. Returns the evaluation and the ledger rows."""
    if evaluation.decision != Posting.Decision.BID:
        return evaluation, []
    instructions = OPINION_INSTRUCTIONS.format(domain=evaluation.domain.name, schema=json.dumps(OPINION_SCHEMA))
    opinion, failure, calls = _model_answer(
        domain=evaluation.domain, purpose=ModelCall.Purpose.EVALUATE, instructions=instructions, posting=posting,
        schema=OPINION_SCHEMA,
    )  # fmt: skip
    if opinion is None:
        evaluation.decision = Posting.Decision.REVIEW
        evaluation.reasons.append(f"The model evaluation failed ({failure}); a person decides.")
        return evaluation, calls
    evaluation.reasons += [f"Model: {reason}" for reason in opinion["reasons"]]
    if opinion["decision"] != Posting.Decision.BID:
        evaluation.decision = opinion["decision"]
    model_confidence = Decimal(str(opinion["confidence"])).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    evaluation.confidence = min(evaluation.confidence, model_confidence)
    return evaluation, calls


PROPOSAL_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["proposal"],
    "properties": {"proposal": {"type": "string", "minLength": 40, "maxLength": 3000}},
}
PROPOSAL_INSTRUCTIONS = (
    "Write the cover letter of a bid on this freelance job for an agency that delivers {domain} work as "
    "files, remotely. State the fixed price of {amount} {currency}, what will be delivered and how; no "
    "calls, no contact details, no promises beyond the brief. Answer with JSON only, matching: {schema}"
)


def proposal_by_model(*, posting: Posting, domain: Domain, amount_cents: int) -> tuple[str, list[int]]:
    """The domain's `propose` route writes the proposal; "" when it cannot (the template is used)."""
    instructions = PROPOSAL_INSTRUCTIONS.format(
        domain=domain.name, amount=f"{amount_cents / 100:.2f}", currency=posting.currency,
        schema=json.dumps(PROPOSAL_SCHEMA),
    )  # fmt: skip
    answer, _, calls = _model_answer(
        domain=domain, purpose=ModelCall.Purpose.PROPOSE, instructions=instructions, posting=posting,
        schema=PROPOSAL_SCHEMA,
    )  # fmt: skip
    return (answer["proposal"].strip() if answer is not None else ""), calls


def _model_answer(
    *, domain: Domain, purpose: str, instructions: str, posting: Posting, schema: dict
) -> tuple[dict | None, str, list[int]]:
    """The validated answer of the domain's route for `purpose` about the posting (None and the error's
    name when there is none), and the ledger rows of the attempt."""
    messages = [{"role": "system", "content": instructions}, {"role": "user", "content": _posting_text(posting)}]
    try:
        completion = gateway_complete(
            purpose=purpose, route=route_for(domain=domain, purpose=purpose), messages=messages,
            response_schema=schema,
        )  # fmt: skip
    except GatewayError as exc:
        call = getattr(exc, "model_call_id", None)
        return None, type(exc).__name__, [call] if call else []
    return completion.data, "", [completion.model_call.pk]


def _posting_text(posting: Posting) -> str:
    low, high = posting.budget_min_cents, posting.budget_max_cents
    budget = f"up to {high / 100:.2f}" if low is None else f"{low / 100:.2f} to {high / 100:.2f}"
    return (
        f"Title: {posting.title}\nBudget: {budget} {posting.currency}\nSkills: {', '.join(posting.skills or [])}\n\n"
        f"{posting.description[:4000]}"
    )
