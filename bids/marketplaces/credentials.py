"""A marketplace's API token, read from the environment variable its row names."""

import os

from bids.marketplaces.base import MarketplaceError
from bids.models import CREDENTIAL_ENV_PREFIX, Marketplace


def token_for(marketplace: Marketplace) -> str:
    """The token, or a `MarketplaceError` (not transient: waiting will not set a variable) naming what to set.

    The prefix is checked here as well as by the model's validator, because rows written without
    `full_clean` (the shell, a data migration) skip validators: no name may make us send, say, the
    database's password to a remote server.
    """
    name = marketplace.credential_env
    if not name:
        raise MarketplaceError(
            f"{marketplace.slug}: no API token: name a {CREDENTIAL_ENV_PREFIX}… variable in the marketplace's "
            f"credential_env and set {CREDENTIAL_ENV_PREFIX}… in the environment."
        )
    if not name.startswith(CREDENTIAL_ENV_PREFIX):
        raise MarketplaceError(
            f"{marketplace.slug}: credential_env {name!r} does not start with {CREDENTIAL_ENV_PREFIX}; "
            f"set {CREDENTIAL_ENV_PREFIX}… and name it instead."
        )
    token = os.environ.get(name, "").strip()
    if not token:
        raise MarketplaceError(f"{marketplace.slug}: no API token: set {name} in the environment.")
    return token
