"""Hostile input (docs/api.md): whatever a client sends, the API answers 4xx in the JSON error shape, never 5xx.

These run on both passes: PostgreSQL refuses some text SQLite stores (NUL characters).
"""

import io
import json
import zipfile

import pytest
from django.test import Client
from drf_spectacular.generators import SchemaGenerator

from agency.models import ApiKey, Task
from escalations.models import Escalation
from tests.agency.factories import TaskFactory
from tests.conftest import client_with_key
from tests.escalations.factories import escalate

pytestmark = pytest.mark.django_db
TASKS = "/api/v1/tasks"
ORDER = {
    "domain": "legal",
    "title": "Review an NDA",
    "client_email": "buyer@example.com",
    "payment": "prepaid",
}
DEEP = 10_000


def _post_paths() -> list[str]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return sorted(path for path, operations in schema["paths"].items() if "post" in operations)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _assert_json_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert {"detail", "code", "trace_id"} <= set(body)
    if code is not None:
        assert body["code"] == code
    return body


@pytest.fixture
def operator(issue_key):
    return client_with_key(issue_key(ApiKey.Scope.OPERATOR))


def _multipart(client, name: str, content: bytes):
    upload = io.BytesIO(content)
    upload.name = name
    return client.post(TASKS, {**ORDER, "input_file": upload}, format="multipart")


# --- Deeply nested JSON -----------------------------------------------------------


@pytest.mark.parametrize("path", _post_paths())
def test_it_never_answers_5xx_to_a_json_body_nested_10000_deep(operator, path):
    escalation = escalate()
    ids = {"/api/v1/tasks/": escalation.task_id, "/api/v1/escalations/": escalation.pk, "/api/v1/keys/": 1}
    url = path
    for prefix, pk in ids.items():
        if path.startswith(prefix):
            url = path.replace("{id}", str(pk))
    response = operator.post(url, _nested(DEEP), content_type="application/json", HTTP_IDEMPOTENCY_KEY="deep")
    assert response.status_code < 500
    if response.status_code >= 400:
        _assert_json_error(response, response.status_code)


def test_it_refuses_a_json_body_nested_deeper_than_the_limit(operator, settings):
    body = {**ORDER, "extra": json.loads(_nested(settings.JSON_MAX_DEPTH))}
    response = operator.post(TASKS, body, format="json")
    assert "deeper" in _assert_json_error(response, 400, "parse_error")["detail"]
    assert not Task.objects.exists()


def test_it_accepts_a_json_body_nested_up_to_the_limit(operator, settings):
    body = {**ORDER, "extra": json.loads(_nested(settings.JSON_MAX_DEPTH - 1))}
    assert operator.post(TASKS, body, format="json").status_code == 201


def test_it_refuses_an_uploaded_json_file_nested_10000_deep(operator):
    response = _multipart(operator, "data.json", _nested(DEEP).encode())
    body = _assert_json_error(response, 400, "invalid")
    assert "deeper" in body["errors"]["input_file"][0]
    assert not Task.objects.exists()


def test_it_accepts_an_uploaded_json_file_nested_up_to_the_limit(operator, settings):
    response = _multipart(operator, "data.json", b"\xef\xbb\xbf" + _nested(settings.JSON_MAX_DEPTH).encode())
    assert response.status_code == 201, response.json()


@pytest.mark.parametrize("content", [b"", b"[1] [2]", b"NaN", b'{"a": 1,}', b'"\\ud800"x'])
def test_it_refuses_an_uploaded_file_that_is_not_one_json_document(operator, content):
    response = _multipart(operator, "data.json", content)
    assert "input_file" in _assert_json_error(response, 400)["errors"]


# --- XLSX: sizes declared by the archive, checked before anything inflates ----------


def _xlsx(parts: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
        for name, data in parts.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_it_refuses_an_xlsx_zip_bomb(operator):
    bomb = _xlsx({"xl/sharedStrings.xml": b"<si>" + b" " * (20 * 1024 * 1024)})
    assert len(bomb) < 100 * 1024
    response = _multipart(operator, "book.xlsx", bomb)
    assert "compressed" in _assert_json_error(response, 400, "invalid")["errors"]["input_file"][0]
    assert not Task.objects.exists()


def test_it_refuses_an_xlsx_whose_parts_are_larger_than_the_limit(operator, settings):
    settings.UPLOAD_XLSX_MAX_UNCOMPRESSED_BYTES = 64 * 1024
    stored = _xlsx({"xl/worksheets/sheet1.xml": b"<c>1</c>" * 10_000}, compression=zipfile.ZIP_STORED)
    response = _multipart(operator, "book.xlsx", stored)
    assert "uncompressed" in _assert_json_error(response, 400, "invalid")["errors"]["input_file"][0]


def test_it_refuses_an_xlsx_with_more_parts_than_the_limit(operator, settings):
    settings.UPLOAD_XLSX_MAX_PARTS = 10
    many = _xlsx({f"xl/worksheets/sheet{n}.xml": b"<c/>" for n in range(20)})
    response = _multipart(operator, "book.xlsx", many)
    assert "parts" in _assert_json_error(response, 400, "invalid")["errors"]["input_file"][0]


def test_it_refuses_an_xlsx_whose_part_inflates_beyond_its_declared_size(operator):
    book = bytearray(_xlsx({"xl/sharedStrings.xml": b"<si>" + b"x" * 5000}))
    # Lower the size the archive's directory declares for its last part (the shared strings).
    entry = book.rfind(b"PK\x01\x02")
    book[entry + 24 : entry + 28] = (100).to_bytes(4, "little")
    response = _multipart(operator, "book.xlsx", bytes(book))
    assert "input_file" in _assert_json_error(response, 400, "invalid")["errors"]


# --- Filters ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "99999-01-01",
        "0000-00-00",
        "10000-01-01T00:00:00Z",
        "9999-12-31T23:59:59-23:00",  # past year 9999 once in UTC
        "0001-01-01T00:00:00+01:00",  # before year 1 once in UTC
        "2024-13-45",
        "yesterday",
        "2024-01-01T00:00:00+99:99",
    ],
)
@pytest.mark.parametrize("name", ["created_after", "created_before"])
def test_it_refuses_out_of_range_and_junk_dates_in_filters(read_client, name, value):
    TaskFactory()
    response = read_client.get(TASKS, {name: value})
    assert name in _assert_json_error(response, 400)["errors"]


@pytest.mark.parametrize("offset", ["-20:00", "+23:59", "Z", "+00:00"])
def test_it_compares_filter_dates_with_any_offset_in_utc(read_client, offset):
    TaskFactory()
    assert read_client.get(TASKS, {"created_after": f"2000-01-01T00:00:00{offset}"}).json()["count"] == 1
    assert read_client.get(TASKS, {"created_before": f"2000-01-01T00:00:00{offset}"}).json()["count"] == 0


# --- NUL and other control characters ---------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        {"client": "a\x00b"},
        {"domain": "\x00"},
        {"status": "\x00"},
        {"created_after": "2024-01-01\x00"},
        {"page": "\x00"},
        {"\x00": "x"},
    ],
)
def test_it_refuses_nul_characters_in_query_parameters(read_client, query):
    _assert_json_error(read_client.get(TASKS, query), 400, "bad_request")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/cycles/%00",
        "/api/v1/cycles/abc%00def",
        "/api/v1/traces/%00" + "a" * 31,
        "/api/v1/tasks/1%00",
        "/api/v1/escalations/%00/resolve",
    ],
)
def test_it_refuses_nul_characters_in_path_segments(operator, path):
    _assert_json_error(operator.get(path), 400, "bad_request")


@pytest.mark.parametrize("char", ["\x01", "\x1b", "\x7f", "\u2028", "\ufffe"])
def test_it_answers_other_control_characters_in_query_and_path_without_5xx(operator, char):
    assert operator.get(TASKS, {"client": char, "domain": char}).status_code == 200
    _assert_json_error(operator.get(f"/api/v1/cycles/{char}"), 404, "not_found")
    _assert_json_error(operator.get(f"/api/v1/traces/{char}"), 400)
    assert operator.get(f"/api/v1/escalations?reason={char}").status_code == 400


def test_it_refuses_nul_characters_in_a_json_body(operator):
    task = TaskFactory()
    response = operator.post(f"{TASKS}/{task.pk}/cancel", {"reason": "a\x00b"}, format="json")
    assert "reason" in _assert_json_error(response, 400)["errors"]
    response = operator.post("/api/v1/escalations", {"task": task.pk, "detail": "\x00"}, format="json")
    assert "detail" in _assert_json_error(response, 400)["errors"]


def test_it_answers_ids_out_of_the_integer_range_with_404(operator):
    _assert_json_error(operator.get(f"{TASKS}/{10**30}"), 404, "not_found")
    _assert_json_error(operator.post(f"/api/v1/escalations/{2**63}/acknowledge"), 404, "not_found")


# --- Headers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "Bearer " + "clé-ключ".encode().decode("latin-1"),  # UTF-8 bytes, as a WSGI server hands them over
        "Bearer two words",
        "Bearer ",
        "Bearer " + "k" * 100_000,
        "Bearer \x00",
        "Bearer\tkey",
    ],
)
def test_it_answers_a_malformed_authorization_header_with_401(api, header):
    _assert_json_error(api.get(TASKS, HTTP_AUTHORIZATION=header), 401)


@pytest.mark.parametrize("key", ["a\x00b", "line\nbreak", "\x1b[31m", "k" * 256, " "])
def test_it_refuses_an_idempotency_key_with_control_characters_or_out_of_bounds(operator, key):
    response = operator.post(TASKS, ORDER, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert "Idempotency-Key" in _assert_json_error(response, 400, "invalid")["errors"]


def test_it_refuses_multipart_without_a_boundary(operator):
    response = operator.post(TASKS, b"--x\r\n", content_type="multipart/form-data")
    _assert_json_error(response, 400, "parse_error")


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", " ", "\u00b2", "99999999999999999999999"])
def test_it_never_answers_5xx_to_a_malformed_content_length(operator, length):
    response = operator.post(TASKS, json.dumps(ORDER), content_type="application/json", CONTENT_LENGTH=length)
    assert 400 <= response.status_code < 500
    _assert_json_error(response, response.status_code)


@pytest.mark.parametrize("length", ["-1", "abc"])
def test_it_never_answers_5xx_to_a_malformed_content_length_on_multipart(operator, length):
    response = operator.post(
        TASKS, b"--b\r\n\r\n--b--\r\n", content_type="multipart/form-data; boundary=b", CONTENT_LENGTH=length
    )
    assert 400 <= response.status_code < 500
    _assert_json_error(response, response.status_code)


def test_it_refuses_invalid_json(operator):
    response = operator.post(TASKS, b'{"domain": "legal",', content_type="application/json")
    _assert_json_error(response, 400, "parse_error")


@pytest.mark.parametrize("charset", ["utf-16", "latin-1", "rot13", "hex", "base64", "zlib", "no-such-charset"])
def test_it_never_answers_5xx_to_a_json_body_with_a_strange_charset(operator, charset):
    body = json.dumps({**ORDER, "title": "Révision"}).encode()
    response = operator.post(TASKS, body, content_type=f"application/json; charset={charset}")
    assert response.status_code < 500
    if response.status_code >= 400:
        _assert_json_error(response, 400, "parse_error")


# --- Unknown paths ------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/tasks/abc",
        "/api/v1/tasks/abc/",
        "/api/v1/tasks/",
        "/api/v1/tasks/1/",
        "/api/v1/tasks/-1",
        "/api/v1/escalations/1x/resolve",
        "/api/v1/escalations/1x/resolve/",
        "/api/v1/keys/x/revoke",
        "/api/v1/no-such-thing",
        "/api/v1/no-such-thing/",
        "/api/v1/schema",
        "/api/v1/",
        "/api/v2/tasks",
    ],
)
@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_it_answers_json_404_to_paths_no_endpoint_matches(operator, path, method):
    _assert_json_error(getattr(operator, method)(path), 404, "not_found")


def test_it_answers_json_404_to_unknown_paths_in_debug_mode_too(operator, settings):
    settings.DEBUG = True
    _assert_json_error(operator.get("/api/v1/tasks/abc"), 404, "not_found")
    _assert_json_error(operator.post("/api/v1/tasks/abc"), 404, "not_found")


def test_it_answers_json_404_to_a_session_post_without_csrf_token(admin_user):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)
    _assert_json_error(browser.post("/api/v1/escalations/1x/resolve"), 404, "not_found")


# --- The admin ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "created_at__gte=99999-99-99",
        "created_at__gte=0000-00-00",
        "created_at__gte=10000-01-01",
        "created_at__gte=0001-01-01T00:00:00%2B01:00",
        "created_at__lt=9999-12-31T23:59:59-23:00",
        "q=%00",
        "q=a%00b",
        "status=%00",
        "id=%00",
        "id=99999999999999999999999",
        "o=%00",
        "p=%00",
        "%00=1",
    ],
)
@pytest.mark.parametrize("url", ["/admin/agency/task/", "/admin/escalations/escalation/"])
def test_it_answers_4xx_or_a_redirect_to_hostile_admin_filters(admin_client, url, query):
    escalate()
    response = admin_client.get(f"{url}?{query}")
    assert response.status_code in (200, 302, 400), response.status_code


@pytest.mark.parametrize("path", ["/admin/agency/task/%00/change/", "/admin/agency/task/abc/change/"])
def test_it_answers_4xx_or_a_redirect_to_hostile_admin_paths(admin_client, path):
    assert admin_client.get(path).status_code in (302, 400, 404)


def test_it_answers_400_to_a_nul_in_the_trace_search(admin_client):
    assert admin_client.get("/admin/traces/?trace_id=%00").status_code == 400


# --- Body size: one limit for JSON and multipart ------------------------------------------


@pytest.fixture
def small_bodies(settings):
    settings.API_BODY_MAX_BYTES = settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096
    return 4096


def test_it_refuses_a_json_body_over_the_limit_before_reading_it(operator, small_bodies):
    task = TaskFactory(status="processing")
    body = json.dumps({"task": task.pk, "detail": "x" * small_bodies})
    response = operator.post("/api/v1/escalations", body, content_type="application/json")
    _assert_json_error(response, 413, "too_large")
    assert not Escalation.objects.exists()
    fits = json.dumps({"task": task.pk, "detail": "x" * (small_bodies - 100)})
    assert operator.post("/api/v1/escalations", fits, content_type="application/json").status_code == 201


def test_it_refuses_a_multipart_text_field_over_the_same_limit(operator, small_bodies):
    order = {"domain": "legal", "title": "T", "client_email": "c@example.com", "payment": "prepaid"}
    response = operator.post(TASKS, {**order, "input_csv": "a,b\n" + "1,2\n" * small_bodies}, format="multipart")
    _assert_json_error(response, 413, "too_large")
    assert not Task.objects.exists()
