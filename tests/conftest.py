import contextlib
import json
import os
import shutil
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from django.db import connection
from rest_framework.test import APIClient

from agency.models import ApiKey
from agency.services.api_keys import api_key_create
from tests.processes import free_port
from tracing.logging import configure_logging

# Markers each pass of `.ci/test` leaves out, by database vendor.
DESELECTED = {
    "sqlite": ("server_db", "postgres", "celery_worker"),
    "postgresql": ("single_pass",),
    "mysql": ("single_pass", "postgres", "celery_worker"),
}


def pytest_sessionstart(session):
    """For bench/mutation.sh; normal runs are not affected.

    With `AGENCY_TEST_DB_PER_PROCESS` (tests on a database server), each session has a test
    database named after its process, so sessions run side by side. With `AGENCY_TEST_DB_TEMPLATE`,
    each session starts from its own copy of one migrated SQLite file instead of migrating a new
    database: migrations are most of the time of the short sessions mutation testing runs by the
    thousand."""
    if os.environ.get("AGENCY_TEST_DB_PER_PROCESS"):  # mutation runs on a server: sessions side by side
        connection.settings_dict["TEST"]["NAME"] = f"test_agency_{os.getpid()}"
        return
    template = os.environ.get("AGENCY_TEST_DB_TEMPLATE")
    if not template:
        return
    copy = Path(template).with_name(f"session-{os.getpid()}.sqlite3")
    shutil.copyfile(template, copy)
    connection.settings_dict["TEST"]["NAME"] = str(copy)
    session.config.option.reuse_db = True
    session.config.add_cleanup(lambda: copy.unlink(missing_ok=True))


def pytest_collection_modifyitems(config, items):
    """Split the suite between the passes of `.ci/test`.

    The SQLite pass leaves out what only a database server can prove (races
    between connections, row locks, a second process on the same database);
    the PostgreSQL pass leaves out tests that start their own processes and
    never touch the test database; the MariaDB pass runs the races but not
    what is PostgreSQL's own (psycopg's query spans) or the Celery worker.
    """
    from django.db import connection

    skip_markers = DESELECTED[connection.vendor]
    kept, dropped = [], []
    for item in items:
        (dropped if any(item.get_closest_marker(m) for m in skip_markers) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(autouse=True, scope="session")
def json_logs():
    """Render every log line as JSON so tests can read its fields."""
    from django.conf import settings

    configure_logging(level="DEBUG", fmt="json", cache=False, secret_path_prefixes=settings.SECRET_PATH_PREFIXES)


@pytest.fixture(autouse=True)
def local_channel_targets(settings):
    """Notification channels in tests post to local servers over plain http; tests of the target
    rules switch these back off."""
    settings.NOTIFY_ALLOW_HTTP_TARGETS = True
    settings.NOTIFY_ALLOW_PRIVATE_TARGETS = True


@pytest.fixture(autouse=True)
def no_arena_sample(settings):
    """Only high-value tasks compete unless a test samples others: the sample goes by task id, and
    ids differ between databases (and runs), so a sampled ordinary task would make a test flaky."""
    settings.ARENA_SAMPLE_RATE = 0


@pytest.fixture(autouse=True)
def fresh_cache():
    """Throttle counters and other cached state never leak from one test to the next."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def fresh_routes():
    """Each test's model routes as it wrote them: a route cached by an earlier test (whose id the
    database may reuse) never answers for this one."""
    from agency.gateway.services import route_cache_clear

    route_cache_clear()
    yield
    route_cache_clear()


@pytest.fixture(params=["refused", "hung"])
def cache_down(request, fresh_cache):
    """The shared cache (Redis) is down: nothing listens on its port ("refused"), or a server takes
    the connection and never answers ("hung"). The client's socket timeouts are the settings'."""
    from django.conf import settings
    from django.test import override_settings

    from tests.processes import free_port, hung_port

    with contextlib.ExitStack() as stack:
        port = free_port() if request.param == "refused" else stack.enter_context(hung_port())
        redis_cache = {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {
                "socket_connect_timeout": settings.CACHE_CONNECT_TIMEOUT_SECONDS,
                "socket_timeout": settings.CACHE_TIMEOUT_SECONDS,
            },
        }
        # Django's setting_changed handler replaces the cache connections, so `cache` follows.
        stack.enter_context(override_settings(CACHES={"default": redis_cache}))
        yield request.param


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path, monkeypatch):
    """Uploaded inputs and deliverables go to a fresh folder per test, never the project's folders."""
    from django.core.files.storage import storages

    from agency.models import Deliverable, Task
    from arena.models import ArenaFile

    settings.MEDIA_ROOT = tmp_path / "media"
    private = {**settings.STORAGES["private"], "OPTIONS": {"location": str(tmp_path / "private"), "base_url": None}}
    settings.STORAGES = {**settings.STORAGES, "private": private}
    # A file field resolves its storage once, when the model class is built: point it at the new one.
    for field in (
        Task._meta.get_field("input_file"),
        Deliverable._meta.get_field("file"),
        ArenaFile._meta.get_field("file"),
    ):
        monkeypatch.setattr(field, "storage", storages["private"])
    return tmp_path


@pytest.fixture
def refuse_inserts():
    """Database triggers that refuse every new row of a table: a real failure inside the transaction."""
    tables = []

    def into(table: str) -> None:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(
                    "CREATE OR REPLACE FUNCTION refuse_insert() RETURNS trigger AS $$ "
                    "BEGIN RAISE EXCEPTION 'injected'; END $$ LANGUAGE plpgsql"
                )
                cursor.execute(
                    f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_insert()"
                )
            elif connection.vendor == "mysql":
                cursor.execute(
                    f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} "
                    "FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'injected'"
                )
            else:
                cursor.execute(
                    f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, 'injected'); END"
                )
        tables.append(table)

    yield into
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(
                f"DROP TRIGGER refuse_{table}" + (f" ON {table}" if connection.vendor == "postgresql" else "")
            )


_memory_exporter = None


@pytest.fixture
def recorded_spans(monkeypatch):
    """Every span this process starts during the test is recorded and kept in memory.

    Outside tests a span is recorded only when an OTLP endpoint is configured and the sampler says
    so (docs/tracing.md); here the provider samples everything and finished spans are collected.
    """
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    global _memory_exporter
    provider = trace.get_tracer_provider()
    if _memory_exporter is None:  # a provider's processors cannot be removed: add one for the session
        _memory_exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(_memory_exporter))
    _memory_exporter.clear()
    # The provider hands each tracer its sampler once and caches the tracer: switch both.
    for sampling in (provider, *provider._tracers.values()):
        monkeypatch.setattr(sampling, "sampler", ALWAYS_ON)
    yield _memory_exporter
    _memory_exporter.clear()


@pytest.fixture
def log_lines(capsys):
    """Parsed JSON log lines written to stderr so far (call it to read)."""

    def read() -> list[dict]:
        lines = []
        for raw in capsys.readouterr().err.splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue
        return lines

    return read


@pytest.fixture
def issue_key(db):
    def make(scope: str = ApiKey.Scope.READ, name: str = "test") -> str:
        _, raw = api_key_create(name=name, scope=scope)
        return raw

    return make


@pytest.fixture
def api():
    return APIClient()


def client_with_key(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


@pytest.fixture
def read_client(issue_key) -> APIClient:
    return client_with_key(issue_key(ApiKey.Scope.READ))


@pytest.fixture
def operator_client(issue_key) -> APIClient:
    return client_with_key(issue_key(ApiKey.Scope.OPERATOR))


def database_url() -> str:
    """The test database as a DATABASE_URL, for processes the tests start."""
    from urllib.parse import quote

    from django.db import connection

    s = connection.settings_dict
    scheme, default_port = {"postgresql": ("postgres", 5432), "mysql": ("mysql", 3306)}[connection.vendor]
    credentials = quote(s["USER"] or "", safe="")
    if s["PASSWORD"]:
        credentials += ":" + quote(s["PASSWORD"], safe="")
    host = s["HOST"] or "127.0.0.1"
    if host.startswith("/"):  # a unix socket directory
        return f"{scheme}://{credentials}@/{s['NAME']}?host={quote(host, safe='')}&port={s['PORT'] or default_port}"
    return f"{scheme}://{credentials}@{host}:{s['PORT'] or default_port}/{s['NAME']}"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


class _Inbox:
    """aiosmtpd handler: keeps accepted messages; refuses recipients at refused.example (550) and
    syntax.example (500) for good and greylists those at greylist.example (a temporary 4xx answer)."""

    def __init__(self):
        self.messages = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.endswith("@refused.example"):
            return "550 5.1.1 No such user here"
        if address.endswith("@syntax.example"):
            return "500 5.5.2 Syntax error, command unrecognised"
        if address.endswith("@greylist.example"):
            return "450 4.7.1 Greylisted, please try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_inbox(settings):
    """A real SMTP server on loopback, with Django's SMTP backend pointed at it."""
    port = free_port()
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    try:
        yield inbox
    finally:
        controller.stop()


TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def broker_url():
    """A Redis database of its own for tests with real workers, emptied first; a missing Redis
    fails the test in CI and skips it elsewhere."""
    import redis

    try:
        redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2).flushdb()
    except redis.RedisError as exc:
        if in_ci():
            pytest.fail(f"Redis is required in CI and is not reachable at {TEST_REDIS_URL}: {exc}")
        pytest.skip(f"Redis not reachable at {TEST_REDIS_URL}")
    return TEST_REDIS_URL


@pytest.fixture
def browser():
    """Headless Chromium (selenium; Debian's chromium and chromedriver) with a WIDTH x HEIGHT window."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    from tests.browser import HEIGHT, WIDTH

    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        if in_ci():
            pytest.fail("Chromium and ChromeDriver are required in CI (.ci/run installs them)")
        pytest.skip("chromium / chromedriver not installed (apt-get install chromium chromium-driver)")
    options = Options()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={WIDTH},{HEIGHT}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()
