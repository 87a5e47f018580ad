"""Pooled connections are checked without a round trip (core/pool.py), and a connection
whose session was ended is still never handed out."""

from __future__ import annotations

import json
import select
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from psycopg_pool import ConnectionPool

from core.models import User
from core.pool import pooled_connection_check
from core.services import api_token_create
from tests.graphql_api.conftest import serving_test_database
from tests.graphql_api.test_live_server import call
from tests.support import TRANSACTIONAL, database_url


def _connect() -> psycopg.Connection:
    return psycopg.connect(database_url(connection.settings_dict), autocommit=True)


def _sent(check: Callable[[psycopg.Connection], None], conn: psycopg.Connection) -> str:
    """What ``check(conn)`` exchanged with the server, as libpq traces it."""
    with tempfile.TemporaryDirectory() as directory:
        trace = Path(directory) / "trace"
        with trace.open("w") as out:
            conn.pgconn.trace(out.fileno())
            try:
                check(conn)
            finally:
                conn.pgconn.untrace()
        return trace.read_text()


@pytest.mark.django_db
def test_a_healthy_connection_is_handed_out_without_a_message() -> None:
    with _connect() as conn:
        conn.execute("SELECT 1").fetchall()
        assert _sent(pooled_connection_check, conn) == ""
        # The check it replaces asks the server, and the trace shows it.
        assert "Query" in _sent(ConnectionPool.check_connection, conn)
        assert conn.execute("SELECT 2").fetchone() == (2,)


@pytest.mark.django_db
def test_the_database_engine_installs_the_check_in_djangos_pool() -> None:
    connection.ensure_connection()
    pool = connection.pool  # type: ignore[attr-defined]  # not in django-stubs
    assert pool is not None and pool._check is pooled_connection_check


@pytest.mark.django_db
def test_a_connection_whose_session_was_ended_is_refused() -> None:
    with _connect() as idle, _connect() as other:
        other.execute("SELECT pg_terminate_backend(%s)", [idle.info.backend_pid])
        # The server's goodbye arrives on the idle connection's socket.
        assert select.select([idle.pgconn.socket], [], [], 10)[0]
        with pytest.raises(psycopg.OperationalError):
            pooled_connection_check(idle)


PAGE = {"query": "{ auditLogs(first: 2) { totalCount edges { node { event } } } }"}
# Introspection is not for the compiled path: this one goes through Django and Strawberry.
PAGE_THROUGH_DJANGO = {
    "query": "{ auditLogs(first: 2) { totalCount } __schema { queryType { name } } }"
}


@TRANSACTIONAL
def test_a_server_whose_pooled_sessions_were_ended_answers_the_next_requests(
    admin: User,
) -> None:
    token = api_token_create(user=admin)[1]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    # The server's sessions carry a name of their own (libpq reads PGAPPNAME), so that
    # only they are ended, not this process's.
    with serving_test_database(DB_POOL_MIN_SIZE="2", PGAPPNAME="pool-test-server") as url:
        for body in (PAGE, PAGE_THROUGH_DJANGO) * 3:
            status, reply = call(url, json.dumps(body).encode(), headers)
            assert status == 200 and "errors" not in reply, reply
        # Every session of the server, idle in its pool, is ended (as a database restart
        # or an administrator would end them).
        with _connect() as killer:
            ended = killer.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'pool-test-server'"
            ).fetchone()
        assert ended is not None and ended[0] >= 1
        time.sleep(0.5)  # the goodbyes reach the server's sockets
        for body in (PAGE, PAGE_THROUGH_DJANGO) * 5:
            status, reply = call(url, json.dumps(body).encode(), headers)
            assert status == 200 and "errors" not in reply, reply
