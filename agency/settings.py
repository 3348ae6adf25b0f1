"""Settings, read from the environment (django-environ).

With no environment at all the product runs embedded: SQLite in the project
folder, Celery eager, console e-mail, a local-memory cache and no span
exporter. Every variable is documented in `.env.example`.
"""

import os
import secrets
import time
from decimal import Decimal
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


class _Env(environ.Env):
    """django-environ, except that an empty variable (`DATABASE_URL=`) means
    "use the default", the way a commented-out line in `.env` does."""

    def get_value(self, var, cast=None, default=environ.Env.NOTSET, parse_default=False):
        if self.ENVIRON.get(var) == "" and default is not environ.Env.NOTSET:
            return default if not parse_default or default is None else self.parse_value(default, cast)
        return super().get_value(var, cast=cast, default=default, parse_default=parse_default)


env = _Env()
# `.env` is for people; `.ci/test` and subprocess tests switch it off so a
# developer's file cannot turn the SQLite pass into something else.
if (BASE_DIR / ".env").is_file() and env.str("AGENCY_DOTENV", default="true").lower() != "false":
    env.read_env(BASE_DIR / ".env")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_flag(name: str, default: bool) -> bool:
    """A boolean variable that refuses anything it does not understand.

    django-environ reads any unknown word as False, which turns a typo such as
    `DJANGO_DEBUG=flase` into a silent production setting.
    """
    raw = env.str(name, default=None)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true/false, 1/0, yes/no, on/off)")


def env_int(name: str, default: int, minimum: int = 0) -> int:
    try:
        value = env.int(name, default=default)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer: {exc}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {value}")
    return value


def _development_secret_key() -> str:
    """A random key per checkout, kept in `.secret_key` (git-ignored), for DEBUG only.

    Never a key written in the code: that one would be public, and anyone
    could forge a staff session with it.
    """
    path = BASE_DIR / ".secret_key"
    try:
        # O_EXCL: when several processes start at once, exactly one writes the key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # the writer may not have written yet
            key = path.read_text().strip()
            if key:
                return key
            time.sleep(0.01)
        raise ImproperlyConfigured(f"{path} is empty; delete it to get a new development key") from None
    key = secrets.token_urlsafe(50)
    with os.fdopen(fd, "w") as file:
        file.write(key)
    return key


# --- Core -------------------------------------------------------------------

DEBUG = env_flag("DJANGO_DEBUG", True)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
if env.str("DJANGO_ALLOWED_HOSTS", default="") and env.str("DJANGO_DEBUG", default="") == "":
    # Serving real host names while DEBUG silently defaults to on would show
    # debug pages to the world: whoever sets the hosts decides DEBUG too.
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS is set: set DJANGO_DEBUG explicitly as well (false in production)")
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is required when DJANGO_DEBUG is false")
    SECRET_KEY = _development_secret_key()
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "agency.apps.AgencyAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_results",
    "django_celery_beat",
    "django_structlog",
    "tracing",
    "agency.apps.AgencyConfig",
    "bids",
    "escalations",
    "arena",
]

TRACING_ENABLED = env_flag("TRACING_ENABLED", True)

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# "lean" (default): our server-span middleware; "stock": OpenTelemetry's
# Django instrumentation (dearer, see tracing.otel and bench/).
OTEL_DJANGO_INSTRUMENTATION = env.str("OTEL_DJANGO_INSTRUMENTATION", default="lean")
if OTEL_DJANGO_INSTRUMENTATION not in {"lean", "stock"}:
    raise ImproperlyConfigured("OTEL_DJANGO_INSTRUMENTATION must be 'lean' or 'stock'")
if TRACING_ENABLED:
    # First, so every later line of the request is inside its trace
    # ("stock" puts OpenTelemetry's Django middleware before it at start-up).
    MIDDLEWARE.insert(0, "tracing.middleware.RequestTraceMiddleware")
MIDDLEWARE.append("agency.api.errors.JsonErrorMiddleware")

ROOT_URLCONF = "agency.urls"
WSGI_APPLICATION = "agency.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {})
    # Bounded connection lifetimes and a health check before reuse: a database
    # restart costs one failed request per process, not a stuck process.
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", env_int("DATABASE_CONNECT_TIMEOUT", 5, minimum=1))
elif DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    for option, value in {
        # Four-byte UTF-8: names and task titles may hold emoji.
        "charset": "utf8mb4",
        # Strict: a value that does not fit is an error, never silently cut or zeroed.
        "init_command": "SET sql_mode='STRICT_TRANS_TABLES'",
        # What Django expects (and PostgreSQL does): each statement reads what was committed
        # before it, where InnoDB's default REPEATABLE READ would have a compare-and-set
        # re-read its transaction's first snapshot.
        "isolation_level": "read committed",
        "connect_timeout": env_int("DATABASE_CONNECT_TIMEOUT", 5, minimum=1),
    }.items():
        DATABASES["default"]["OPTIONS"].setdefault(option, value)
    # The test database gets the server's default collation for utf8mb4 (case-insensitive,
    # as in production); columns that must compare case-sensitively say so (agency.models.fields).
    DATABASES["default"]["TEST"] = {"CHARSET": "utf8mb4"}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {})
    # WAL and a busy timeout let the demo's eager tasks, the dev server and a
    # command share the file without "database is locked".
    DATABASES["default"]["OPTIONS"].setdefault("init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
    DATABASES["default"]["OPTIONS"].setdefault("timeout", 20)
    DATABASES["default"]["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (throttling, shared counters) ---------------------------------------

CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://agency")}
# A dead or hung Redis must cost each request milliseconds, not the system's connect timeout
# (minutes) or an unbounded read: throttling and the delivery counters go on without it
# (agency/cache.py). Options given in CACHE_URL's query string win.
CACHE_CONNECT_TIMEOUT_SECONDS = env.float("CACHE_CONNECT_TIMEOUT_SECONDS", default=0.25)
CACHE_TIMEOUT_SECONDS = env.float("CACHE_TIMEOUT_SECONDS", default=0.5)
if min(CACHE_CONNECT_TIMEOUT_SECONDS, CACHE_TIMEOUT_SECONDS) <= 0:
    raise ImproperlyConfigured("CACHE_CONNECT_TIMEOUT_SECONDS and CACHE_TIMEOUT_SECONDS must be positive")
if CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
    _cache_options = CACHES["default"].setdefault("OPTIONS", {})
    _cache_options.setdefault("socket_connect_timeout", CACHE_CONNECT_TIMEOUT_SECONDS)
    _cache_options.setdefault("socket_timeout", CACHE_TIMEOUT_SECONDS)

# --- Auth, i18n, static -----------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "media")
MEDIA_URL = "media/"
# Client inputs and deliverables: outside MEDIA_ROOT and without a URL, so
# only the delivery views (token, expiry, download limit) can hand them out.
PRIVATE_MEDIA_ROOT = env.path("PRIVATE_MEDIA_ROOT", default=BASE_DIR / "private")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "private": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(PRIVATE_MEDIA_ROOT), "base_url": None},
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Mail for clients and operators, one URL: smtp+tls://user:password@smtp.example.com:587 (also
# smtp:// and smtp+ssl://; URL-encode special characters). Default: printed to the console.
_email = env.email_url("EMAIL_URL", default="consolemail://")
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default=_email["EMAIL_BACKEND"])
EMAIL_HOST = _email["EMAIL_HOST"] or "localhost"
EMAIL_PORT = _email["EMAIL_PORT"] or 25
EMAIL_HOST_USER = _email["EMAIL_HOST_USER"] or ""
EMAIL_HOST_PASSWORD = _email["EMAIL_HOST_PASSWORD"] or ""
EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)
# Seconds each SMTP operation may take: a slow mail server never blocks a relay for long.
EMAIL_TIMEOUT = env.float("EMAIL_TIMEOUT", default=10.0)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="agency@localhost")


def _proxy_ssl_header() -> tuple[str, str] | None:
    """`HEADER,value` (default `HTTP_X_FORWARDED_PROTO,https`): how our proxy says a request came over
    https. `off` turns it off (no proxy in front: the header would be the client's to forge)."""
    raw = env.str("DJANGO_SECURE_PROXY_SSL_HEADER", default="HTTP_X_FORWARDED_PROTO,https").strip()
    if raw.lower() in _FALSE:
        return None
    name, _, value = raw.partition(",")
    if not name.strip().startswith("HTTP_") or not value.strip():
        raise ImproperlyConfigured("DJANGO_SECURE_PROXY_SSL_HEADER must be 'HTTP_<HEADER>,<value>' or 'off'")
    return name.strip(), value.strip()


if not DEBUG:
    # Production is https behind a proxy: redirect plain http, tell browsers to stay on https, and
    # trust the proxy's scheme header. A plain-http test server sets DJANGO_SECURE_SSL_REDIRECT=false.
    SESSION_COOKIE_SECURE = env_flag("DJANGO_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_SSL_REDIRECT = env_flag("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # load balancers probe over plain http
    SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_flag("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_flag("DJANGO_SECURE_HSTS_PRELOAD", True)
    SECURE_PROXY_SSL_HEADER = _proxy_ssl_header()

# --- API ----------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "agency.api.auth.ApiKeyAuthentication",
        "agency.api.auth.StaffSessionAuthentication",
    ],
    # Every view says who may call it (`api_access`); one that does not is closed to everyone.
    "DEFAULT_PERMISSION_CLASSES": ["agency.api.auth.ApiAccess"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "agency.api.parsers.JsonParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "agency.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "agency.api.errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["agency.api.throttling.PrincipalRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"principal": env.str("API_THROTTLE_RATE", default="600/min")},
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # Proxies in front of us that append to X-Forwarded-For; 0 trusts only the
    # socket address, so clients cannot pick their own throttle bucket.
    "NUM_PROXIES": env_int("API_NUM_PROXIES", 0),
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

SPECTACULAR_SETTINGS = {
    "TITLE": "Agency API",
    "DESCRIPTION": "Autonomous AI freelance agency: tasks, bids, escalations, arena, traces.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI served from our own static files: the docs work without internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# How long a stored Idempotency-Key answer is replayed, and how long an
# unfinished claim blocks a retry before it is considered abandoned.
IDEMPOTENCY_TTL_SECONDS = env_int("IDEMPOTENCY_TTL_SECONDS", 24 * 3600, minimum=60)
IDEMPOTENCY_CLAIM_TIMEOUT_SECONDS = env_int("IDEMPOTENCY_CLAIM_TIMEOUT_SECONDS", 60, minimum=1)
# Deepest nesting accepted in JSON, as a request body or an uploaded JSON file alike (deeper → 400).
JSON_MAX_DEPTH = env_int("JSON_MAX_DEPTH", 100, minimum=1)

# --- Pricing (docs/tasks.md) ------------------------------------------------------


def _pairs(name: str, default: str, key, value) -> list[tuple]:
    """`a:1,b:2` → [(key(a), value(1)), …], refusing anything malformed."""
    raw = env.str(name, default=default)
    try:
        pairs = [item.split(":") for item in raw.split(",") if item.strip()]
        return [(key(k.strip()), value(v.strip())) for k, v in pairs]
    except (ValueError, ArithmeticError):
        raise ImproperlyConfigured(f"{name}={raw!r} is not a list of name:value pairs") from None


PRICING_COMPLEXITY = dict(_pairs("PRICING_COMPLEXITY", "simple:1.0,medium:1.5,complex:2.0", str, Decimal))
PRICING_URGENCY = dict(_pairs("PRICING_URGENCY", "standard:1.0,rush:1.25,urgent:1.5", str, Decimal))
# (completed tasks at least, discount percent)
PRICING_REPEAT_DISCOUNTS = _pairs("PRICING_REPEAT_DISCOUNTS", "1:5,2:10,5:15", int, int)
if set(PRICING_COMPLEXITY) != {"simple", "medium", "complex"} or set(PRICING_URGENCY) != {"standard", "rush", "urgent"}:
    raise ImproperlyConfigured("PRICING_COMPLEXITY and PRICING_URGENCY must price every level")
if any(m <= 0 for m in [*PRICING_COMPLEXITY.values(), *PRICING_URGENCY.values()]):
    raise ImproperlyConfigured("Pricing multipliers must be positive")
if any(not 0 <= percent <= 100 or minimum < 1 for minimum, percent in PRICING_REPEAT_DISCOUNTS):
    raise ImproperlyConfigured("PRICING_REPEAT_DISCOUNTS needs tiers from 1 task up and percents within 0..100")
HIGH_VALUE_THRESHOLD_CENTS = env_int("HIGH_VALUE_THRESHOLD_CENTS", 20000, minimum=1)
# Attempts at a task before it is escalated (docs/escalations.md).
TASK_MAX_ATTEMPTS = env_int("TASK_MAX_ATTEMPTS", 3, minimum=1)
# The work pipeline (docs/agents.md): how long a worker's claim on a task lasts between two of its
# steps before another worker may take the task over, and how long a paid task may wait for a
# worker before the cycle sends it again (its message may have been lost with the broker).
TASK_LEASE_SECONDS = env_int("TASK_LEASE_SECONDS", 600, minimum=1)
TASK_REQUEUE_PAID_AFTER_SECONDS = env_int("TASK_REQUEUE_PAID_AFTER_SECONDS", 120, minimum=0)
# The arena (docs/arena.md). The pipeline offers each task's first attempt to this function (a dotted
# path; empty: the single-agent path for every task). It takes every high-value task and this share
# of the others, picked by task id. Compute (the wall-clock time an agent ran: an arena side, an
# attempt on the dashboard) costs COMPUTE_CENTS_PER_SECOND cents a second; a side silent for longer
# than its timeout is run again. A challenger is promoted into routing only after this many decisive
# duels with an interval clear of parity.
PIPELINE_ARENA_HOOK = env.str("PIPELINE_ARENA_HOOK", default="arena.services.competitions.task_compete")
ARENA_SAMPLE_RATE = env.float("ARENA_SAMPLE_RATE", default=0.1)
if not 0 <= ARENA_SAMPLE_RATE <= 1:
    raise ImproperlyConfigured("ARENA_SAMPLE_RATE must be within 0..1")
try:
    COMPUTE_CENTS_PER_SECOND = Decimal(env.str("COMPUTE_CENTS_PER_SECOND", default="0.0014"))
    if not COMPUTE_CENTS_PER_SECOND >= 0:
        raise ArithmeticError
except ArithmeticError:
    raise ImproperlyConfigured("COMPUTE_CENTS_PER_SECOND must be a number of cents, not negative") from None
ARENA_SIDE_TIMEOUT_SECONDS = env_int("ARENA_SIDE_TIMEOUT_SECONDS", 1800, minimum=1)
ARENA_PROMOTION_MIN_DUELS = env_int("ARENA_PROMOTION_MIN_DUELS", 47, minimum=1)
# Marketplaces and bids (docs/bids.md). Proposed amounts stay within the posting's budget and within
# [BID_MIN_CENTS, BID_MAX_CENTS]; a bid is sent without an operator only where the marketplace takes
# API bids and the expected profit and the confidence reach the thresholds. A bid left `submitting`
# (its sender crashed or timed out) is sent again by reconciliation once the grace period has passed
# and the marketplace does not list it.
BID_MIN_CENTS = env_int("BID_MIN_CENTS", 3000, minimum=1)
BID_MAX_CENTS = env_int("BID_MAX_CENTS", 50000, minimum=1)
if BID_MIN_CENTS > BID_MAX_CENTS:
    raise ImproperlyConfigured("BID_MIN_CENTS must not exceed BID_MAX_CENTS")
BID_AUTO_MIN_PROFIT_CENTS = env_int("BID_AUTO_MIN_PROFIT_CENTS", 2000)
BID_AUTO_MIN_CONFIDENCE = env.float("BID_AUTO_MIN_CONFIDENCE", default=0.7)
BID_RESUBMIT_GRACE_SECONDS = env_int("BID_RESUBMIT_GRACE_SECONDS", 300, minimum=1)
# Ask the domain's `evaluate` route about postings the rules would bid on (fails closed to
# needs_review), and its `propose` route for the proposal (falls back to the template).
BID_MODEL_EVALUATION = env.bool("BID_MODEL_EVALUATION", default=False)
BID_MODEL_PROPOSALS = env.bool("BID_MODEL_PROPOSALS", default=False)
# Tokens (in, out) of one model call, for the expected cost of a task's plan, work and review.
BID_EXPECTED_TOKENS = (env_int("BID_EXPECTED_TOKENS_IN", 6000), env_int("BID_EXPECTED_TOKENS_OUT", 1500))
MARKETPLACE_HTTP_TIMEOUT_SECONDS = env.float("MARKETPLACE_HTTP_TIMEOUT_SECONDS", default=15.0)
MARKETPLACE_BREAKER_FAILURES = env_int("MARKETPLACE_BREAKER_FAILURES", 5, minimum=1)
MARKETPLACE_BREAKER_COOLDOWN_SECONDS = env_int("MARKETPLACE_BREAKER_COOLDOWN_SECONDS", 300, minimum=1)
# Largest task input accepted (bytes); larger answers 413.
TASK_INPUT_MAX_BYTES = env_int("TASK_INPUT_MAX_BYTES", 50 * 1024 * 1024, minimum=1024)
# Largest API request body, JSON or multipart alike (default: a task input plus 1 MiB of fields);
# larger answers 413 before it is read. Form fields of a multipart body get the same limit.
API_BODY_MAX_BYTES = env_int("API_BODY_MAX_BYTES", TASK_INPUT_MAX_BYTES + 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_BODY_MAX_BYTES
# An XLSX input is a ZIP archive: its parts are inflated to check it, within these bounds
# (a few kilobytes can inflate to gigabytes); beyond them it is refused with 400.
UPLOAD_XLSX_MAX_PARTS = env_int("UPLOAD_XLSX_MAX_PARTS", 10_000, minimum=10)
UPLOAD_XLSX_MAX_UNCOMPRESSED_BYTES = env_int("UPLOAD_XLSX_MAX_UNCOMPRESSED_BYTES", 256 * 1024 * 1024, minimum=1024)
UPLOAD_XLSX_MAX_COMPRESSION_RATIO = env_int("UPLOAD_XLSX_MAX_COMPRESSION_RATIO", 100, minimum=2)

# --- Delivery links (docs/tasks.md) ------------------------------------------------

# Where clients reach this deployment (links in e-mails).
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000")
DELIVERY_LINK_TTL_DAYS = env_int("DELIVERY_LINK_TTL_DAYS", 7, minimum=1)
DELIVERY_MAX_DOWNLOADS = env_int("DELIVERY_MAX_DOWNLOADS", 5, minimum=1)
DELIVERY_MAX_FAILURES_PER_IP = env_int("DELIVERY_MAX_FAILURES_PER_IP", 10, minimum=1)
DELIVERY_MAX_FAILURES_PER_TASK = env_int("DELIVERY_MAX_FAILURES_PER_TASK", 20, minimum=1)
DELIVERY_FAILURE_WINDOW_SECONDS = env_int("DELIVERY_FAILURE_WINDOW_SECONDS", 900, minimum=1)

# --- Escalations and notifications (docs/escalations.md) ---------------------------

# An open escalation nobody acknowledged is re-notified after this long, and
# handed to the secondary channels after the second interval.
ESCALATION_REMIND_AFTER_MINUTES = env_int("ESCALATION_REMIND_AFTER_MINUTES", 30, minimum=1)
ESCALATION_SECONDARY_AFTER_MINUTES = env_int("ESCALATION_SECONDARY_AFTER_MINUTES", 120, minimum=1)
# Outbox relay: attempts per message before it is marked dead, exponential
# backoff between them (base · 2^(attempt-1), capped), the lease a relay holds
# on the rows it claimed, rows per claim, and the HTTP timeout per send.
NOTIFY_MAX_ATTEMPTS = env_int("NOTIFY_MAX_ATTEMPTS", 8, minimum=1)
NOTIFY_BACKOFF_BASE_SECONDS = env_int("NOTIFY_BACKOFF_BASE_SECONDS", 30, minimum=1)
NOTIFY_BACKOFF_MAX_SECONDS = env_int("NOTIFY_BACKOFF_MAX_SECONDS", 3600, minimum=1)
NOTIFY_CLAIM_SECONDS = env_int("NOTIFY_CLAIM_SECONDS", 600, minimum=5)
NOTIFY_BATCH_SIZE = env_int("NOTIFY_BATCH_SIZE", 50, minimum=1)
NOTIFY_HTTP_TIMEOUT_SECONDS = env.float("NOTIFY_HTTP_TIMEOUT_SECONDS", default=10.0)
if 20 * max(NOTIFY_HTTP_TIMEOUT_SECONDS, EMAIL_TIMEOUT) > NOTIFY_CLAIM_SECONDS:
    # A send must end well within the claim, or another relay could take the row over mid-send
    # and send it again. The timeout bounds each network operation, and one SMTP send is several
    # (connect, EHLO, one RCPT per recipient, DATA…), hence the wide margin. The claim only
    # matters when a relay dies: then its rows wait this long before another relay sends them.
    raise ImproperlyConfigured(
        "NOTIFY_CLAIM_SECONDS must be at least 20 times NOTIFY_HTTP_TIMEOUT_SECONDS and EMAIL_TIMEOUT."
    )
# Sent and cancelled notifications are deleted after this many days (dead ones are kept).
NOTIFY_KEEP_DAYS = env_int("NOTIFY_KEEP_DAYS", 90, minimum=1)
NOTIFY_RELAY_INTERVAL_SECONDS = env_int("NOTIFY_RELAY_INTERVAL_SECONDS", 30, minimum=1)
# Channel URLs (webhook, Slack, PagerDuty targets) must be https and public unless these allow
# plain http (default: in development) or loopback/private/link-local addresses (local test servers).
NOTIFY_ALLOW_HTTP_TARGETS = env_flag("NOTIFY_ALLOW_HTTP_TARGETS", DEBUG)
NOTIFY_ALLOW_PRIVATE_TARGETS = env_flag("NOTIFY_ALLOW_PRIVATE_TARGETS", False)
TELEGRAM_API_BASE = env.str("TELEGRAM_API_BASE", default="https://api.telegram.org")
PAGERDUTY_EVENTS_URL = env.str("PAGERDUTY_EVENTS_URL", default="https://events.pagerduty.com/v2/enqueue")

# --- Stripe (docs/tasks.md) -------------------------------------------------------

STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="https://api.stripe.com")
# Comma-separated signing secrets; more than one while a secret is being rotated.
STRIPE_WEBHOOK_SECRETS = [s.strip() for s in env.list("STRIPE_WEBHOOK_SECRETS", default=[]) if s.strip()]
STRIPE_WEBHOOK_TOLERANCE_SECONDS = env_int("STRIPE_WEBHOOK_TOLERANCE_SECONDS", 300, minimum=1)
STRIPE_TIMEOUT_SECONDS = env.float("STRIPE_TIMEOUT_SECONDS", default=10.0)
# A card-paid task waits this long for its Checkout Session before housekeeping cancels it (the
# process that created it died before Stripe answered).
CHECKOUT_OPEN_TIMEOUT_SECONDS = env_int("CHECKOUT_OPEN_TIMEOUT_SECONDS", 900, minimum=60)
if CHECKOUT_OPEN_TIMEOUT_SECONDS < 4 * STRIPE_TIMEOUT_SECONDS:
    # Stripe is asked twice at most (one network retry): housekeeping must never cancel a task whose
    # checkout is still being opened.
    raise ImproperlyConfigured("CHECKOUT_OPEN_TIMEOUT_SECONDS must be at least 4 times STRIPE_TIMEOUT_SECONDS.")
STRIPE_SUCCESS_URL = env.str(
    "STRIPE_SUCCESS_URL", default="http://127.0.0.1:8000/paid?session_id={CHECKOUT_SESSION_ID}"
)
STRIPE_CANCEL_URL = env.str("STRIPE_CANCEL_URL", default="http://127.0.0.1:8000/")

# --- Celery -------------------------------------------------------------------

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
# Results go to the database in eager mode too, so the embedded default shows them.
CELERY_TASK_STORE_EAGER_RESULT = True
if CELERY_TASK_ALWAYS_EAGER:
    CELERY_BROKER_URL = "memory://localhost/"
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = env_int("CELERY_BROKER_CONNECTION_TIMEOUT", 4, minimum=1)
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_QUEUE", default="agency")
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
AGENCY_CYCLE_INTERVAL_SECONDS = env_int("AGENCY_CYCLE_INTERVAL_SECONDS", 300, minimum=10)
# A cycle run still queued or running after this long is closed as failed by housekeeping.
CYCLE_RUN_TIMEOUT_SECONDS = env_int("CYCLE_RUN_TIMEOUT_SECONDS", 3600, minimum=60)
# Schedules are kept in code (django-celery-beat copies them into its tables);
# apps add their entries here.
CELERY_BEAT_SCHEDULE: dict = {
    "agency-cycle": {"task": "agency.cycle", "schedule": float(AGENCY_CYCLE_INTERVAL_SECONDS)},
    # Each marketplace has its own scan interval; this checks every minute which ones are due.
    "marketplaces-scan": {"task": "bids.marketplaces_scan", "schedule": 60.0},
    "notifications-relay": {
        "task": "escalations.notifications_relay",
        "schedule": float(NOTIFY_RELAY_INTERVAL_SECONDS),
    },
    "client-emails-relay": {"task": "agency.client_emails_relay", "schedule": float(NOTIFY_RELAY_INTERVAL_SECONDS)},
}

# --- Tracing and logs ------------------------------------------------------------

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOG_FORMAT = env.str("LOG_FORMAT", default="console" if DEBUG else "json")
if LOG_FORMAT not in {"console", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'console' or 'json', got {LOG_FORMAT!r}")
OTEL_EXPORTER_OTLP_ENDPOINT = env.str("OTEL_EXPORTER_OTLP_ENDPOINT", default="")
OTEL_SERVICE_NAME = env.str("OTEL_SERVICE_NAME", default="agency")
OTEL_TRACES_SAMPLE_RATIO = env.float("OTEL_TRACES_SAMPLE_RATIO", default=0.1)
# Follow a caller's "sampled" flag (true for trusted internal callers);
# otherwise the ratio applies to remote parents too, so an outside client
# cannot make every span of its requests recorded and exported.
OTEL_TRUST_REMOTE_SAMPLING = env_flag("OTEL_TRUST_REMOTE_SAMPLING", False)
if not 0.0 <= OTEL_TRACES_SAMPLE_RATIO <= 1.0:
    raise ImproperlyConfigured("OTEL_TRACES_SAMPLE_RATIO must be between 0 and 1")


# django-structlog carries the log context (request_id) from a request to the
# tasks it enqueues and binds it in the worker. Requests themselves are logged
# by tracing.middleware.RequestTraceMiddleware, one line each.
DJANGO_STRUCTLOG_CELERY_ENABLED = True
TRUST_UPSTREAM_REQUEST_ID = env_flag("TRUST_UPSTREAM_REQUEST_ID", False)
LOG_CLIENT_IP = env_flag("LOG_CLIENT_IP", False)

LOGGING_CONFIG = None  # tracing.logging configures stdlib and structlog together
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(f"LOG_LEVEL {LOG_LEVEL!r} is not a log level")

from tracing.logging import configure_logging  # noqa: E402

# Paths that carry a secret after this prefix (delivery links): masked in every log line and span.
SECRET_PATH_PREFIXES = ("/deliver/",)

configure_logging(level=LOG_LEVEL, fmt=LOG_FORMAT, cache=not DEBUG, secret_path_prefixes=SECRET_PATH_PREFIXES)

# --- Model gateway (docs/gateway.md) -----------------------------------------------

# Per request; a timeout is retried like a 5xx, then the next deployment is asked.
GATEWAY_TIMEOUT_SECONDS = env.float("GATEWAY_TIMEOUT_SECONDS", default=60.0)
# Retries per deployment after the first attempt (timeouts, connection errors, 5xx, 429).
GATEWAY_RETRIES = env_int("GATEWAY_RETRIES", 2)
# Exponential backoff between retries starts here; a 429's Retry-After is honoured up to the cap,
# and a longer one sends the call to the next deployment at once.
GATEWAY_BACKOFF_SECONDS = env.float("GATEWAY_BACKOFF_SECONDS", default=0.5)
GATEWAY_RETRY_AFTER_MAX_SECONDS = env.float("GATEWAY_RETRY_AFTER_MAX_SECONDS", default=10.0)
# How long a process reuses a route's deployments, providers and prices (default 5 s): admin
# changes reach every process within this time. Breaker states are read on every call.
GATEWAY_ROUTE_CACHE_SECONDS = env.float("GATEWAY_ROUTE_CACHE_SECONDS", default=5.0)
GATEWAY_BREAKER_FAILURES = env_int("GATEWAY_BREAKER_FAILURES", 3, minimum=1)
GATEWAY_BREAKER_COOLDOWN_SECONDS = env_int("GATEWAY_BREAKER_COOLDOWN_SECONDS", 60, minimum=1)
if GATEWAY_TIMEOUT_SECONDS <= 0 or GATEWAY_BACKOFF_SECONDS < 0 or GATEWAY_RETRY_AFTER_MAX_SECONDS < 0:
    raise ImproperlyConfigured(
        "GATEWAY_TIMEOUT_SECONDS must be positive, "
        "GATEWAY_BACKOFF_SECONDS and GATEWAY_RETRY_AFTER_MAX_SECONDS at least 0"
    )
# One OpenAI-compatible model for the whole agency, written into the database at start-up by
# `manage.py gateway_configure` (and the demo): nothing is configured while the base URL is empty.
AGENCY_MODEL_BASE_URL = env.str("AGENCY_MODEL_BASE_URL", default="")
AGENCY_MODEL_NAME = env.str("AGENCY_MODEL_NAME", default="")
AGENCY_MODEL_API_KEY_ENV = env.str("AGENCY_MODEL_API_KEY_ENV", default="")
AGENCY_MODEL_KIND = env.str("AGENCY_MODEL_KIND", default="cloud")
AGENCY_MODEL_PRICE_IN_CENTS_PER_1M = env.str("AGENCY_MODEL_PRICE_IN_CENTS_PER_1M", default="")
AGENCY_MODEL_PRICE_OUT_CENTS_PER_1M = env.str("AGENCY_MODEL_PRICE_OUT_CENTS_PER_1M", default="")
if AGENCY_MODEL_BASE_URL and not AGENCY_MODEL_NAME:
    raise ImproperlyConfigured("AGENCY_MODEL_BASE_URL is set: AGENCY_MODEL_NAME must name the model too")
if AGENCY_MODEL_KIND not in {"local", "cloud"}:
    raise ImproperlyConfigured(f"AGENCY_MODEL_KIND must be 'local' or 'cloud', got {AGENCY_MODEL_KIND!r}")
for _name in ("AGENCY_MODEL_PRICE_IN_CENTS_PER_1M", "AGENCY_MODEL_PRICE_OUT_CENTS_PER_1M"):
    _raw = globals()[_name]
    try:
        if _raw and not Decimal(_raw) >= 0:
            raise ValueError
    except (ArithmeticError, ValueError):
        raise ImproperlyConfigured(f"{_name} must be a decimal number of cents, at least 0, got {_raw!r}") from None

# --- Health ---------------------------------------------------------------------

# How long /healthz waits for the broker, and for how long a process reuses the broker's answer.
HEALTH_CHECK_TIMEOUT_SECONDS = env.float("HEALTH_CHECK_TIMEOUT_SECONDS", default=1.0)
HEALTH_BROKER_CACHE_SECONDS = env.float("HEALTH_BROKER_CACHE_SECONDS", default=5.0)
if HEALTH_CHECK_TIMEOUT_SECONDS <= 0 or HEALTH_BROKER_CACHE_SECONDS < 0:
    raise ImproperlyConfigured("HEALTH_CHECK_TIMEOUT_SECONDS must be positive, HEALTH_BROKER_CACHE_SECONDS at least 0")
