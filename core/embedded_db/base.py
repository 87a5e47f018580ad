"""PostgreSQL backend that starts the embedded server on first connection."""

from __future__ import annotations

import atexit
from typing import Any

from django.db import connections
from django.db.backends.postgresql import base

from core.embedded_postgres import embedded_postgres


def _close_all_connections() -> None:
    # Runs before the server is stopped at exit (atexit is last-in, first-out), so pooled
    # connections end cleanly instead of being cut off by the shutdown.
    for connection in connections.all(initialized_only=True):
        connection.close()
        close_pool = getattr(connection, "close_pool", None)  # PostgreSQL backends only
        if close_pool is not None:
            close_pool()


class DatabaseWrapper(base.DatabaseWrapper):
    _started = False

    def get_connection_params(self) -> dict[str, Any]:
        if not DatabaseWrapper._started:
            embedded_postgres().ensure_running()
            atexit.register(_close_all_connections)
            DatabaseWrapper._started = True
        return super().get_connection_params()
