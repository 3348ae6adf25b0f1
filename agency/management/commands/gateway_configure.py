from agency.gateway.configuration import DEFAULT_ROUTE, gateway_configure_from_settings
from tracing.commands import TracedCommand


class Command(TracedCommand):
    help = (
        "Write the model named by AGENCY_MODEL_BASE_URL / AGENCY_MODEL_NAME / AGENCY_MODEL_* into the database "
        f"as the first deployment of the '{DEFAULT_ROUTE}' route. Idempotent; does nothing when they are unset."
    )

    def handle(self, *args, **options):
        deployment = gateway_configure_from_settings()
        if deployment is None:
            self.stdout.write("No model configured (AGENCY_MODEL_BASE_URL is empty): the baseline agent only.")
            return
        priced = "priced" if deployment.is_priced else "NOT PRICED: calls will refuse to run"
        self.stdout.write(f"Model {deployment} is the primary of route '{DEFAULT_ROUTE}' ({priced}).")
