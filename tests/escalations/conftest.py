"""Fixtures of the escalations tests."""

import pytest
from aiosmtpd.controller import Controller

from tests.escalations import fakes
from tests.escalations.factories import ChannelFactory
from tests.processes import free_port
from tests.tracing.http_server import RecordingServer


class _Inbox:
    """aiosmtpd handler: keeps accepted messages; refuses recipients at refused.example for good
    and greylists those at greylist.example (a temporary 4xx answer)."""

    def __init__(self):
        self.messages = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.endswith("@refused.example"):
            return "550 5.1.1 No such user here"
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


@pytest.fixture
def signed(monkeypatch):
    """Webhook channels pointing at a local receiver that checks signatures, each with its own secret
    variable (NOTIFY_SECRET_<SLUG>) holding the receiver's secret."""

    def make(server: RecordingServer, **fields):
        channel = ChannelFactory(kind="webhook", target=server.url, **fields)
        monkeypatch.setenv(channel.secret_variable, fakes.WEBHOOK_SECRET)
        return channel

    return make
