from django.core.management.base import CommandError

from agency.models import ApiKey
from agency.services.api_keys import api_key_create
from tracing.commands import TracedCommand


class Command(TracedCommand):
    help = "Create an API key. The key is printed alone on the last line and never shown again."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="Who or what will use the key.")
        parser.add_argument(
            "--scope",
            default=ApiKey.Scope.READ,
            choices=ApiKey.Scope.values,
            help="read < write < operator; each includes the ones before it (default: read).",
        )

    def handle(self, *args, name: str, scope: str, **options):
        try:
            api_key, raw_key = api_key_create(name=name, scope=scope)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Created API key #{api_key.pk} '{api_key.name}' with scope '{api_key.scope}'.")
        self.stdout.write("Store it now; only its hash is kept:")
        self.stdout.write(raw_key)
