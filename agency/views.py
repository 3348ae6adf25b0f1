"""The client's delivery page and downloads (HTML, no login: the link's token is the key)."""

from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from agency.models import Deliverable
from agency.services.delivery import (
    DeliveryRefused,
    DeliveryThrottled,
    delivery_download_count,
    delivery_failure_record,
    delivery_link_open,
    delivery_throttle_check,
)

# Tokens travel in the URL: never let them leak through Referer, caches or frames.
_PRIVATE_HEADERS = {
    "Cache-Control": "no-store, private",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
}
_PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; frame-ancestors 'none'"
_FILE_CSP = "default-src 'none'; sandbox"


def client_address(request: HttpRequest) -> str:
    """The client's address: the socket peer, or the entry our own proxies appended to
    X-Forwarded-For (`API_NUM_PROXIES` of them), never one a client could write itself."""
    proxies = settings.REST_FRAMEWORK["NUM_PROXIES"]
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies and forwarded:
        addresses = [a.strip() for a in forwarded.split(",") if a.strip()]
        if addresses:
            return addresses[-min(proxies, len(addresses))]
    return request.META.get("REMOTE_ADDR", "")


def _private(response: HttpResponse, csp: str) -> HttpResponse:
    for name, value in _PRIVATE_HEADERS.items():
        response.headers[name] = value
    response.headers["Content-Security-Policy"] = csp
    return response


def _refusal(request: HttpRequest, task_id: int, exc: Exception) -> HttpResponse:
    if isinstance(exc, DeliveryRefused):
        try:
            delivery_failure_record(task_id=task_id, ip=client_address(request))
        except DeliveryThrottled as throttled:
            exc = throttled
    if isinstance(exc, DeliveryThrottled):
        response = render(request, "delivery/refused.html", {"throttled": True}, status=429)
        response.headers["Retry-After"] = str(exc.retry_after)
    else:
        # One answer for unknown, expired and used-up links: nothing to learn by probing.
        response = render(request, "delivery/refused.html", {"throttled": False}, status=404)
    return _private(response, _PAGE_CSP)


@require_GET
def delivery_page(request: HttpRequest, task_id: int, token: str) -> HttpResponse:
    try:
        delivery_throttle_check(ip=client_address(request))
        link = delivery_link_open(task_id=task_id, token=token)
    except (DeliveryRefused, DeliveryThrottled) as exc:
        return _refusal(request, task_id, exc)
    context = {
        "task": link.task,
        "link": link,
        "token": token,
        "deliverables": Deliverable.objects.filter(task_id=task_id).order_by("created_at", "id"),
        "remaining": link.max_downloads - link.downloads,
    }
    return _private(render(request, "delivery/page.html", context), _PAGE_CSP)


@require_GET
def delivery_download(request: HttpRequest, task_id: int, token: str, deliverable_id: int) -> HttpResponse:
    try:
        delivery_throttle_check(ip=client_address(request))
        link = delivery_link_open(task_id=task_id, token=token)
        deliverable = Deliverable.objects.filter(pk=deliverable_id, task_id=task_id).first()
        if deliverable is None:
            raise DeliveryRefused("No such file in this delivery.")
        delivery_download_count(link=link)
    except (DeliveryRefused, DeliveryThrottled) as exc:
        return _refusal(request, task_id, exc)
    return private_file(deliverable.file, name=deliverable.name, content_type=deliverable.content_type,
                        sha256=deliverable.sha256)  # fmt: skip


def private_file(file, *, name: str, content_type: str, sha256: str) -> FileResponse:
    """A stored file as a download that no browser renders on our origin (a client's or a model's
    bytes are never trusted): attachment, sandboxed, not cached. For the delivery links and the
    admin's staff-only downloads."""
    response = FileResponse(file.open("rb"), as_attachment=True, filename=name)
    response.headers["Content-Type"] = content_type or "application/octet-stream"
    if sha256:
        response.headers["Digest"] = f"sha-256={sha256}"
    return _private(response, _FILE_CSP)
