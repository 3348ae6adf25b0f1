"""`gateway_complete`: one chat completion over a route, with retries, fallbacks, breakers and
the ledger (docs/gateway.md).

Every deployment is an OpenAI-compatible server reached with the official `openai` SDK, one
client per deployment, kept for the life of the process. The SDK's own retries are off: retry
is ours (tenacity), so that every attempt is one ledger row and one breaker observation.
"""

import json
import os
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from email.utils import parsedate_to_datetime

import jsonschema
import openai
import structlog
from django.conf import settings
from django.utils import timezone
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from agency.gateway import breaker
from agency.gateway.cost import call_cost, provider_cost_cents
from agency.gateway.errors import GatewayConfigError, GatewayOutputInvalid, GatewayUnavailable
from agency.gateway.selectors import route_deployments, route_named
from agency.models import Attempt, BreakerState, ModelCall, ModelDeployment, Route, Task
from tracing.context import trace_carrier
from tracing.otel import tracer

logger = structlog.get_logger(__name__)
_tracer = tracer()

Outcome = ModelCall.Outcome


@dataclass(frozen=True)
class Completion:
    """A model's answer. `data` is the parsed, validated JSON when a `response_schema` was given."""

    text: str
    data: object
    model_call: ModelCall
    deployment: ModelDeployment


def gateway_complete(
    *,
    purpose: str,
    route: Route | str,
    messages: list[dict],
    response_schema: dict | None = None,
    task: Task | None = None,
    agent_attempt: Attempt | None = None,
    temperature: float = 0,
    max_tokens: int | None = None,
) -> Completion:
    """Ask the route's deployments in order until one answers.

    Raises `GatewayConfigError` before any request when the route cannot run (no enabled
    deployment, one without a price, a key variable that is not set, an invalid schema);
    `GatewayOutputInvalid` when the answer does not validate against `response_schema` (no
    fallback: the caller decides); `GatewayUnavailable` when every deployment failed or was open.
    """
    if purpose not in ModelCall.Purpose.values:
        raise GatewayConfigError(f"Unknown purpose {purpose!r}.")
    route = route_named(route) if isinstance(route, str) else route
    deployments = _route_deployments(route)
    _check_runnable(route, deployments)
    validator = _validator(response_schema)
    call = _Call(purpose, route, task, messages, response_schema, validator, temperature, max_tokens, agent_attempt)
    call.breakers = breaker.breaker_states(deployments=deployments)  # always fresh, never cached
    with _tracer.start_as_current_span("gateway.complete") as span:
        span.set_attribute("agency.purpose", purpose)
        span.set_attribute("agency.route", route.name)
        for deployment in deployments:
            completion = _deployment_try(call, deployment)
            if completion is not None:
                row = completion.model_call
                span.set_attribute("gen_ai.request.model", deployment.model)
                span.set_attribute("gen_ai.usage.input_tokens", row.tokens_in)
                span.set_attribute("gen_ai.usage.output_tokens", row.tokens_out)
                span.set_attribute("agency.cost_cents", str(row.cost_cents))
                span.set_attribute("agency.attempts", call.attempts)
                return completion
        span.set_attribute("agency.attempts", call.attempts)
    logger.warning("gateway_unavailable", route=route.name, purpose=purpose, attempts=call.failures)
    raise GatewayUnavailable(f"Every deployment of route {route.name} failed or is open.", call.failures)


@dataclass
class _Call:
    purpose: str
    route: Route
    task: Task | None
    messages: list[dict]
    schema: dict | None
    validator: object
    temperature: float
    max_tokens: int | None
    agent_attempt: Attempt | None = None
    attempts: int = 0  # HTTP attempts so far, over every deployment: the ledger's `attempt`
    failures: list[str] = field(default_factory=list)
    breakers: dict[int, BreakerState] = field(default_factory=dict)


# Routes with their deployments and providers, per process, for GATEWAY_ROUTE_CACHE_SECONDS: the
# configuration changes rarely and reading it is most of the gateway's own cost per call. Breaker
# states are read on every call.
_routes: dict[int, tuple[float, list[ModelDeployment]]] = {}


def route_cache_clear() -> None:
    """Forget this process's cached routes: the next call reads them from the database."""
    _routes.clear()


def _route_deployments(route: Route) -> list[ModelDeployment]:
    ttl, now = settings.GATEWAY_ROUTE_CACHE_SECONDS, time.monotonic()
    seen = _routes.get(route.pk)
    if ttl and seen is not None and now - seen[0] < ttl:
        return seen[1]
    deployments = route_deployments(route=route)
    if ttl:
        _routes[route.pk] = (now, deployments)
    return deployments


def _check_runnable(route: Route, deployments: list[ModelDeployment]) -> None:
    if not deployments:
        raise GatewayConfigError(f"Route {route.name} has no enabled deployment.")
    for deployment in deployments:
        if not deployment.is_priced:
            raise GatewayConfigError(
                f"Deployment {deployment} (#{deployment.pk}) has no price: set its token prices "
                "(or, for a local model, its GPU-second cost) before routing calls to it."
            )
        _api_key(deployment)


def _validator(schema: dict | None):
    if schema is None:
        return None
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise GatewayConfigError(f"response_schema is not a valid JSON Schema: {exc.message}") from None
    return cls(schema)


# --- one deployment: bounded retries ---------------------------------------------------------


class _Refused(Exception):
    """The breaker said no: no request was made."""


class _MalformedAnswer(Exception):
    """A 2xx whose body is not a chat completion. Retried like a 5xx: the server is misbehaving."""

    def __init__(self, message: str, answer: "_Answer | None" = None):
        super().__init__(message)
        self.answer = answer


def _deployment_try(call: _Call, deployment: ModelDeployment) -> Completion | None:
    """Up to 1 + GATEWAY_RETRIES attempts on `deployment`; None when it could not answer."""
    state = call.breakers[deployment.pk]
    retrying = Retrying(
        stop=stop_after_attempt(settings.GATEWAY_RETRIES + 1) | _retry_after_too_long,
        retry=retry_if_exception(_transient),
        wait=_wait,
        reraise=True,
    )
    try:
        return retrying(_attempt, call, deployment, state)
    except _Refused:
        call.failures.append(f"{deployment}: breaker open")
    except (openai.APIError, _MalformedAnswer) as exc:
        call.failures.append(f"{deployment}: {type(exc).__name__}")
    return None


def _transient(exc: BaseException) -> bool:
    """Worth another attempt on the same deployment: timeouts, connection errors, 5xx, 429, garbage."""
    if isinstance(exc, (openai.APIConnectionError, _MalformedAnswer)):
        return True
    return isinstance(exc, openai.APIStatusError) and (exc.status_code == 429 or exc.status_code >= 500)


def _retry_after(exc: BaseException | None) -> float | None:
    """Seconds a 429 asked us to wait (`Retry-After`: seconds or an HTTP date), if it said."""
    if not isinstance(exc, openai.APIStatusError) or exc.status_code != 429:
        return None
    raw = exc.response.headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(raw) - timezone.now()).total_seconds())
    except (TypeError, ValueError):
        return None


def _retry_after_too_long(retry_state) -> bool:
    """A 429 asking for longer than GATEWAY_RETRY_AFTER_MAX_SECONDS: go to the next deployment now."""
    wait = _retry_after(retry_state.outcome.exception())
    return wait is not None and wait > settings.GATEWAY_RETRY_AFTER_MAX_SECONDS


def _wait(retry_state) -> float:
    asked = _retry_after(retry_state.outcome.exception())
    if asked is not None:
        return asked
    backoff = wait_exponential(
        multiplier=settings.GATEWAY_BACKOFF_SECONDS, max=settings.GATEWAY_RETRY_AFTER_MAX_SECONDS
    )
    return backoff(retry_state)


# --- one attempt: breaker, request, ledger ----------------------------------------------------


@dataclass(frozen=True)
class _Answer:
    text: str | None
    tokens_in: int
    tokens_out: int
    provider_cost: Decimal | None


def _attempt(call: _Call, deployment: ModelDeployment, state: BreakerState) -> Completion:
    if call.attempts and state.status == BreakerState.Status.CLOSED:
        state.refresh_from_db()  # a retry: another process may have opened it meanwhile
    admission = breaker.breaker_admit(deployment=deployment, state=state)
    if not admission.allowed:
        raise _Refused()
    if admission.trial:
        state.refresh_from_db()
    call.attempts += 1
    started = time.perf_counter()
    try:
        answer = _request(call, deployment)
    except (openai.APIError, _MalformedAnswer) as exc:
        _failure_record(call, deployment, state, exc, _ms_since(started))
        raise
    return _answer_record(call, deployment, state, answer, _ms_since(started))


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _request(call: _Call, deployment: ModelDeployment) -> _Answer:
    options: dict = {}
    if call.schema is not None:
        # Not "strict": OpenAI refuses (400) schemas outside its strict subset, and we validate anyway.
        options["response_format"] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": call.schema}}
    if call.max_tokens is not None:
        options["max_tokens"] = call.max_tokens
    raw = _client(deployment).chat.completions.with_raw_response.create(
        model=deployment.model,
        messages=call.messages,
        temperature=call.temperature,
        # The SDK's HTTP client is not the instrumented httpx: carry the caller's trace ourselves.
        extra_headers=trace_carrier(),
        **options,
    )
    return _parse(raw.http_response.content)


def _parse(content: bytes) -> _Answer:
    """The text and usage of a chat completion body, numbers as on the wire (Decimal, never float)."""
    try:
        body = json.loads(content, parse_float=Decimal)
    except ValueError:
        raise _MalformedAnswer("the answer is not JSON") from None
    if not isinstance(body, dict):
        raise _MalformedAnswer("the answer is not a JSON object")
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    answer = _Answer(
        text=_message_text(body),
        tokens_in=_count(usage.get("prompt_tokens")),
        tokens_out=_count(usage.get("completion_tokens")),
        provider_cost=provider_cost_cents(usage),
    )
    if answer.text is None:
        raise _MalformedAnswer("the answer has no message content", answer)
    return answer


def _message_text(body: dict) -> str | None:
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    text = message.get("content") if isinstance(message, dict) else None
    return text if isinstance(text, str) else None


def _count(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _failure_record(call: _Call, deployment, state, exc: Exception, latency_ms: int) -> None:
    answer = exc.answer if isinstance(exc, _MalformedAnswer) else None
    status_code = getattr(exc, "status_code", None)
    _ledger_write(call, deployment, Outcome.ERROR, latency_ms, answer, type(exc).__name__, status_code)
    # A request the server refused as malformed says nothing about the server's health.
    if status_code not in (400, 422):
        breaker.breaker_failed(deployment=deployment, state=state)
    logger.warning(
        "model_call_failed",
        deployment_id=deployment.pk,
        attempt=call.attempts,
        error=type(exc).__name__,
        status_code=status_code,
    )


def _answer_record(call: _Call, deployment, state, answer: _Answer, latency_ms: int) -> Completion:
    data, problem = _validated(call, answer.text)
    outcome = Outcome.OK if problem is None else Outcome.INVALID_OUTPUT
    error_class = "" if problem is None else GatewayOutputInvalid.__name__
    row = _ledger_write(call, deployment, outcome, latency_ms, answer, error_class, None)
    breaker.breaker_succeeded(deployment=deployment, state=state)  # the server worked, whatever it said
    if problem is not None:
        logger.warning("model_output_invalid", deployment_id=deployment.pk, model_call_id=row.pk, problem=problem)
        raise GatewayOutputInvalid(f"The model's answer was refused: {problem}", model_call_id=row.pk)
    return Completion(text=answer.text, data=data, model_call=row, deployment=deployment)


def _validated(call: _Call, text: str) -> tuple[object, str | None]:
    """The answer as JSON checked against the caller's schema. Parsed as data only: model output
    is never executed or evaluated."""
    if call.validator is None:
        return None, None
    try:
        data = json.loads(text, parse_float=Decimal)
    except ValueError:
        return None, "not JSON"
    error = jsonschema.exceptions.best_match(call.validator.iter_errors(data))
    if error is not None:
        return None, f"does not match the schema at {error.json_path}: {error.message[:200]}"
    return data, None


def _ledger_write(call: _Call, deployment, outcome, latency_ms, answer, error_class, status_code) -> ModelCall:
    tokens_in = answer.tokens_in if answer else 0
    tokens_out = answer.tokens_out if answer else 0
    return ModelCall.objects.create(
        deployment=deployment,
        route=call.route,
        purpose=call.purpose,
        task=call.task,
        agent_attempt=call.agent_attempt,
        attempt=call.attempts,
        outcome=outcome,
        error_class=error_class,
        status_code=status_code,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        cost_cents=call_cost(deployment=deployment, tokens_in=tokens_in, tokens_out=tokens_out, latency_ms=latency_ms),
        provider_cost_cents=answer.provider_cost if answer else None,
        latency_ms=latency_ms,
    )


# --- clients ---------------------------------------------------------------------------------

_clients: dict[tuple, openai.OpenAI] = {}
_clients_lock = threading.Lock()


def _api_key(deployment: ModelDeployment) -> str:
    name = deployment.provider.api_key_env
    if not name:
        return ""
    key = os.environ.get(name, "")
    if not key:
        raise GatewayConfigError(f"Provider {deployment.provider} needs its API key in ${name}, which is not set.")
    return key


def _client(deployment: ModelDeployment) -> openai.OpenAI:
    """The deployment's client, made once per base URL, key and timeout (a change makes a new one)."""
    provider = deployment.provider
    cache_key = (deployment.pk, provider.base_url, _api_key(deployment), settings.GATEWAY_TIMEOUT_SECONDS)
    client = _clients.get(cache_key)
    if client is None:
        with _clients_lock:
            for stale in [k for k in _clients if k[0] == deployment.pk and k != cache_key]:
                del _clients[stale]  # in-flight calls keep their client; new ones get the new one
            client = _clients.get(cache_key)
            if client is None:
                client = _clients[cache_key] = openai.OpenAI(
                    base_url=provider.base_url,
                    api_key=cache_key[2] or "no-key",  # local servers ignore it; the SDK wants one
                    max_retries=0,
                    timeout=settings.GATEWAY_TIMEOUT_SECONDS,
                )
    return client
