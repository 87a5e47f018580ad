"""Rate limits for /graphql/: requests per API token and per client address, counted in
PostgreSQL (table ``rate_limit_window``), so every server process and every server shares
one count without another service.

Fixed windows of ``RATE_LIMIT_WINDOW_SECONDS``: each request adds one to the current
window of its keys in one statement (an upsert) and is refused when a count passes its
limit, with the seconds until the window ends as the retry hint. The token key is a digest
of the secret as sent (so unknown and revoked tokens are limited too, without a lookup);
the address is the client's, behind trusted proxies (core/client_ip.py). Windows that have
passed are deleted by the first request of a process after each window.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

_COUNT = """
INSERT INTO rate_limit_window (key, window_start, hits)
SELECT key, %s, 1 FROM unnest(%s::text[]) AS key
ON CONFLICT (key, window_start) DO UPDATE SET hits = rate_limit_window.hits + 1
RETURNING key, hits
"""
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
    global _last_cleanup
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
    with connection.cursor() as cursor:
        if start > _last_cleanup:
            _last_cleanup = start
            cursor.execute("DELETE FROM rate_limit_window WHERE window_start < %s", [start])
        cursor.execute(_COUNT, [start, list(limits)])
        counts = cursor.fetchall()
    for key, hits in counts:
        scope, limit = limits[key]
        if hits > limit:
            raise RateLimited(
                scope=scope, limit=limit, retry_after=max(1, math.ceil(start + window - now))
            )
