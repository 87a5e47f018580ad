"""PostgreSQL backend whose connection pool checks connections with core/pool.py."""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool

from core.pool import pooled_connection_check


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> Any:
        pool = super().pool  # type: ignore[misc]  # not in django-stubs
        # Django passes the check to the pool's constructor and offers no other way to
        # choose it; psycopg_pool keeps it as ``_check`` (psycopg-pool is pinned in
        # requirements.lock, and tests/core/test_pool.py fails if this stops holding).
        if pool is not None and pool._check is ConnectionPool.check_connection:
            pool._check = pooled_connection_check
        return pool
