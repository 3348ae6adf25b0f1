"""The circuit breaker of each deployment, shared by every process (docs/gateway.md)."""

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from agency.gateway import GatewayUnavailable, gateway_complete
from agency.gateway.breaker import breaker_admit, breaker_failed, breaker_reset, breaker_state, breaker_succeeded
from agency.models import BreakerEvent, BreakerState, ModelCall
from tests.agency.fake_openai import ok, status
from tests.agency.gateway_setup import deployment_at, route_of
from tests.concurrency import run_at_once
from tests.processes import ROOT

pytestmark = pytest.mark.usefixtures("fast_gateway")

HELLO = [{"role": "user", "content": "hi"}]


def _ask(route):
    return gateway_complete(purpose="work", route=route, messages=HELLO)


def _breaker(deployment) -> BreakerState:
    return BreakerState.objects.get(deployment=deployment)


def _opened_seconds_ago(deployment, seconds: float) -> None:
    """The test's clock: move the breaker's last change into the past instead of waiting."""
    BreakerState.objects.filter(deployment=deployment).update(changed_at=timezone.now() - timedelta(seconds=seconds))


def _events(deployment) -> list[tuple[str, str, str, str]]:
    return list(
        BreakerEvent.objects.filter(deployment=deployment)
        .order_by("pk")
        .values_list("from_status", "to_status", "actor", "reason")
    )


def _nowhere(model: str = "fake-model"):
    """A deployment the test never calls: only its breaker is used."""
    return deployment_at("http://127.0.0.1:9/v1", model=model)


def _open(fake, deployment, route) -> None:
    fake.then(status(500), status(500), status(500))
    with pytest.raises(GatewayUnavailable):
        _ask(route)
    assert _breaker(deployment).status == "open"


def _fail_a_trial(fake, deployment, route) -> None:
    """Open the breaker, let the cool-down pass, and fail the one trial it lets through."""
    _open(fake, deployment, route)
    _opened_seconds_ago(deployment, 61)
    fake.then(status(500))
    with pytest.raises(GatewayUnavailable):
        _ask(route)


@pytest.mark.django_db
def test_it_opens_after_three_consecutive_failures(fake_openai, settings):
    deployment = deployment_at(fake_openai.url)
    route = route_of(deployment)
    settings.GATEWAY_RETRIES = 1
    fake_openai.then(status(500), status(500))
    with pytest.raises(GatewayUnavailable):
        _ask(route)
    assert (_breaker(deployment).status, _breaker(deployment).failures) == ("closed", 2)
    fake_openai.then(status(500))
    with pytest.raises(GatewayUnavailable):
        _ask(route)
    state = _breaker(deployment)
    assert (state.status, state.failures) == ("open", 3)
    assert len(fake_openai.requests) == 3
    assert list(BreakerEvent.objects.values_list("from_status", "to_status", "actor", "reason")) == [
        ("closed", "open", "gateway", "3 consecutive failures")
    ]


@pytest.mark.django_db
def test_it_counts_only_consecutive_failures(fake_openai, settings):
    deployment = deployment_at(fake_openai.url)
    route = route_of(deployment)
    fake_openai.then(status(500), status(500), ok(), status(500), status(500), ok())
    _ask(route)
    _ask(route)
    state = _breaker(deployment)
    assert (state.status, state.failures) == ("closed", 0)


@pytest.mark.django_db
def test_it_sends_nothing_while_open(fake_openai):
    deployment = deployment_at(fake_openai.url)
    route = route_of(deployment)
    _open(fake_openai, deployment, route)
    sent = len(fake_openai.requests)
    _opened_seconds_ago(deployment, 59)
    with pytest.raises(GatewayUnavailable) as raised:
        _ask(route)
    assert len(fake_openai.requests) == sent
    assert "breaker open" in raised.value.attempts[0]
    assert ModelCall.objects.count() == 3  # refusals are not model calls


@pytest.mark.django_db
def test_it_falls_back_past_an_open_breaker_without_asking_it(fake_openai, second_fake_openai):
    first = deployment_at(fake_openai.url, model="a")
    second = deployment_at(second_fake_openai.url, model="b")
    _open(fake_openai, first, route_of(first, name="first-only"))
    sent = len(fake_openai.requests)
    assert _ask(route_of(first, second)).deployment == second
    assert len(fake_openai.requests) == sent


@pytest.mark.django_db
def test_it_closes_when_the_trial_after_the_cooldown_succeeds(fake_openai):
    deployment = deployment_at(fake_openai.url)
    route = route_of(deployment)
    _open(fake_openai, deployment, route)
    _opened_seconds_ago(deployment, 60)
    assert _ask(route).text == "Hello."
    state = _breaker(deployment)
    assert (state.status, state.failures) == ("closed", 0)
    assert list(BreakerEvent.objects.values_list("to_status", flat=True)) == ["open", "half_open", "closed"]


@pytest.mark.django_db
def test_it_reopens_when_the_trial_fails_and_does_not_retry_it(fake_openai):
    deployment = deployment_at(fake_openai.url)
    route = route_of(deployment)
    _open(fake_openai, deployment, route)
    _opened_seconds_ago(deployment, 61)
    fake_openai.then(status(500), status(500))
    sent = len(fake_openai.requests)
    with pytest.raises(GatewayUnavailable):
        _ask(route)
    assert len(fake_openai.requests) == sent + 1  # the one trial, no retry
    state = _breaker(deployment)
    assert state.status == "open"
    assert timezone.now() - state.changed_at < timedelta(seconds=5)  # a new cool-down started


@pytest.mark.django_db
def test_it_lets_a_new_trial_through_when_the_last_one_never_reported(fake_openai):
    deployment = deployment_at(fake_openai.url)
    route = route_of(deployment)
    _open(fake_openai, deployment, route)
    BreakerState.objects.filter(deployment=deployment).update(status="half_open")  # its caller died
    _opened_seconds_ago(deployment, 30)
    with pytest.raises(GatewayUnavailable):
        _ask(route)
    _opened_seconds_ago(deployment, 61)
    assert _ask(route).text == "Hello."
    assert _breaker(deployment).status == "closed"


@pytest.mark.django_db
def test_it_resets_a_breaker_by_hand_with_an_audit_row(fake_openai):
    deployment = deployment_at(fake_openai.url)
    _open(fake_openai, deployment, route_of(deployment))
    assert breaker_reset(deployment=deployment, actor="admin:user:1") is True
    assert breaker_reset(deployment=deployment, actor="admin:user:1") is False  # nothing left to reset
    assert _breaker(deployment).status == "closed"
    last = BreakerEvent.objects.last()
    assert (last.from_status, last.to_status, last.actor, last.reason) == (
        "open",
        "closed",
        "admin:user:1",
        "reset by hand",
    )
    assert (_breaker(deployment).failures, _breaker(deployment).changed_at) == (0, None)


@pytest.mark.django_db
def test_a_reset_clears_the_failures_of_a_closed_breaker_without_an_event(fake_openai):
    deployment = deployment_at(fake_openai.url)
    fake_openai.then(status(500), ok())
    _ask(route_of(deployment))  # one failure, then an answer: closed, and the count restarted
    BreakerState.objects.filter(deployment=deployment).update(failures=2)
    assert breaker_reset(deployment=deployment, actor="admin:user:1") is True
    assert (_breaker(deployment).status, _breaker(deployment).failures) == ("closed", 0)
    assert not BreakerEvent.objects.exists()


@pytest.mark.django_db
def test_a_reset_closes_only_the_breaker_asked_for(fake_openai, second_fake_openai):
    first, second = deployment_at(fake_openai.url), deployment_at(second_fake_openai.url)
    _open(fake_openai, first, route_of(first, name="first"))
    _open(second_fake_openai, second, route_of(second, name="second"))
    BreakerState.objects.update(changed_at=timezone.now() - timedelta(seconds=5))  # opened at the same instant
    assert breaker_reset(deployment=first, actor="admin:user:1")
    assert (_breaker(first).status, _breaker(second).status) == ("closed", "open")
    assert _breaker(second).failures == 3


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
def test_it_lets_exactly_one_trial_through_when_eight_threads_ask_at_once(fake_openai):
    deployment = deployment_at(fake_openai.url)
    route = route_of(deployment)
    for _ in range(3):  # several rounds: a race that only sometimes overlaps proves little
        BreakerState.objects.update_or_create(
            deployment=deployment, defaults={"status": "open", "failures": 3, "changed_at": timezone.now()}
        )
        _opened_seconds_ago(deployment, 61)
        fake_openai.requests.clear()
        fake_openai.then(ok("trial", delay=0.3))  # still in flight while the others ask

        def ask(i):
            try:
                return _ask(route).text
            except GatewayUnavailable:
                return "refused"

        results = run_at_once(8, ask)
        assert sorted(results) == ["refused"] * 7 + ["trial"]
        assert len(fake_openai.requests) == 1
        assert _breaker(deployment).status == "closed"


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
def test_it_shares_the_breaker_between_processes(fake_openai):
    from tests.conftest import database_url

    deployment = deployment_at(fake_openai.url)
    route_of(deployment, name="shared")
    fake_openai.default = status(503)
    env = {**os.environ, "DATABASE_URL": database_url(), "AGENCY_DOTENV": "false", "GATEWAY_BACKOFF_SECONDS": "0"}
    other = subprocess.run(
        [sys.executable, "tests/agency/gateway_call.py", "shared"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert json.loads(other.stdout.splitlines()[-1]) == {"ok": False, "error": "GatewayUnavailable"}
    assert len(fake_openai.requests) == 3
    assert _breaker(deployment).status == "open"  # opened by the other process
    with pytest.raises(GatewayUnavailable):
        _ask("shared")
    assert len(fake_openai.requests) == 3  # this process sent nothing


@pytest.mark.django_db
def test_it_reads_the_breaker_afresh_even_while_the_route_is_cached(fake_openai, settings):
    settings.GATEWAY_ROUTE_CACHE_SECONDS = 60
    deployment = deployment_at(fake_openai.url)
    route = route_of(deployment)
    assert _ask(route).text == "Hello."  # the route is cached from here on
    BreakerState.objects.filter(deployment=deployment).update(
        status="open", failures=3, changed_at=timezone.now()
    )  # opened by another process
    with pytest.raises(GatewayUnavailable):
        _ask(route)
    assert len(fake_openai.requests) == 1


# --- a success ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_success_on_a_closed_breaker_without_failures_writes_nothing(django_assert_num_queries):
    deployment = _nowhere()
    state = breaker_state(deployment=deployment)
    with django_assert_num_queries(0):
        breaker_succeeded(deployment=deployment, state=state)


@pytest.mark.django_db
def test_a_success_after_a_single_failure_restarts_the_count(fake_openai):
    deployment = deployment_at(fake_openai.url)
    fake_openai.then(status(500), ok())
    _ask(route_of(deployment))
    assert (_breaker(deployment).status, _breaker(deployment).failures) == ("closed", 0)


@pytest.mark.django_db
def test_a_success_that_restarts_the_count_writes_no_event(fake_openai):
    deployment = deployment_at(fake_openai.url)
    fake_openai.then(status(500), ok())
    _ask(route_of(deployment))
    assert _events(deployment) == []


@pytest.mark.django_db
def test_a_success_restarts_the_count_of_its_own_deployment_only(fake_openai):
    first, second = deployment_at(fake_openai.url, model="a"), _nowhere(model="b")
    BreakerState.objects.create(deployment=second, failures=2)
    fake_openai.then(status(500), ok())
    _ask(route_of(first))
    assert (_breaker(second).status, _breaker(second).failures) == ("closed", 2)


@pytest.mark.django_db
def test_a_late_success_does_not_close_a_breaker_opened_meanwhile():
    deployment = _nowhere()
    BreakerState.objects.create(deployment=deployment, failures=2)
    seen = breaker_state(deployment=deployment)  # a call admitted while closed, still in flight
    breaker_failed(deployment=deployment, state=breaker_state(deployment=deployment))  # another call opens it
    breaker_succeeded(deployment=deployment, state=seen)
    assert (_breaker(deployment).status, _breaker(deployment).failures) == ("open", 3)


@pytest.mark.django_db
def test_it_records_the_trial_and_its_success_as_breaker_events(fake_openai):
    deployment = deployment_at(fake_openai.url)
    route = route_of(deployment)
    _open(fake_openai, deployment, route)
    _opened_seconds_ago(deployment, 60)
    _ask(route)
    assert _events(deployment) == [
        ("closed", "open", "gateway", "3 consecutive failures"),
        ("open", "half_open", "gateway", "cool-down over: one trial call"),
        ("half_open", "closed", "gateway", "trial call succeeded"),
    ]


@pytest.mark.django_db
def test_a_successful_trial_leaves_the_breaker_as_a_fresh_one(fake_openai):
    deployment = deployment_at(fake_openai.url)
    route = route_of(deployment)
    _open(fake_openai, deployment, route)
    _opened_seconds_ago(deployment, 60)
    _ask(route)
    state = _breaker(deployment)
    assert (state.status, state.failures, state.changed_at) == ("closed", 0, None)


@pytest.mark.django_db
def test_a_success_leaves_the_callers_state_closed_without_failures():
    deployment = _nowhere()
    BreakerState.objects.create(deployment=deployment, status="open", failures=3, changed_at=timezone.now())
    _opened_seconds_ago(deployment, 61)
    assert breaker_admit(deployment=deployment).trial
    state = breaker_state(deployment=deployment)
    breaker_succeeded(deployment=deployment, state=state)
    assert (state.status, state.failures, state.changed_at) == ("closed", 0, None)


# --- a failure ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_failed_trial_counts_as_one_more_consecutive_failure(fake_openai):
    deployment = deployment_at(fake_openai.url)
    route = route_of(deployment)
    _fail_a_trial(fake_openai, deployment, route)
    assert (_breaker(deployment).status, _breaker(deployment).failures) == ("open", 4)


@pytest.mark.django_db
def test_a_failed_trial_starts_the_cooldown_again_from_its_failure():
    deployment = _nowhere()
    claimed = timezone.now()
    BreakerState.objects.create(
        deployment=deployment, status="open", failures=3, changed_at=claimed - timedelta(seconds=61)
    )
    assert breaker_admit(deployment=deployment, now=claimed).trial
    state = breaker_state(deployment=deployment)
    breaker_failed(deployment=deployment, state=state, now=claimed + timedelta(seconds=30))  # a slow trial
    assert not breaker_admit(deployment=deployment, now=claimed + timedelta(seconds=61)).allowed  # 31 s into it


@pytest.mark.django_db
def test_a_failed_trial_reopens_its_own_breaker_only(fake_openai):
    first, second = deployment_at(fake_openai.url, model="a"), _nowhere(model="b")
    route = route_of(first)
    BreakerState.objects.create(deployment=second, status="half_open", failures=3, changed_at=timezone.now())
    _fail_a_trial(fake_openai, first, route)
    assert (_breaker(first).status, _breaker(second).status) == ("open", "half_open")


@pytest.mark.django_db
def test_a_trial_that_fails_after_a_reset_by_hand_does_not_reopen_the_breaker():
    deployment = _nowhere()
    BreakerState.objects.create(deployment=deployment, status="open", failures=3, changed_at=timezone.now())
    _opened_seconds_ago(deployment, 61)
    assert breaker_admit(deployment=deployment).trial
    trial = breaker_state(deployment=deployment)
    assert breaker_reset(deployment=deployment, actor="admin:user:1")
    breaker_failed(deployment=deployment, state=trial)
    assert _breaker(deployment).status == "closed"


@pytest.mark.django_db
def test_it_records_a_failed_trial_as_a_breaker_event(fake_openai):
    deployment = deployment_at(fake_openai.url)
    route = route_of(deployment)
    _fail_a_trial(fake_openai, deployment, route)
    assert _events(deployment) == [
        ("closed", "open", "gateway", "3 consecutive failures"),
        ("open", "half_open", "gateway", "cool-down over: one trial call"),
        ("half_open", "open", "gateway", "trial call failed"),
    ]


def _opened_by_another_call_while_one_was_in_flight(deployment, opened_at) -> BreakerState:
    """Two failures; a call admitted then (its state seen closed) is still in flight when another
    call's failure opens the breaker at `opened_at`. Returns the in-flight call's state."""
    BreakerState.objects.create(deployment=deployment, failures=2)
    seen = breaker_state(deployment=deployment)
    breaker_failed(deployment=deployment, state=breaker_state(deployment=deployment), now=opened_at)
    assert _breaker(deployment).status == "open"
    return seen


@pytest.mark.django_db
def test_a_late_failure_is_not_counted_on_a_breaker_already_open():
    deployment = _nowhere()
    seen = _opened_by_another_call_while_one_was_in_flight(deployment, timezone.now())
    breaker_failed(deployment=deployment, state=seen)
    assert _breaker(deployment).failures == 3


@pytest.mark.django_db
def test_a_late_failure_does_not_open_an_open_breaker_again():
    deployment = _nowhere()
    opened_at = timezone.now() - timedelta(seconds=5)
    seen = _opened_by_another_call_while_one_was_in_flight(deployment, opened_at)
    breaker_failed(deployment=deployment, state=seen)
    assert _breaker(deployment).changed_at == opened_at  # the cool-down was not restarted
    assert _events(deployment) == [("closed", "open", "gateway", "3 consecutive failures")]


@pytest.mark.django_db
def test_a_breaker_that_opens_leaves_other_deployments_breakers_alone(fake_openai):
    first, second = deployment_at(fake_openai.url, model="a"), _nowhere(model="b")
    # The other deployment's third failure was just counted by another process, which is about
    # to open that breaker itself (increment, then compare-and-set) and write its event.
    BreakerState.objects.create(deployment=second, failures=3)
    _open(fake_openai, first, route_of(first))
    assert _breaker(second).status == "closed"


@pytest.mark.django_db
def test_the_trial_is_allowed_exactly_when_the_cooldown_has_passed():
    deployment = _nowhere()
    opened = timezone.now()
    BreakerState.objects.create(deployment=deployment, status="open", failures=3, changed_at=opened)
    assert not breaker_admit(deployment=deployment, now=opened + timedelta(seconds=59.999)).allowed
    assert breaker_admit(deployment=deployment, now=opened + timedelta(seconds=60)).trial


@pytest.mark.django_db
def test_a_claimed_trial_holds_off_the_next_caller_for_a_whole_cooldown():
    deployment = _nowhere()
    now = timezone.now()
    opened = now - timedelta(seconds=61)
    BreakerState.objects.create(deployment=deployment, status="open", failures=3, changed_at=opened)
    assert breaker_admit(deployment=deployment, now=now).trial
    assert not breaker_admit(deployment=deployment, now=now).allowed  # a fresh read sees the trial under way
    assert not breaker_admit(deployment=deployment, now=now + timedelta(seconds=59)).allowed
    assert _breaker(deployment).changed_at == now


@pytest.mark.django_db
def test_claiming_a_trial_leaves_other_deployments_breakers_alone():
    first, second = _nowhere(model="a"), _nowhere(model="b")
    opened = timezone.now() - timedelta(seconds=61)
    for deployment in (first, second):  # opened at the same instant
        BreakerState.objects.create(deployment=deployment, status="open", failures=3, changed_at=opened)
    assert breaker_admit(deployment=first).trial
    assert (_breaker(first).status, _breaker(second).status, _breaker(second).changed_at) == (
        "half_open",
        "open",
        opened,
    )
