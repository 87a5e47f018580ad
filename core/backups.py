"""Backups of the whole database with PostgreSQL's own tools: ``pg_dump`` in its custom
format, and ``pg_restore`` into a new, empty database (``manage.py backup_db`` and
``restore_db``; ``make backup`` / ``make restore``).

The tools come from the pip-installed PostgreSQL (the embedded server's), version 16,
which dumps servers from 9.2 on; ``PG_BIN_DIR`` names another ``bin`` directory. The
connection goes through libpq's environment variables, so a password never appears on a
command line. A restore recreates the append-only trigger after the data, and the
rollups come back as they were, so totals stay exact without recounting.

Both run as the database's owner (the ``owner`` connection, core/roles.py): the dump
needs every table, and the restored objects belong to whoever restores them. A restore
then grants the application's role its privileges in the new database, as ``migrate``
does.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import psycopg
from django.db import connections

from core.embedded_postgres import binaries_dir
from core.roles import OWNER_ALIAS, grant_app_role


class BackupError(RuntimeError):
    pass


def _tool(name: str) -> str:
    directory = os.environ.get("PG_BIN_DIR") or str(binaries_dir())
    path = Path(directory) / name
    if not path.exists():
        raise BackupError(f"{path} does not exist (set PG_BIN_DIR to PostgreSQL's bin directory)")
    return str(path)


def _libpq_environment(
    settings_dict: dict[str, Any], database: str | None = None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    values = {
        "PGHOST": settings_dict.get("HOST"),
        "PGPORT": settings_dict.get("PORT"),
        "PGUSER": settings_dict.get("USER"),
        "PGPASSWORD": settings_dict.get("PASSWORD"),
        "PGDATABASE": database or settings_dict.get("NAME"),
        "PGSSLMODE": (settings_dict.get("OPTIONS") or {}).get("sslmode"),
    }
    env.update({k: str(v) for k, v in values.items() if v not in (None, "")})
    return env


def _run(command: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise BackupError(
            f"{Path(command[0]).name} failed ({result.returncode}): "
            f"{(result.stderr or result.stdout).strip()[-2000:]}"
        )


def database_backup(path: Path, *, alias: str = OWNER_ALIAS) -> None:
    """Dump the whole database to ``path`` (custom format, compressed)."""
    settings_dict = connections[alias].settings_dict
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    _run(
        [_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", f"--file={partial}"],
        _libpq_environment(settings_dict),
    )
    partial.replace(path)  # a file at ``path`` is always a complete dump


def database_restore(path: Path, database: str, *, alias: str = OWNER_ALIAS) -> None:
    """Create ``database`` on the same server and restore ``path`` into it. Refuses a
    database that exists already: a restore never writes over data."""
    if not path.is_file():
        raise BackupError(f"{path}: no such file")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", database):
        raise BackupError(f"{database!r}: use letters, digits and _ for the new database's name")
    settings_dict = connections[alias].settings_dict
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database])
        if cursor.fetchone() is not None:
            raise BackupError(
                f"database {database!r} exists already; restore into a new name, check it, "
                "then point DATABASE_URL at it"
            )
        cursor.execute(f'CREATE DATABASE "{database}"')
    _run(
        [_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
         f"--dbname={database}", str(path)],
        _libpq_environment(settings_dict, database),
    )  # fmt: skip
    params = {**libpq_parameters(alias), "dbname": database}
    with psycopg.connect(**params, autocommit=True) as restored, restored.transaction():
        grant_app_role(
            restored.execute,
            lambda: str(restored.execute("SELECT current_schema()").fetchone()[0]),  # type: ignore[index]
        )


def libpq_parameters(alias: str) -> dict[str, Any]:
    """Connection parameters for a plain psycopg connection like Django's ``alias``."""
    params = connections[alias].get_connection_params()
    for django_only in ("cursor_factory", "context", "prepare_threshold", "pool"):
        params.pop(django_only, None)
    return params
