"""Property-based requests generated from our own OpenAPI schema: no operation answers 5xx (docs/testing.md)."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from agency.wsgi import application

schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", application)

pytestmark = pytest.mark.single_pass


@pytest.fixture
def operator_key(issue_key):
    return issue_key("operator")


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@pytest.mark.django_db
def test_it_never_answers_5xx(case, operator_key):
    case.call_and_validate(headers={"Authorization": f"Bearer {operator_key}"}, checks=[not_a_server_error])
