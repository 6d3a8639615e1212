"""Database connection settings from the environment (DATABASE_URL or KTRDR_DB_*)."""

from __future__ import annotations

import os
from collections.abc import Mapping


def conninfo_from_env(env: Mapping[str, str] | None = None) -> str:
    """A libpq connection string: DATABASE_URL when set, else KTRDR_DB_HOST/PORT/NAME/USER/
    PASSWORD (defaults: the compose service `db`, port 5432, database and user `ktrdr`)."""
    from psycopg.conninfo import make_conninfo

    env = os.environ if env is None else env
    if env.get("DATABASE_URL"):
        return env["DATABASE_URL"]
    return make_conninfo(
        host=env.get("KTRDR_DB_HOST", "db"),
        port=env.get("KTRDR_DB_PORT", "5432"),
        dbname=env.get("KTRDR_DB_NAME", "ktrdr"),
        user=env.get("KTRDR_DB_USER", "ktrdr"),
        password=env.get("KTRDR_DB_PASSWORD", ""),
        connect_timeout=env.get("KTRDR_DB_CONNECT_TIMEOUT", "5"),
    )
