"""The health check of pooled database connections, without a round trip.

Every request takes a connection from the pool (psycopg_pool, core/settings.py) and gives
it back at its end. A connection broken while it sat in the pool (the database restarted,
or an administrator ended its session) must not be handed out: the request would fail.
psycopg_pool's own check (``ConnectionPool.check_connection``, what Django installs for
``CONN_HEALTH_CHECKS``) finds out by sending an empty query and waiting for the answer:
one round trip to PostgreSQL on every request, a third of a worker thread's samples
while it served pages of 50 under load (py-spy, docs/PERFORMANCE.md), against half for
the page's own statement.

A connection that sits idle in the pool receives nothing unless something happened to
it: when PostgreSQL ends a session (a shutdown, ``pg_terminate_backend``, a crash of the
server) it sends an error and closes the socket, and a closed socket reads as readable.
So ``pooled_connection_check`` looks first: a connection in a good state whose socket has
nothing to read is handed out as it is; any other is checked with the round trip, which
raises for a broken one (the pool then discards it and takes or makes another). What a
socket cannot show is a network path that died without a word (no FIN, no RST); a
statement on such a connection fails by its own timeouts, as it would on a connection
checked a moment before the path died.

core/postgresql (the database engine) installs it in Django's pool.
tests/core/test_pool.py holds it to both halves: no message sent for a healthy
connection, and a connection whose session was ended is refused, alone and through a
live server.
"""

from __future__ import annotations

import select
from typing import Any

from psycopg import pq
from psycopg_pool import ConnectionPool


def pooled_connection_check(connection: Any) -> None:
    """Return quietly if ``connection`` (a psycopg connection leaving the pool) is fit to
    use; raise if it is broken."""
    pgconn = connection.pgconn
    if pgconn.status != pq.ConnStatus.OK or (
        pgconn.transaction_status != pq.TransactionStatus.IDLE
    ):
        ConnectionPool.check_connection(connection)  # raises, or repairs autocommit
        return
    poller = select.poll()
    poller.register(pgconn.socket, select.POLLIN | select.POLLPRI)
    if poller.poll(0):  # something arrived, or the socket closed: ask the server
        ConnectionPool.check_connection(connection)
