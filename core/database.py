"""Database helpers shared by the embedded engine and the serve command."""

from __future__ import annotations

from django.db import connections


def close_all_connections() -> None:
    """Close every open connection of this process, and its pool (PostgreSQL backends)."""
    for connection in connections.all(initialized_only=True):
        connection.close()
        close_pool = getattr(connection, "close_pool", None)  # absent without pooling support
        if close_pool is not None:
            close_pool()
