"""System checks for settings and schemas that start fine but behave badly."""

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.db import connections, models, router


@register(deploy=True)
def shared_cache_check(app_configs, **kwargs):
    backend = settings.CACHES["default"]["BACKEND"]
    if not settings.DEBUG and backend.endswith(("LocMemCache", "DummyCache")):
        return [
            Warning(
                "The default cache is private to each process, so API throttling budgets and other "
                "shared counters are per process.",
                hint="Set CACHE_URL=redis://… (or another shared cache) in production.",
                id="agency.W001",
            )
        ]
    return []


def constraint_needs(constraint: models.BaseConstraint, connection) -> list[str]:
    """What `constraint` needs that the database behind `connection` lacks (empty: it holds there).

    Django creates such a constraint nowhere and only warns (models.W027, W036…)
    when checks are run for that database, so a rule the model declares would
    silently not hold: MariaDB, for one, has no expression or partial indexes.
    """
    features = connection.features
    if type(constraint).__module__.startswith("django.contrib.postgres"):  # ExclusionConstraint and kin
        return [] if connection.vendor == "postgresql" else ["PostgreSQL"]
    if isinstance(constraint, models.CheckConstraint):
        return [] if features.supports_table_check_constraints else ["check constraints"]
    if not isinstance(constraint, models.UniqueConstraint):
        return []
    needs = {
        "unique constraints on expressions": constraint.expressions and not features.supports_expression_indexes,
        "unique constraints with a condition": constraint.condition is not None
        and not features.supports_partial_indexes,
        "unique constraints with included columns": constraint.include and not features.supports_covering_indexes,
        "deferrable unique constraints": constraint.deferrable is not None
        and not features.supports_deferrable_unique_constraints,
        "unique constraints with nulls_distinct": constraint.nulls_distinct is not None
        and not features.supports_nulls_distinct_unique_constraints,
    }
    return [need for need, lacking in needs.items() if lacking]


@register(Tags.database)
def constraints_supported_check(app_configs, databases=None, **kwargs):
    """Every constraint a model declares must hold on each database it is migrated to.

    A database check: it runs with `migrate` and `check --database`, which may
    connect (MariaDB's features depend on the server's version).
    """
    errors = []
    configs = app_configs if app_configs is not None else apps.get_app_configs()
    for alias in databases or []:
        connection = connections[alias]
        for model in (model for config in configs for model in config.get_models()):
            if not router.allow_migrate_model(alias, model):
                continue
            for constraint in model._meta.constraints:
                needs = constraint_needs(constraint, connection)
                if needs:
                    errors.append(
                        Error(
                            f"{constraint.name} would not hold on {connection.display_name} "
                            f"(database {alias!r}): it has no {', '.join(needs)}.",
                            hint="Express the rule with what every supported database has, such as a plain "
                            "unique constraint on a column the service fills in.",
                            obj=model,
                            id="agency.E002",
                        )
                    )
    return errors
