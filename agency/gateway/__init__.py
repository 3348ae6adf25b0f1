"""The model gateway (docs/gateway.md): `gateway_complete` and what it raises.

`gateway_complete` is loaded on first use: the `openai` SDK takes about a second to import, and
most processes (the admin, `/healthz`, commands) read the gateway's tables without calling a model.
"""

from agency.gateway.errors import GatewayConfigError, GatewayError, GatewayOutputInvalid, GatewayUnavailable

__all__ = [
    "Completion",
    "GatewayConfigError",
    "GatewayError",
    "GatewayOutputInvalid",
    "GatewayUnavailable",
    "gateway_complete",
]


def __getattr__(name: str):
    if name in ("Completion", "gateway_complete"):
        from agency.gateway import services

        return getattr(services, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
