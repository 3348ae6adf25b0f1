"""Competitions, results, standings and routing changes in the operator back office."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from agency.models import AgentProfile, Domain, RoutingChange, Task
from agency.services.routing import profile_route
from arena.admin import win_rate_history
from arena.models import ArenaFile, Competition, PairStanding
from arena.rules import wilson_interval
from arena.services.standings import standing_refresh
from tests.agency.factories import domain
from tests.agency.pipeline_setup import paid_task
from tests.arena.factories import CompetitionFactory, ProfileFactory, duel, result_add

pytestmark = pytest.mark.django_db
COMPETITIONS = "/admin/arena/competition/"
STANDINGS = "/admin/arena/pairstanding/"
ROUTING = "/admin/agency/routingchange/"


def action(client, url: str, name: str, *pks):
    return client.post(url, {"action": name, "_selected_action": [str(pk) for pk in pks]}, follow=True)


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def _errors(page: str) -> list[str]:
    return re.findall(r'<li class="error">(.*?)</li>', page)


def _standing(first_wins: int = 2, second_wins: int = 1) -> PairStanding:
    """A pair's standing in the legal domain, recounted by the service from decided replays."""
    first, second = ProfileFactory(), ProfileFactory()
    for winner, count in ((first, first_wins), (second, second_wins)):
        for _ in range(count):
            duel(CompetitionFactory(profile_a=first, profile_b=second), winner=winner, reason="gate")
    return standing_refresh(domain_id=domain("legal").pk, pair=(first.pk, second.pk))


def _viewer() -> Client:
    user = get_user_model().objects.create_user("viewer", password="pw-for-tests", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    client = Client()
    client.force_login(user)
    return client


# --- Competitions -------------------------------------------------------------------------------


def test_the_change_page_shows_both_results_side_by_side_with_the_winner_highlighted(admin_client):
    competition = CompetitionFactory()
    winner = result_add(competition, "a", passed=True, revenue=15000, model_cost="12.5", compute_cost="0.0014")
    loser = result_add(competition, "b", passed=False)
    competition.results.filter(pk=loser.pk).update(error="The review said no.", latency_ms=812)
    ArenaFile.objects.create(
        result=winner, name="report.html", file="arena/x.html", content_type="text/html", size=2048, sha256="0" * 64
    )
    duel(competition, winner=competition.profile_a, reason="gate")
    page = admin_client.get(f"{COMPETITIONS}{competition.pk}/change/").content.decode()
    table = re.search(r'<table class="arena-sides">.*?</table>', page, re.S).group(0)
    rows = {
        cells[0]: cells[1:]
        for cells in (
            re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S) for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)
        )
    }
    assert rows[""] == [f"Side A: {competition.profile_a.name} (winner)", f"Side B: {competition.profile_b.name}"]
    assert rows["Passed the gate"] == ["yes", "no"]
    assert rows["Revenue"] == ["$150.00", "$0.00"]
    assert rows["Model cost"] == ["$0.125", "$0.00"]
    assert rows["Compute cost"] == ["$0.000014", "$0.00"]
    assert rows["Profit"] == ["$149.874986", "$0.00"]
    assert rows["Latency (ms)"] == ["0", "812"]
    assert rows["Error"] == ["—", "The review said no."]
    assert rows["Files"] == ["report.html (2048 bytes)<br>", "—"]
    assert f"?agent_attempt__id__exact={winner.attempt_id}" in rows["Attempt"][0]
    highlighted = re.findall(r'class="side-(\w)" style="background:#dff0d8', table)
    assert set(highlighted) == {"a"}
    assert 'name="_save"' not in page  # read-only


def test_a_results_link_opens_its_attempts_model_calls(admin_client):
    competition = CompetitionFactory()
    result = result_add(competition, "a", passed=True)
    response = admin_client.get(f"/admin/agency/modelcall/?agent_attempt__id__exact={result.attempt_id}")
    assert response.status_code == 200  # a refused lookup would redirect to ?e=1
    page = admin_client.get(f"/admin/arena/arenaresult/{result.pk}/change/").content.decode()
    assert f"/admin/agency/modelcall/?agent_attempt__id__exact={result.attempt_id}" in page


def test_the_change_page_of_a_running_competition_shows_the_missing_side(admin_client):
    competition = CompetitionFactory()
    result_add(competition, "b", passed=True)
    page = admin_client.get(f"{COMPETITIONS}{competition.pk}/change/").content.decode()
    assert re.search(r"<th>Passed the gate</th><td[^>]*>—</td><td[^>]*>yes</td>", page)
    assert "(winner)" not in page


def test_the_list_searches_by_task_id_and_title(admin_client):
    wanted = CompetitionFactory(task__title="Quarterly revenue")
    other = CompetitionFactory(task__title="Something else")
    by_title = admin_client.get(COMPETITIONS, {"q": "quarterly"}).context["cl"].result_list
    by_id = admin_client.get(COMPETITIONS, {"q": str(other.task_id)}).context["cl"].result_list
    assert [c.pk for c in by_title] == [wanted.pk]
    assert [c.pk for c in by_id] == [other.pk]


def test_an_operator_starts_a_live_competition_from_the_add_form(admin_client, django_capture_on_commit_callbacks):
    task, challenger = paid_task(), ProfileFactory()
    baseline = AgentProfile.objects.get(name="baseline")
    page = admin_client.get(f"{COMPETITIONS}add/").content.decode()
    assert 'id="competition-start-form"' in page
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            f"{COMPETITIONS}add/", {"task": task.pk, "profile_a": baseline.pk, "profile_b": challenger.pk}
        )
    competition = Competition.objects.get(task=task)
    assert response.status_code == 302
    assert response["Location"] == f"{COMPETITIONS}{competition.pk}/change/"
    assert competition.started_by.startswith("admin:user:")
    assert (competition.mode, competition.profile_a, competition.profile_b) == ("live", baseline, challenger)
    competition.refresh_from_db()
    assert competition.status == Competition.Status.DECIDED  # both sides ran (eager workers)
    assert Task.objects.get(pk=task.pk).status == Task.Status.COMPLETED


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("met", "already met on task #{task}."),
        ("pending", "Task #{task} is pending: only a paid task (live) or a completed one (replay) can compete."),
        ("same", "A competition needs two different profiles."),
    ],
)
def test_the_add_form_shows_the_services_refusal(admin_client, setup, message):
    first, second = ProfileFactory(), ProfileFactory()
    task = CompetitionFactory(profile_a=first, profile_b=second).task
    if setup == "pending":
        Task.objects.filter(pk=task.pk).update(status="pending")
        first = ProfileFactory()  # a pair that has not met on the task
    body = {"task": task.pk, "profile_a": second.pk, "profile_b": first.pk if setup != "same" else second.pk}
    response = admin_client.post(f"{COMPETITIONS}add/", body)
    assert response.status_code == 200
    (error,) = response.context["form"].non_field_errors()
    assert error.endswith(message.format(task=task.pk))
    assert '<p class="errornote">' in response.content.decode()
    assert Competition.objects.count() == 1


def test_the_add_form_refuses_an_unknown_task(admin_client):
    first, second = ProfileFactory(), ProfileFactory()
    response = admin_client.post(
        f"{COMPETITIONS}add/", {"task": 999_999, "profile_a": first.pk, "profile_b": second.pk}
    )
    assert response.context["form"].errors == {"task": ["No such task."]}
    assert not Competition.objects.exists()


def test_a_view_only_staff_user_cannot_start_a_competition():
    task, challenger = paid_task(), ProfileFactory()
    client = _viewer()
    assert client.get(COMPETITIONS).status_code == 200
    assert client.get(f"{COMPETITIONS}add/").status_code == 403
    body = {"task": task.pk, "profile_a": AgentProfile.objects.get(name="baseline").pk, "profile_b": challenger.pk}
    assert client.post(f"{COMPETITIONS}add/", body).status_code == 403
    assert not Competition.objects.exists()


# --- Standings ----------------------------------------------------------------------------------


def test_the_standings_list_shows_the_counts_intervals_and_routed_profile(admin_client):
    standing = _standing(2, 1)
    profile_route(domain=domain("legal"), profile=standing.second, actor="test", reason="test")
    page = admin_client.get(STANDINGS).content.decode()
    low, high = wilson_interval(2, 3)
    assert f"0.667 [{low:.3f}, {high:.3f}]" in page
    assert re.search(rf'<td class="field-routed">{standing.second.name}</td>', page)
    assert '<td class="field-promotion">watching</td>' in page.lower()


def test_the_change_page_draws_the_win_rate_with_its_interval(admin_client):
    standing = _standing(3, 1)
    page = admin_client.get(f"{STANDINGS}{standing.pk}/change/").content.decode()
    svg = re.search(r'<div class="arena-win-rate"><svg .*?</svg></div>', page, re.S).group(0)
    assert ">duel</text>" in svg and ">100%</text>" in svg  # drawn by matplotlib, its labels kept as text
    assert "<script" not in svg
    assert f"{standing.first.name}'s share of the decisive duels" in page
    assert "all 4 duels" in page


def test_the_chart_counts_the_duels_before_its_window(admin_client):
    standing = _standing(0, 0)
    first, second = standing.first, standing.second
    for winner in (first, second, first, first):
        duel(CompetitionFactory(profile_a=second, profile_b=first), winner=winner, reason="profit")
    duel(CompetitionFactory(profile_a=first, profile_b=second), winner=None, reason="none_passed")
    points, fought = win_rate_history(standing, last=3)
    assert fought == 5
    assert [(n, rate) for n, rate, _, _ in points] == [(3, 2 / 3), (4, 3 / 4), (5, 3 / 4)]
    assert points[1][2:] == wilson_interval(3, 4)


def test_the_change_page_says_when_there_is_no_decisive_duel(admin_client):
    standing = _standing(0, 0)
    page = admin_client.get(f"{STANDINGS}{standing.pk}/change/").content.decode()
    assert "No decisive duel yet." in page and "arena-win-rate" not in page


def test_promote_revert_and_release_change_the_routing_through_the_services(admin_client):
    standing = _standing()
    legal = domain("legal")
    page = action(admin_client, STANDINGS, "promote_first", standing.pk).content.decode()
    assert "1 pair(s) promoted." in page
    promotion = RoutingChange.objects.get()
    assert (promotion.to_profile, promotion.from_profile, promotion.actor) == (standing.first, None, promotion.actor)
    assert promotion.actor.startswith("admin:user:")
    assert Domain.objects.get(pk=legal.pk).routed_profile == standing.first
    assert PairStanding.objects.get(pk=standing.pk).promotion == "promoted"

    page = action(admin_client, STANDINGS, "revert_promotion", standing.pk).content.decode()
    assert "1 pair(s) reverted and held." in page
    revert = RoutingChange.objects.exclude(pk=promotion.pk).get()
    assert (revert.reverts, revert.to_profile) == (promotion, None)
    assert Domain.objects.get(pk=legal.pk).routed_profile is None
    assert PairStanding.objects.get(pk=standing.pk).promotion == "held"

    page = action(admin_client, STANDINGS, "release_hold", standing.pk).content.decode()
    assert "1 pair(s) released." in page
    assert PairStanding.objects.get(pk=standing.pk).promotion == "watching"
    assert RoutingChange.objects.count() == 2


def test_promote_second_routes_the_domain_to_the_second_profile(admin_client):
    standing = _standing()
    action(admin_client, STANDINGS, "promote_second", standing.pk)
    assert Domain.objects.get(pk=domain("legal").pk).routed_profile == standing.second
    assert RoutingChange.objects.get().to_profile == standing.second


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("revert_promotion", "This pair has no promotion to revert."),
        ("release_hold", "This pair is not held."),
        ("promote_first", "legal is already routed that way."),
    ],
)
def test_refused_actions_are_reported_as_errors(admin_client, name, message):
    standing = _standing()
    profile_route(domain=domain("legal"), profile=standing.first, actor="test", reason="test")
    page = action(admin_client, STANDINGS, name, standing.pk).content.decode()
    assert _errors(page) == [f"#{standing.pk}: {message}"]
    assert RoutingChange.objects.count() == 1
    assert PairStanding.objects.get(pk=standing.pk).promotion == "watching"


def test_a_view_only_staff_user_cannot_promote():
    standing = _standing()
    response = _viewer().post(STANDINGS, {"action": "promote_first", "_selected_action": [standing.pk]})
    assert response.status_code == 200  # the list again: no such action for this user
    assert not RoutingChange.objects.exists()
    assert Domain.objects.get(pk=domain("legal").pk).routed_profile is None


# --- Routing changes (agency admin) ---------------------------------------------------------------


def test_routing_changes_are_listed_and_the_latest_is_reverted(admin_client):
    legal = domain("legal")
    first, second = ProfileFactory(), ProfileFactory()
    older = profile_route(domain=legal, profile=first, actor="arena", reason="won")
    latest = profile_route(domain=Domain.objects.get(pk=legal.pk), profile=second, actor="arena", reason="won")
    page = admin_client.get(ROUTING).content.decode()
    assert first.name in page and second.name in page
    page = action(admin_client, ROUTING, "revert", older.pk, latest.pk).content.decode()
    assert "Reverted 1 routing change(s)." in page
    [error] = _errors(page)
    assert error.startswith(f"#{older.pk}: A later routing change (#") and error.endswith("revert that one first.")
    assert RoutingChange.objects.get(reverts=latest).to_profile == first
    assert Domain.objects.get(pk=legal.pk).routed_profile == first


def test_routing_changes_are_read_only(admin_client):
    change = profile_route(domain=domain("legal"), profile=ProfileFactory(), actor="arena", reason="won")
    assert admin_client.get(f"{ROUTING}add/").status_code == 403
    page = admin_client.get(f"{ROUTING}{change.pk}/change/").content.decode()
    assert 'name="_save"' not in page


# --- Query counts -------------------------------------------------------------------------------


def _grow(n: int) -> None:
    """Rows for every changelist below, each with its own task and profiles, so a per-row query would show."""
    for _ in range(n):
        competition = CompetitionFactory()
        result_add(competition, "a", passed=True)
        result_add(competition, "b", passed=False)
        duel(competition, winner=competition.profile_a, reason="gate")
        standing_refresh(domain_id=competition.domain_id, pair=(competition.profile_a_id, competition.profile_b_id))
        profile_route(
            domain=Domain.objects.get(pk=competition.domain_id), profile=competition.profile_a, actor="t", reason="t"
        )


@pytest.mark.parametrize("url", [COMPETITIONS, "/admin/arena/arenaresult/", STANDINGS, ROUTING])
def test_the_lists_render_in_a_constant_number_of_queries(admin_client, url):
    _grow(1)
    few = _queries(admin_client, url)
    _grow(8)
    assert _queries(admin_client, url) == few
