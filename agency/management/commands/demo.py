import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db.models import Count
from django.utils import timezone

from agency.console.selectors import money_by_day, money_total
from agency.demo import DEMO_CLIENT, demo_challenger_seed, demo_channel_seed, demo_marketplace_seed, demo_tasks_seed
from agency.models import ApiKey, Task
from agency.money import dollars
from agency.services.api_keys import api_key_create
from arena.models import Competition, PairStanding
from bids.models import Bid, Posting
from escalations.models import Escalation, Notification
from tracing.commands import TracedCommand
from tracing.context import current_trace_id

OPERATOR_USERNAME = "operator"
DEMO_KEY_NAME = "demo integration"


class Command(TracedCommand):
    help = (
        "Set up and show the agency on this machine: migrate, create an operator login, seed demo data, "
        "run one agency cycle, print a summary, then serve the admin."
    )

    def add_arguments(self, parser):
        parser.add_argument("--no-serve", action="store_true", help="Stop after the summary.")
        parser.add_argument(
            "--addrport",
            default="127.0.0.1:8000",
            help="Where to serve the admin; links in e-mails point here unless PUBLIC_BASE_URL is set.",
        )
        parser.add_argument("--force", action="store_true", help="Run even with DJANGO_DEBUG=false.")
        parser.add_argument(
            "--arena-share",
            type=float,
            default=1.0,
            help="Share of the demo's tasks that compete in the arena (default 1: all of them; "
            "high-value tasks always compete).",
        )

    def handle(self, *args, no_serve: bool, addrport: str, force: bool, arena_share: float, **options):
        if not settings.DEBUG and not force:
            raise CommandError(
                "demo seeds data and resets the operator's password: it is for development "
                "(DJANGO_DEBUG=true). Use --force to run it against this database anyway."
            )
        if not 0 <= arena_share <= 1:
            raise CommandError("--arena-share must be within 0..1")
        settings.ARENA_SAMPLE_RATE = arena_share  # for this run's tasks only; the setting stays as configured
        if not os.environ.get("PUBLIC_BASE_URL"):
            # E-mailed links (escalations, deliveries) must open where this demo serves.
            settings.PUBLIC_BASE_URL = public_base_url(addrport)
        self.stdout.write("1. Migrating the database…")
        call_command("migrate", interactive=False, verbosity=0)
        if settings.AGENCY_MODEL_BASE_URL:  # a model named in the environment (docs/gateway.md)
            call_command("gateway_configure", stdout=self.stdout, stderr=self.stderr)
        login = self._operator()
        key_line = self._demo_key()
        channel = demo_channel_seed()  # before the tasks: an escalation tells the operators at once
        marketplace = demo_marketplace_seed()
        challenger = demo_challenger_seed()
        seeded = demo_tasks_seed()
        self.stdout.write(
            f"   {len(seeded)} demo task(s) created (prepaid, with sample inputs); without a broker each was "
            f"worked as soon as it was paid, in the arena against the {challenger.name} profile."
        )
        self.stdout.write(f"3. Working the paid tasks left (escalations reach the operators by {channel.kind})…")
        self.stdout.flush()
        # Without a broker each task was worked as soon as it was paid; this finds what is left.
        call_command("process_tasks", stdout=self.stdout, stderr=self.stderr)
        self.stdout.write(
            f"4. Running one agency cycle (it scans the {marketplace.slug} marketplace in training mode)…"
        )
        call_command("run_agency", stdout=self.stdout, stderr=self.stderr)
        self._summary(login, key_line)
        if not no_serve:
            call_command("runserver", addrport, use_reloader=False)

    def _operator(self) -> str:
        """Create the operator login on the first run; later runs leave its password alone.

        Returns how to log in: the password, printed this once, or where to reset it.
        """
        self.stdout.write("2. Seeding the operator login and demo data…")
        users = get_user_model().objects
        if users.filter(username=OPERATOR_USERNAME).exists():
            return (
                f"{OPERATOR_USERNAME} (password printed by the first demo run; to set a new one: "
                f".venv/bin/python manage.py changepassword {OPERATOR_USERNAME})"
            )
        password = secrets.token_urlsafe(12)
        users.create_superuser(username=OPERATOR_USERNAME, email="", password=password)
        return f"{OPERATOR_USERNAME} / {password}  (shown once; keep it)"

    def _demo_key(self) -> str:
        if ApiKey.objects.filter(name=DEMO_KEY_NAME, revoked_at__isnull=True).exists():
            return "unchanged (already created by an earlier demo run; create another with create_api_key)"
        _, raw_key = api_key_create(name=DEMO_KEY_NAME, scope=ApiKey.Scope.OPERATOR)
        return raw_key

    def _summary(self, login: str, key_line: str) -> None:
        base = settings.PUBLIC_BASE_URL.rstrip("/")
        self.stdout.write("")
        self.stdout.write(self.style.MIGRATE_HEADING("Agency demo ready"))
        self.stdout.write(f"  Admin:     {base}/admin/")
        self.stdout.write(f"  Login:     {login}")
        self.stdout.write(f"  API key:   {key_line}")
        self.stdout.write(f"  API docs:  {base}/api/v1/docs/")
        self.stdout.write("  Tasks:     " + (_by_status(Task.objects) or "none"))
        for task in Task.objects.filter(client__email=DEMO_CLIENT).prefetch_related("deliverables").order_by("pk"):
            files = ", ".join(d.name for d in task.deliverables.all())
            self.stdout.write(f"    #{task.pk} {task.title}: {task.status}" + (f" ({files})" if files else ""))
        decisions = _by_field(Posting.objects, "decision") or "none"
        self.stdout.write(f"  Postings:  {decisions}; bids: " + (_by_status(Bid.objects) or "none"))
        money = money_total(money_by_day(today=timezone.localdate(), days=30), label="30 days")
        self.stdout.write(
            f"  Money:     revenue {dollars(money.revenue)}, marketplace fees {dollars(money.fees, 4)}, "
            f"model calls {dollars(money.model_cost, 4)}, compute {dollars(money.compute_cost, 4)}, "
            f"profit {dollars(money.profit, 4)} (last 30 days, as the dashboard shows)"
        )
        self._arena()
        unresolved = Escalation.objects.exclude(status=Escalation.Status.RESOLVED).count()
        outbox = _by_status(Notification.objects) or "empty"
        self.stdout.write(f"  Inbox:     {unresolved} unresolved escalation(s); notifications: {outbox}")
        self.stdout.write(f"  Trace:     {current_trace_id()} (paste into the admin's trace search)")

    def _arena(self) -> None:
        """The arena's competitions and each pair's standing, as the leaderboard shows them."""
        self.stdout.write("  Arena:     competitions " + (_by_status(Competition.objects) or "none"))
        standings = PairStanding.objects.select_related("domain", "first", "second").order_by("domain__slug", "pk")
        for row in standings:
            interval = (
                f", win rate of {row.first.name} 95 % [{row.win_rate_low:.2f}, {row.win_rate_high:.2f}]"
                if row.win_rate_low is not None
                else ""
            )
            self.stdout.write(
                f"    {row.domain.slug}: {row.first.name} {row.first_wins} - {row.second_wins} {row.second.name} "
                f"(ties {row.ties}, none passed {row.none_passed}{interval}; {row.promotion})"
            )


def public_base_url(addrport: str) -> str:
    """The URL a browser on this machine opens for runserver's `addrport` ("8000", "0.0.0.0:8000", "[::1]:8000")."""
    host, _, port = addrport.rpartition(":")
    if host in ("", "0.0.0.0", "[::]"):  # noqa: S104 (listening everywhere; the browser uses loopback)
        host = "127.0.0.1"
    return f"http://{host}:{port}"


def _by_status(rows) -> str:
    """How many rows have each status, e.g. "1 escalated, 3 paid"."""
    return _by_field(rows, "status")


def _by_field(rows, field: str) -> str:
    counts = rows.values_list(field).annotate(n=Count("id")).order_by(field)
    return ", ".join(f"{n} {value}" for value, n in counts)
