"""What `gateway_complete` raises (docs/gateway.md). Callers catch `GatewayError`."""


class GatewayError(Exception):
    """Base of every gateway failure."""


class GatewayConfigError(GatewayError):
    """The route or a deployment cannot be used as configured (no price, missing key, no route).
    Raised before any HTTP request."""


class GatewayUnavailable(GatewayError):
    """Every deployment of the route failed or had its breaker open. `attempts` names what happened
    to each deployment, for logs and the pipeline's retry decision."""

    def __init__(self, message: str, attempts: list[str]):
        super().__init__(message)
        self.attempts = attempts


class GatewayOutputInvalid(GatewayError):
    """The model answered, but not with JSON that validates against the caller's schema. The
    answer is never used, executed or evaluated: the caller fails closed."""

    def __init__(self, message: str, model_call_id: int | None = None):
        super().__init__(message)
        self.model_call_id = model_call_id
