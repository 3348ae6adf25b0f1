"""Model fields that mean the same on SQLite, PostgreSQL and MariaDB/MySQL."""

from django.db import models


class ExactCharField(models.CharField):
    """A CharField whose values compare character for character on every database.

    For keys, tokens, hashes and other systems' ids, where `evt_Ab` and
    `evt_aB` are two values, and for columns that hold an already normalised
    form. PostgreSQL and SQLite compare text exactly by default; MariaDB and
    MySQL use the database's default collation, usually case- and
    accent-insensitive and blind to trailing spaces, so a unique key there
    would refuse a legitimate value and a lookup would find someone else's
    row. On those the column gets a binary collation without padding.

    Django's `db_collation` would write one collation name into the migration
    for every database; this field picks it when the column is created, so
    migrations stay the same everywhere. The database must use utf8mb4 (the
    settings ask for it).
    """

    def db_parameters(self, connection):
        params = super().db_parameters(connection)
        if connection.vendor == "mysql" and not self.db_collation:
            params["collation"] = "utf8mb4_nopad_bin" if connection.mysql_is_mariadb else "utf8mb4_0900_bin"
        return params
