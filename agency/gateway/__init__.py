"""The model gateway (docs/gateway.md): `gateway_complete` and what it raises."""

from agency.gateway.errors import GatewayConfigError, GatewayError, GatewayOutputInvalid, GatewayUnavailable
from agency.gateway.services import Completion, gateway_complete

__all__ = [
    "Completion",
    "GatewayConfigError",
    "GatewayError",
    "GatewayOutputInvalid",
    "GatewayUnavailable",
    "gateway_complete",
]
