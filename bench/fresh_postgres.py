"""A PostgreSQL database of a benchmark's own, made fresh, with Django set up on it and migrated."""

import os

SERVER = "postgres://postgres@127.0.0.1:5432"


def django_on_fresh_postgres(database: str, **env: str) -> str:
    """Drop and create `database` on the local server, point Django at it (plus `env`), migrate.
    Returns the database's URL."""
    import psycopg

    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {database}")
        conn.execute(f"CREATE DATABASE {database}")
    url = f"{SERVER}/{database}"
    os.environ.update(AGENCY_DOTENV="false", DATABASE_URL=url, LOG_LEVEL="WARNING",
                      DJANGO_SETTINGS_MODULE="agency.settings", **env)  # fmt: skip
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    return url


def database_copy(source: str, database: str) -> str:
    """Drop `database` and make it again as a copy of `source`, to which nobody may be connected.
    Returns the copy's URL."""
    import psycopg

    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {database}")
        conn.execute(f"CREATE DATABASE {database} TEMPLATE {source}")
    return f"{SERVER}/{database}"
