"""Database helpers shared by the embedded engine, the serve command and long-running
commands."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection, connections


def close_all_connections() -> None:
    """Close every open connection of this process, and its pool (PostgreSQL backends)."""
    for opened in connections.all(initialized_only=True):
        opened.close()
        close_pool = getattr(opened, "close_pool", None)  # absent without pooling support
        if close_pool is not None:
            close_pool()


@contextmanager
def without_statement_timeout() -> Iterator[None]:
    """Lift ``DB_STATEMENT_TIMEOUT_MS`` on this thread's connection, for work that is
    meant to take long (an import, a migration); restored afterwards."""
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")
    try:
        yield
    finally:
        if connection.connection is not None:
            with connection.cursor() as cursor:
                cursor.execute("RESET statement_timeout")


def lift_statement_timeout(**kwargs: Any) -> None:
    """A ``pre_migrate`` receiver: migrations may build indexes on large tables. The
    command's process ends after it, so the setting is not restored."""
    using = kwargs.get("using", "default")
    with connections[using].cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")
