"""Rate limits for /graphql/: requests per API token and per client address, counted in
PostgreSQL (table ``rate_limit_window``), so every server process and every server shares
one count without another service.

Fixed windows of ``RATE_LIMIT_WINDOW_SECONDS``. Each process counts its requests in
memory and adds them to PostgreSQL at most every ``FLUSH_SECONDS`` per key (one upsert
for all the keys due), reading back the shared count; a request is refused when the
shared count plus this process's unsent requests pass the limit, with the seconds until
the window ends as the retry hint. Counting every request in PostgreSQL would make all
the requests of one token queue on its counter row. The price: other processes' last
``FLUSH_SECONDS`` of requests are not seen yet, so a limit can be passed by at most that
much traffic per other process; one process alone counts exactly.

The token key is a digest of the secret as sent (so unknown and revoked tokens are
limited too, without a lookup); the address is the client's, behind trusted proxies
(core/client_ip.py). Windows that have passed are deleted by the first flush of a process
after each window.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from dataclasses import dataclass
from typing import Final

from django.conf import settings
from django.db import connection

FLUSH_SECONDS: Final = 0.5
_ADD = """
INSERT INTO rate_limit_window (key, window_start, hits)
SELECT key, %s, hits FROM unnest(%s::text[], %s::int[]) AS t(key, hits)
ON CONFLICT (key, window_start) DO UPDATE SET hits = rate_limit_window.hits + EXCLUDED.hits
RETURNING key, hits
"""
# Keys of past windows are forgotten once this many are held.
_MAX_KEYS: Final = 10_000


@dataclass
class _Count:
    """One key's count in the current window, as this process knows it."""

    window_start: int
    shared: int = 0  # the count in PostgreSQL when this process last added to it
    pending: int = 0  # this process's requests not added yet
    flushed_at: float = -math.inf


_counts: dict[str, _Count] = {}
_lock = threading.Lock()  # requests count from several threads
_last_cleanup = 0


@dataclass(frozen=True)
class RateLimited(Exception):
    """Too many requests for ``scope`` ("token" or "address"); retry after that many
    seconds."""

    scope: str
    limit: int
    retry_after: int


def token_key(secret: str) -> str:
    return "t:" + hashlib.sha256(secret.encode()).hexdigest()[:40]


def address_key(address: str) -> str:
    return "i:" + address


def rate_limit_hit(*, token_secret: str | None, address: str | None) -> None:
    """Count one request; RateLimited when it is over a limit. A limit of 0 is none."""
    limits = {}
    if token_secret is not None and settings.RATE_LIMIT_PER_TOKEN:
        limits[token_key(token_secret)] = ("token", settings.RATE_LIMIT_PER_TOKEN)
    if address is not None and settings.RATE_LIMIT_PER_ADDRESS:
        limits[address_key(address)] = ("address", settings.RATE_LIMIT_PER_ADDRESS)
    if not limits:
        return
    window = settings.RATE_LIMIT_WINDOW_SECONDS
    now = time.time()
    start = int(now // window * window)
    due: list[tuple[str, int]] = []
    with _lock:
        if len(_counts) > _MAX_KEYS:
            for key in [k for k, c in _counts.items() if c.window_start < start]:
                del _counts[key]
        for key in limits:
            count = _counts.get(key)
            if count is None or count.window_start != start:
                count = _counts[key] = _Count(start)
            count.pending += 1
            if now - count.flushed_at >= FLUSH_SECONDS:
                due.append((key, count.pending))
                count.pending, count.flushed_at = 0, now
    if due:
        _add(start, due)
    with _lock:
        for key, (scope, limit) in limits.items():
            count = _counts[key]
            if count.window_start == start and count.shared + count.pending > limit:
                retry_after = max(1, math.ceil(start + window - now))
                raise RateLimited(scope=scope, limit=limit, retry_after=retry_after)


def _add(start: int, hits: list[tuple[str, int]]) -> None:
    """Add this process's unsent requests to PostgreSQL and read back the shared counts."""
    global _last_cleanup
    with connection.cursor() as cursor:
        if start > _last_cleanup:
            _last_cleanup = start
            cursor.execute("DELETE FROM rate_limit_window WHERE window_start < %s", [start])
        cursor.execute(_ADD, [start, [k for k, _ in hits], [n for _, n in hits]])
        shared = cursor.fetchall()
    with _lock:
        for key, total in shared:
            count = _counts.get(key)
            if count is not None and count.window_start == start:
                count.shared = total
