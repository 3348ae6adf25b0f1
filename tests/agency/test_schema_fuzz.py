"""Property-based requests generated from our own OpenAPI schema: no operation answers 5xx (docs/testing.md).

Every operation of the schema, with an operator key, on both passes: PostgreSQL refuses input
SQLite takes (NUL characters in text, time zone offsets beyond ±15:59).
"""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from agency.wsgi import application

schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", application)


@pytest.fixture
def operator_key(issue_key):
    return issue_key("operator")


@pytest.fixture
def connection_kept():
    """Keep the test's database connection across requests, as Django's test client does.

    Schemathesis calls the WSGI application directly, whose request signals close a connection
    that is inside a transaction (the test's): on PostgreSQL every later query failed.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@pytest.mark.django_db
def test_it_never_answers_5xx(case, operator_key, connection_kept):
    case.call_and_validate(headers={"Authorization": f"Bearer {operator_key}"}, checks=[not_a_server_error])
