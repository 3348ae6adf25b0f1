"""One client per e-mail address, whatever its case (agency.services.tasks.client_for_email)."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from agency.models import Client
from agency.services.tasks import client_for_email
from tests.concurrency import run_at_once


@pytest.mark.django_db
def test_it_finds_the_client_whatever_the_case_and_spaces_of_the_address():
    first = client_for_email(email="Ann.Lee@Example.com", name="Ann")
    again = client_for_email(email=" ann.lee@EXAMPLE.COM ")
    assert again.pk == first.pk
    assert Client.objects.get().email == "Ann.Lee@Example.com"  # as the client first typed it
    assert client_for_email(email="ann.lee@example.org").pk != first.pk


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True)
def test_it_creates_one_client_when_eight_connections_bring_a_new_address_at_once():
    cases = ["new@example.com", "NEW@example.com", "New@Example.com", "new@EXAMPLE.COM"] * 2
    ids = run_at_once(8, lambda i: client_for_email(email=cases[i]).pk)
    assert len(ids) == 8
    assert len(set(ids)) == 1
    assert Client.objects.count() == 1


BEFORE, AFTER = ("agency", "0005_exact_keys"), ("agency", "0007_client_unique_email_normalized")


@pytest.fixture
def migrated_back():
    """The agency app at BEFORE (its historical models), migrated forward again afterwards."""
    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE])
    try:
        yield executor.loader.project_state([BEFORE]).apps
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def _client_with_tasks(apps, email: str, tasks: int, spent: int):
    domain = apps.get_model("agency", "Domain").objects.get_or_create(slug="legal", defaults={"base_rate_cents": 1})[0]
    client = apps.get_model("agency", "Client").objects.create(email=email, completed_tasks=tasks, spent_cents=spent)
    for n in range(tasks):
        apps.get_model("agency", "Task").objects.create(
            client=client, domain=domain, title=f"t{n}", base_price_cents=100, price_cents=100, payment="prepaid"
        )
    return client


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_existing_clients_their_normalized_address(migrated_back):
    ann = _client_with_tasks(migrated_back, "Ann@Example.com ", tasks=1, spent=100)
    bob = _client_with_tasks(migrated_back, "bob@example.org", tasks=0, spent=0)
    MigrationExecutor(connection).migrate([AFTER])
    assert dict(Client.objects.values_list("pk", "email_normalized")) == {
        ann.pk: "ann@example.com",
        bob.pk: "bob@example.org",
    }


@pytest.mark.django_db(transaction=True)
def test_the_migration_merges_clients_the_old_constraint_let_in_twice(migrated_back):
    if connection.features.supports_expression_indexes:
        pytest.skip("Lower(email) was enforced here: no two clients can share an address")
    first = _client_with_tasks(migrated_back, "Ann@Example.com", tasks=2, spent=300)
    _client_with_tasks(migrated_back, "ann@example.COM", tasks=1, spent=50)
    MigrationExecutor(connection).migrate([AFTER])
    merged = Client.objects.get()
    assert (merged.pk, merged.email) == (first.pk, "Ann@Example.com")
    assert (merged.completed_tasks, merged.spent_cents) == (3, 350)
    assert merged.tasks.count() == 3
