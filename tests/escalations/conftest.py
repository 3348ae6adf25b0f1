"""Fixtures of the escalations tests."""

import pytest

from tests.escalations import fakes
from tests.escalations.factories import ChannelFactory
from tests.tracing.http_server import RecordingServer


@pytest.fixture
def signed(monkeypatch):
    """Webhook channels pointing at a local receiver that checks signatures, each with its own secret
    variable (NOTIFY_SECRET_<SLUG>) holding the receiver's secret."""

    def make(server: RecordingServer, **fields):
        channel = ChannelFactory(kind="webhook", target=server.url, **fields)
        monkeypatch.setenv(channel.secret_variable, fakes.WEBHOOK_SECRET)
        return channel

    return make
