"""Which URLs a notification channel may post to (docs/escalations.md).

Whoever can edit a channel chooses where the relay sends HTTP requests from
inside our network. So a target must be https (plain http only where
`NOTIFY_ALLOW_HTTP_TARGETS` says so, e.g. development) and must not reach
loopback, link-local (cloud metadata), private or other reserved addresses
unless `NOTIFY_ALLOW_PRIVATE_TARGETS` allows them (tests and the demo talk to
local servers). The admin form checks the URL as typed; the relay checks it
again, with the host resolved, just before each send, because a name can
start pointing elsewhere after the channel was saved.
"""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


def target_problem(url: str, *, resolve: bool = True) -> str:
    """Why `url` may not be posted to ("" when it may). `resolve` looks the host name up too."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "Not a valid URL."
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "An http(s) URL with a host is needed."
    if parts.scheme == "http" and not settings.NOTIFY_ALLOW_HTTP_TARGETS:
        return "Only https URLs are allowed here."
    if parts.username or parts.password:
        return "Put credentials in the channel's secret variable, not in the URL."
    if settings.NOTIFY_ALLOW_PRIVATE_TARGETS:
        return ""
    host = parts.hostname
    if host == "localhost" or host.endswith(".localhost"):
        return "Loopback addresses are not allowed."
    addresses = _literal(host)
    if addresses is None and resolve:
        try:
            infos = socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP)
        except OSError:
            return f"The host {host!r} cannot be resolved."
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for address in addresses or []:
        if not address.is_global:
            return f"{host} is a private, loopback or reserved address; such targets are not allowed."
    return ""


def _literal(host: str) -> list | None:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        return None
