"""Competition and leaderboard endpoints (docs/api.md)."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from agency.models import AgentProfile, ApiKey, Task
from agency.services.routing import profile_route
from arena.models import Competition, PairStanding
from arena.services.standings import standing_refresh
from tests.agency.factories import domain
from tests.agency.pipeline_setup import paid_task
from tests.arena.factories import CompetitionFactory, ProfileFactory, duel, result_add
from tests.conftest import client_with_key

pytestmark = pytest.mark.django_db
COMPETITIONS = "/api/v1/arena/competitions"
LEADERBOARD = "/api/v1/arena/leaderboard"


@pytest.fixture
def pair():
    """A paid CSV task and two baseline profiles that may both work it."""
    task = paid_task()
    return task, AgentProfile.objects.get(name="baseline"), ProfileFactory()


def _start(client, task, first, second, **headers):
    return client.post(
        COMPETITIONS, {"task": task.pk, "profile_a": first.pk, "profile_b": second.pk}, format="json", **headers
    )


def _decided(first_wins: int, second_wins: int, *, slug: str = "legal", first=None, second=None, profit_gap="3"):
    """Decided replays of one pair in one domain (first profits `profit_gap` cents more in its wins)."""
    first, second = first or ProfileFactory(), second or ProfileFactory()
    for winner, count in ((first, first_wins), (second, second_wins)):
        for _ in range(count):
            competition = CompetitionFactory(profile_a=first, profile_b=second, task__domain=domain(slug))
            result_add(competition, "a", passed=True, revenue=100, model_cost="0" if winner == first else profit_gap)
            result_add(competition, "b", passed=True, revenue=100, model_cost=profit_gap if winner == first else "0")
            duel(competition, winner=winner, reason="profit")
    return first, second


# --- Starting -----------------------------------------------------------------------------------


def test_it_starts_a_live_competition_on_a_paid_task_and_runs_both_sides(
    operator_client, pair, django_capture_on_commit_callbacks
):
    task, baseline, challenger = pair
    with django_capture_on_commit_callbacks(execute=True):
        started = _start(operator_client, task, baseline, challenger)
    assert started.status_code == 201, started.content
    assert started.json() == {"id": started.json()["id"], "status": "running", "mode": "live"}
    competition = Competition.objects.get(pk=started.json()["id"])
    assert competition.started_by.startswith("api:key:")
    assert competition.status == Competition.Status.DECIDED
    assert Task.objects.get(pk=task.pk).status == Task.Status.COMPLETED
    detail = operator_client.get(f"{COMPETITIONS}/{competition.pk}").json()
    assert [(r["side"], r["profile"], r["passed_gate"], r["state"]) for r in detail["results"]] == [
        ("a", "baseline", True, "finished"),
        ("b", challenger.name, True, "finished"),
    ]
    assert detail["winner"] in ("baseline", challenger.name)
    assert detail["reason"] in ("profit", "cost", "incumbent")


def test_it_takes_profiles_by_name(operator_client, pair):
    task, baseline, challenger = pair
    body = {"task": task.pk, "profile_a": "baseline", "profile_b": challenger.name}
    started = operator_client.post(COMPETITIONS, body, format="json")
    assert started.status_code == 201, started.content
    competition = Competition.objects.get(pk=started.json()["id"])
    assert (competition.profile_a, competition.profile_b) == (baseline, challenger)


def test_it_answers_a_pair_that_already_met_on_a_task_with_their_competitions_id(operator_client):
    task = CompetitionFactory().task  # completed: a replay
    first, second = ProfileFactory(), ProfileFactory()
    made = _start(operator_client, task, first, second)
    again = _start(operator_client, task, second, first)
    assert (made.status_code, made.json()["mode"]) == (201, "replay")
    assert again.status_code == 409
    assert (again.json()["code"], again.json()["id"]) == ("competition_refused", made.json()["id"])
    assert Competition.objects.filter(task=task).count() == 2  # the factory's and the new one


def test_it_answers_a_second_start_of_a_live_pair_with_their_competitions_id(operator_client, pair):
    task, baseline, challenger = pair
    CompetitionFactory()  # the competition's id is not the task's
    made = _start(operator_client, task, baseline, challenger)
    again = _start(operator_client, task, challenger, baseline)
    assert made.json()["id"] != task.pk
    assert again.status_code == 409
    assert again.json()["id"] == made.json()["id"]


@pytest.mark.parametrize("status", ["pending", "processing", "cancelled"])
def test_it_refuses_a_task_that_is_neither_paid_nor_completed(operator_client, status):
    task = paid_task()
    Task.objects.filter(pk=task.pk).update(status=status)
    answer = _start(operator_client, task, AgentProfile.objects.get(name="baseline"), ProfileFactory())
    assert answer.status_code == 409
    assert answer.json()["code"] == "competition_refused"
    assert f"is {status}" in answer.json()["detail"]
    assert not Competition.objects.exists()


def test_it_refuses_a_profile_that_does_not_work_the_tasks_domain(operator_client, pair):
    task, baseline, _ = pair
    elsewhere = ProfileFactory(domain=domain("legal"))
    answer = _start(operator_client, task, baseline, elsewhere)
    assert answer.status_code == 409
    assert f"Profile {elsewhere.name} is inactive or does not work data_analysis tasks." == answer.json()["detail"]
    assert Task.objects.get(pk=task.pk).status == Task.Status.PAID


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"task": 999_999}, "task"),
        ({"task": "x"}, "task"),
        ({"profile_a": 999_999}, "profile_a"),
        ({"profile_b": "nobody"}, "profile_b"),
        ({"profile_b": "not a name!"}, "profile_b"),
        ({"profile_a": True}, "profile_a"),
        ({"profile_a": 10**30}, "profile_a"),
        ({"profile_b": None}, "profile_b"),
    ],
)
def test_it_refuses_bad_fields_with_the_field_named(operator_client, pair, change, field):
    task, baseline, challenger = pair
    body = {"task": task.pk, "profile_a": baseline.pk, "profile_b": challenger.pk, **change}
    answer = operator_client.post(COMPETITIONS, body, format="json")
    assert answer.status_code == 400
    assert field in answer.json()["errors"]
    assert not Competition.objects.exists()


def test_it_replays_a_repeated_idempotency_key(operator_client):
    task = CompetitionFactory().task
    first, second = ProfileFactory(), ProfileFactory()
    made = _start(operator_client, task, first, second, HTTP_IDEMPOTENCY_KEY="arena-1")
    again = _start(operator_client, task, first, second, HTTP_IDEMPOTENCY_KEY="arena-1")
    assert (made.status_code, again.status_code) == (201, 201)
    assert again.json() == made.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Competition.objects.filter(task=task).count() == 2


@pytest.mark.parametrize("scope", [ApiKey.Scope.READ, ApiKey.Scope.WRITE])
def test_only_an_operator_key_starts_a_competition(issue_key, pair, scope):
    task, baseline, challenger = pair
    answer = _start(client_with_key(issue_key(scope)), task, baseline, challenger)
    assert answer.status_code == 403
    assert answer.json()["detail"] == f"This endpoint needs the 'operator' scope; the key has '{scope}'."
    assert not Competition.objects.exists()


def test_anonymous_callers_are_refused(api, pair):
    task, baseline, challenger = pair
    assert _start(api, task, baseline, challenger).status_code == 401
    assert api.get(COMPETITIONS).status_code == 401
    assert api.get(LEADERBOARD).status_code == 401
    assert not Competition.objects.exists()


def test_a_staff_user_needs_the_add_permission_to_start_one(pair):
    task, baseline, challenger = pair
    viewer = get_user_model().objects.create_user("viewer", password="pw-for-tests", is_staff=True)
    viewer.user_permissions.set(
        Permission.objects.filter(content_type__app_label="arena", codename__startswith="view_")
    )
    client = APIClient()
    client.force_login(viewer)
    assert client.get(COMPETITIONS).status_code == 200
    answer = _start(client, task, baseline, challenger)
    assert answer.status_code == 403
    assert answer.json()["detail"] == "Your account lacks the permission(s) arena.add_competition."
    assert not Competition.objects.exists()


# --- Reading ------------------------------------------------------------------------------------


def test_it_shows_a_competition_with_both_results(read_client):
    competition = CompetitionFactory()
    result_add(competition, "a", passed=True, revenue=15000, model_cost="12.3456789012", compute_cost="0.0014")
    result_add(competition, "b", passed=False)
    competition.results.filter(side="b").update(error="The review said no.", latency_ms=812)
    duel(competition, winner=competition.profile_a, reason="gate")
    body = read_client.get(f"{COMPETITIONS}/{competition.pk}").json()
    assert {k: body[k] for k in ("id", "task", "domain", "mode", "status", "winner", "reason")} == {
        "id": competition.pk,
        "task": competition.task_id,
        "domain": "legal",
        "mode": "replay",
        "status": "decided",
        "winner": competition.profile_a.name,
        "reason": "gate",
    }
    assert body["decided_at"] and body["created_at"] and "trace_id" in body
    a, b = body["results"]
    assert (a["side"], a["profile"], a["passed_gate"], a["revenue_cents"]) == (
        "a",
        competition.profile_a.name,
        True,
        15000,
    )
    assert (a["model_cost_cents"], a["compute_cost_cents"], a["profit_cents"]) == (
        "12.3456789012",
        "0.0014000000",
        "14987.6529210988",
    )
    assert a["attempt"] == competition.results.get(side="a").attempt_id
    assert (b["passed_gate"], b["error"], b["latency_ms"], b["profit_cents"]) == (
        False,
        "The review said no.",
        812,
        "0.0000000000",
    )


def test_it_answers_404_for_an_unknown_competition(read_client):
    assert read_client.get(f"{COMPETITIONS}/999999").status_code == 404
    assert read_client.get(f"{COMPETITIONS}/{10**30}").status_code == 404


def test_it_lists_competitions_newest_first_with_filters(read_client):
    first, second, third = ProfileFactory(), ProfileFactory(), ProfileFactory()
    old = duel(CompetitionFactory(profile_a=first, profile_b=second), winner=first, reason="profit")
    accounting = CompetitionFactory(profile_a=second, profile_b=third, task__domain=domain("accounting"))
    newest = CompetitionFactory(profile_a=third, profile_b=first)

    def ids(**query) -> list[int]:
        answer = read_client.get(COMPETITIONS, query)
        assert answer.status_code == 200, answer.content
        return [row["id"] for row in answer.json()["results"]]

    assert ids() == [newest.pk, accounting.pk, old.pk]
    assert ids(status="decided") == [old.pk]
    assert ids(status="running", domain="legal") == [newest.pk]
    assert ids(domain="accounting") == [accounting.pk]
    assert ids(task=old.task_id) == [old.pk]
    assert ids(profile=first.name) == [newest.pk, old.pk]
    assert ids(profile="nobody") == []
    assert read_client.get(COMPETITIONS, {"status": "won"}).status_code == 400
    assert read_client.get(COMPETITIONS, {"task": "x"}).status_code == 400


def test_the_list_takes_a_constant_number_of_queries(read_client):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert read_client.get(COMPETITIONS).status_code == 200
        return len(captured)

    competition = CompetitionFactory()
    result_add(competition, "a", passed=True)
    queries()  # the key's first use is written down once
    few = queries()
    for _ in range(5):
        competition = CompetitionFactory()
        result_add(competition, "a", passed=True)
        result_add(competition, "b", passed=False)
    assert queries() == few


# --- The leaderboard ----------------------------------------------------------------------------


def test_the_leaderboard_shows_each_pairs_standing_and_the_routed_profile(read_client):
    first, second = _decided(3, 1)
    standing = standing_refresh(domain_id=domain("legal").pk, pair=(first.pk, second.pk))
    profile_route(domain=domain("legal"), profile=second, actor="test", reason="test")
    answer = read_client.get(LEADERBOARD)
    assert answer.status_code == 200
    (row,) = answer.json()["results"]
    assert {k: row[k] for k in ("domain", "first", "second", "first_wins", "second_wins", "ties", "none_passed")} == {
        "domain": "legal",
        "first": first.name,
        "second": second.name,
        "first_wins": 3,
        "second_wins": 1,
        "ties": 0,
        "none_passed": 0,
    }
    assert (row["decisive"], row["win_rate"]) == (4, 0.75)
    assert (row["win_rate_low"], row["win_rate_high"]) == (standing.win_rate_low, standing.win_rate_high)
    assert row["win_rate_low"] < 0.75 < row["win_rate_high"]
    assert row["profit_diff_mean_cents"] == "1.5000000000"  # (3 * 3 - 3) / 4
    assert row["profit_diff_low_cents"] <= 1.5 <= row["profit_diff_high_cents"]
    assert (row["promotion"], row["routed"]) == ("watching", second.name)


def test_the_leaderboard_filters_by_domain(read_client):
    legal, _ = _decided(1, 0)
    accounting, other = _decided(0, 2, slug="accounting")
    standing_refresh(domain_id=domain("legal").pk, pair=(legal.pk, _.pk))
    standing_refresh(domain_id=domain("accounting").pk, pair=(accounting.pk, other.pk))
    rows = read_client.get(LEADERBOARD, {"domain": "accounting"}).json()["results"]
    assert [(r["domain"], r["first"], r["second_wins"], r["win_rate"]) for r in rows] == [
        ("accounting", accounting.name, 2, 0.0)
    ]
    assert read_client.get(LEADERBOARD).json()["count"] == 2
    assert read_client.get(LEADERBOARD, {"promotion": "held"}).json()["count"] == 0


def test_the_leaderboard_looks_the_routing_up_once_per_domain(read_client):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert read_client.get(LEADERBOARD).status_code == 200
        return len(captured)

    for slug in ("legal", "accounting"):
        first, second = _decided(1, 0, slug=slug)
        standing_refresh(domain_id=domain(slug).pk, pair=(first.pk, second.pk))
    queries()  # the key's first use is written down once
    few = queries()
    for slug in ("legal", "accounting", "legal"):
        first, second = _decided(0, 1, slug=slug)
        standing_refresh(domain_id=domain(slug).pk, pair=(first.pk, second.pk))
    assert PairStanding.objects.count() == 5
    assert queries() == few
