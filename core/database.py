"""Database helpers shared by the embedded engine, the serve command and long-running
commands."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connection, connections

T = TypeVar("T")


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


async def run_outside_request(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run a function that uses the ORM from code that lives outside Django's request cycle
    (a WebSocket operation, a stream open for hours), with a connection taken for this
    call only. Django returns a request's connection to the pool when the request ends;
    nothing would return this one, and after a database restart it would stay broken."""

    def call() -> T:
        close_old_connections()
        try:
            return function(*args, **kwargs)
        finally:
            close_old_connections()

    return await sync_to_async(call)()


def is_transaction_conflict(error: BaseException | None) -> bool:
    """Whether ``error`` (Django's, or the driver's it wraps) rolled a transaction back
    because of concurrent ones: SQLSTATE class 40, a deadlock or a serialization failure.
    The database is fine; the same work retried succeeds."""
    import psycopg

    for candidate in (error, error.__cause__ if error is not None else None):
        if isinstance(candidate, psycopg.Error) and (candidate.sqlstate or "").startswith("40"):
            return True
    return False
