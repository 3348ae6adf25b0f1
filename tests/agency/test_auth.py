"""API keys and scopes (docs/api.md)."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from agency.models import ApiKey
from agency.services.api_keys import api_key_create, api_key_revoke
from tests.agency.factories import TaskFactory
from tests.conftest import client_with_key

pytestmark = pytest.mark.django_db

KEYS_URL = "/api/v1/keys"
CYCLES_URL = "/api/v1/cycles"


def test_it_refuses_anonymous_callers_with_401(api):
    response = api.get(KEYS_URL)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_it_refuses_an_unknown_key_with_401(api):
    api.credentials(HTTP_AUTHORIZATION="Bearer agy_00000000_not-a-real-key")
    assert api.get(KEYS_URL).status_code == 401


def test_it_refuses_a_malformed_authorization_header(api):
    api.credentials(HTTP_AUTHORIZATION="Bearer two parts")
    assert api.get(KEYS_URL).status_code == 401


@pytest.mark.parametrize("scope", [ApiKey.Scope.READ, ApiKey.Scope.WRITE])
def test_it_refuses_a_key_without_the_scope_with_403(issue_key, scope):
    client = client_with_key(issue_key(scope))
    response = client.post(CYCLES_URL)
    assert response.status_code == 403
    assert "operator" in response.json()["detail"]


def test_it_lets_a_read_key_read(read_client):
    task = TaskFactory()
    response = read_client.get(f"/api/v1/tasks/{task.pk}")
    assert response.status_code == 200


@pytest.mark.urls("tests.agency.urls")
@pytest.mark.parametrize(
    ("scope", "status"), [(ApiKey.Scope.READ, 403), (ApiKey.Scope.WRITE, 200), (ApiKey.Scope.OPERATOR, 200)]
)
def test_it_orders_scopes_read_write_operator(issue_key, scope, status):
    assert client_with_key(issue_key(scope)).post("/api/test/write").status_code == status


def test_it_lets_an_operator_key_do_everything_below_it(operator_client):
    assert operator_client.get(KEYS_URL).status_code == 200
    assert operator_client.get("/api/v1/tasks").status_code == 200


def test_it_refuses_a_revoked_key_with_401():
    api_key, raw = api_key_create(name="soon gone", scope=ApiKey.Scope.OPERATOR)
    client = client_with_key(raw)
    assert client.get(KEYS_URL).status_code == 200
    api_key_revoke(api_key=api_key)
    response = client.get(KEYS_URL)
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_it_never_stores_the_key_in_clear():
    api_key, raw = api_key_create(name="secret keeper", scope=ApiKey.Scope.READ)
    row = ApiKey.objects.filter(pk=api_key.pk).values().get()
    assert all(raw not in str(value) for value in row.values())
    secret = raw.split("_", 2)[2]  # agy_<public prefix>_<secret>; the secret may itself contain "_"
    assert len(secret) >= 40 and secret not in str(row)
    assert row["key_hash"] != raw and len(row["key_hash"]) == 64


def test_it_never_shows_a_key_or_hash_in_the_api(operator_client):
    api_key, raw = api_key_create(name="listed", scope=ApiKey.Scope.READ)
    body = operator_client.get(KEYS_URL).content.decode()
    assert "listed" in body
    assert raw not in body
    assert api_key.key_hash not in body


def test_it_revokes_once_then_answers_409(operator_client):
    api_key, _ = api_key_create(name="twice", scope=ApiKey.Scope.READ)
    assert operator_client.post(f"{KEYS_URL}/{api_key.pk}/revoke").status_code == 200
    response = operator_client.post(f"{KEYS_URL}/{api_key.pk}/revoke")
    assert response.status_code == 409
    assert response.json()["id"] == api_key.pk


def test_a_staff_session_has_the_rights_of_its_django_permissions(api):
    staff = get_user_model().objects.create_user("staff", password="pw-for-tests", is_staff=True)
    api.force_login(staff)
    refused = api.get(KEYS_URL)
    assert refused.status_code == 403
    assert "agency.view_apikey" in refused.json()["detail"]
    staff.user_permissions.add(Permission.objects.get(codename="view_apikey"))
    assert api.get(KEYS_URL).status_code == 200


def test_it_does_not_accept_a_non_staff_session(api):
    user = get_user_model().objects.create_user("someone", password="pw-for-tests")
    api.force_login(user)
    assert api.get(KEYS_URL).status_code in (401, 403)


def test_it_records_when_a_key_was_last_used(read_client):
    assert ApiKey.objects.get().last_used_at is None
    read_client.get("/api/v1/tasks")
    assert ApiKey.objects.get().last_used_at is not None
