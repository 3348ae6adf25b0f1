"""agency.E002: a constraint the database would not hold stops `migrate` and `check --database`."""

import pytest
from django.core.checks import Tags, run_checks
from django.db import IntegrityError, connection, models
from django.db.models import Deferrable, Q
from django.db.models.functions import Lower
from django.test.utils import isolate_apps

# Each kind of constraint with rows that break it: the database enforces it iff inserting them fails.
CONSTRAINTS = {
    "unique with a condition": (
        models.UniqueConstraint(fields=["number"], condition=Q(flag=True), name="probe_partial"),
        [{"number": 1, "flag": True}, {"number": 1, "flag": True}],
    ),
    "unique on an expression": (
        models.UniqueConstraint(Lower("name"), name="probe_lower_name"),
        [{"name": "Ann"}, {"name": "ann"}],
    ),
    "unique with included columns": (
        models.UniqueConstraint(fields=["number"], include=["name"], name="probe_covering"),
        [{"number": 1}, {"number": 1}],
    ),
    "deferrable unique": (
        models.UniqueConstraint(fields=["number"], deferrable=Deferrable.IMMEDIATE, name="probe_deferrable"),
        [{"number": 1}, {"number": 1}],
    ),
    "unique with NULLs not distinct": (
        models.UniqueConstraint(fields=["number"], nulls_distinct=False, name="probe_nulls"),
        [{"number": None}, {"number": None}],
    ),
    "check": (models.CheckConstraint(condition=Q(number__gte=0), name="probe_check"), [{"number": -1}]),
}


def _enforced(model, rows: list[dict]) -> bool:
    """Create the model's table for real and see whether the database refuses the rows."""
    with connection.schema_editor() as editor:
        editor.create_model(model)
    try:
        for row in rows:
            model.objects.create(**row)
    except IntegrityError:
        return True
    finally:
        with connection.schema_editor() as editor:
            editor.delete_model(model)
    return False


@pytest.mark.django_db(transaction=True)  # tables are created and dropped (DDL commits on MariaDB)
@pytest.mark.parametrize("kind", CONSTRAINTS)
def test_it_fails_exactly_when_this_database_would_not_hold_the_constraint(kind):
    constraint, rows = CONSTRAINTS[kind]
    with isolate_apps("tests") as isolated:  # a registry of its own: the probe is no model of ours

        class Probe(models.Model):  # noqa: DJ008 (a probe table, never shown)
            number = models.IntegerField(null=True)
            flag = models.BooleanField(default=False)
            name = models.CharField(max_length=20, default="")

            class Meta:
                app_label = "tests"
                db_table = f"tests_{constraint.name}"
                constraints = [constraint]

        issues = run_checks([isolated.get_app_config("tests")], tags=[Tags.database], databases=["default"])
        enforced = _enforced(Probe, rows)
    assert [issue.id for issue in issues if issue.id.startswith("agency.")] == ([] if enforced else ["agency.E002"])


@pytest.mark.django_db
def test_every_constraint_of_our_models_holds_on_this_database():
    issues = run_checks(tags=[Tags.database], databases=["default"])
    assert [issue for issue in issues if issue.id == "agency.E002"] == []
