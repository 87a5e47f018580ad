"""When the database is slow or gone, clients get coded errors, never a 500 or a hang, and
the server recovers by itself. Against real uvicorn processes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
from django.db import connections, transaction

from audit.events import AuditEventType as E
from audit.services import audit_log_record
from core.models import User
from core.roles import OWNER_ALIAS
from core.services import api_token_create
from tests.graphql_api.conftest import serving_test_database
from tests.graphql_api.test_live_server import call
from tests.support import TRANSACTIONAL, free_port, start_serve, stop_serve

pytestmark = TRANSACTIONAL

PAGE = json.dumps({"query": "{ auditLogs(first: 5) { totalCount edges { node { event } } } }"})
TIMEOUT_MS = 300


@pytest.fixture(scope="module")
def impatient_server(django_db_setup: None) -> Iterator[str]:
    with serving_test_database(DB_STATEMENT_TIMEOUT_MS=str(TIMEOUT_MS)) as url:
        yield url


def test_a_statement_over_the_timeout_is_a_timeout_error_and_the_server_recovers(
    impatient_server: str, admin: User
) -> None:
    assert admin.organization is not None
    audit_log_record(organization=admin.organization, event=E.USER_LOGIN, actor=admin, ip=None)
    token = api_token_create(user=admin)[1]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    locked, release = threading.Event(), threading.Event()

    def hold_the_table() -> None:
        try:
            owner = connections[OWNER_ALIAS]  # the application's role may not lock it so
            with transaction.atomic(using=OWNER_ALIAS), owner.cursor() as cursor:
                cursor.execute("LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE")
                locked.set()
                assert release.wait(30)
        finally:
            owner.close()

    holder = threading.Thread(target=hold_the_table)
    holder.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        status, body = call(impatient_server, PAGE.encode(), headers)
        waited = time.monotonic() - started
    finally:
        release.set()
        holder.join(10)
    assert status == 200
    assert [e["extensions"]["code"] for e in body["errors"]] == ["TIMEOUT"]
    assert "audit_log" not in json.dumps(body) and "cancel" not in json.dumps(body).lower()
    assert TIMEOUT_MS / 1000 <= waited < 5
    # The same server, its pooled connections included, answers normally afterwards.
    for _ in range(5):
        status, body = call(impatient_server, PAGE.encode(), headers)
        assert status == 200 and "errors" not in body, body


@pytest.mark.parametrize(
    ("rate_limits", "status_code"),
    [
        # The rate limiter's count is the first statement: it fails before the operation.
        ("on", 503),
        # Without it, the token lookup fails inside the operation: a GraphQL error.
        ("off", 200),
    ],
)
def test_without_a_database_every_call_is_service_unavailable(
    db: None, rate_limits: str, status_code: int
) -> None:
    port = free_port()
    nowhere = f"postgres://postgres@127.0.0.1:{free_port()}/auditlog"
    env = {"DATABASE_URL": nowhere, "DB_POOL_TIMEOUT": "1"}
    if rate_limits == "off":
        env |= {"RATE_LIMIT_PER_TOKEN": "0", "RATE_LIMIT_PER_ADDRESS": "0"}
    server = start_serve(port, env)
    try:
        url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": "Bearer alog_not-checked-without-a-database"}
        for body in (
            PAGE,
            json.dumps(
                {
                    "query": "mutation { recordAuditEvents(events: []) { events { id } } }",
                }
            ),
        ):
            started = time.monotonic()
            status, reply = call(
                url, body.encode(), {**headers, "Content-Type": "application/json"}
            )
            assert time.monotonic() - started < 10
            assert status == status_code
            assert [e["extensions"]["code"] for e in reply["errors"]] == ["SERVICE_UNAVAILABLE"]
            text = json.dumps(reply)
            assert "127.0.0.1" not in text and "Traceback" not in text and "psycopg" not in text
        if rate_limits == "on":  # a WebSocket handshake is counted first, too
            from websockets.exceptions import InvalidStatus

            from tests.support import WebSocketSubscriber

            with pytest.raises(InvalidStatus) as refused:
                WebSocketSubscriber(url, "subscription { auditLogCreated { cursor } }")
            assert refused.value.response.status_code == 503
            body = json.loads(refused.value.response.body or b"{}")
            assert body["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    finally:
        stop_serve(server)
