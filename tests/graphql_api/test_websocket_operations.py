"""Every operation on a WebSocket is judged as an HTTP request with the same credentials
would be at that moment: revocation, expiry, deactivation and demotion reach an open
connection (which is then closed with a coded reason), each operation counts against the
rate limits, and each gets its own memo (a total is never one of an earlier operation).
Against a real uvicorn process, with a graphql-transport-ws client that sends several
operations over one connection. The handshake's Origin must match the server's scheme.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from audit.events import AuditEventType as E
from audit.services import audit_log_record
from core.models import ApiToken, ApiTokenScope, Organization, User
from core.services import api_token_create, api_token_revoke, role_create, user_update
from tests.graphql_api.conftest import serving_test_database
from tests.support import TRANSACTIONAL

pytestmark = TRANSACTIONAL

RATE_LIMIT = 12
PAGE = "{ auditLogs(first: 1) { totalCount } }"
TYPES = "{ auditEventTypes { value } }"
RECORD = """
mutation { recordAuditEvents(events: [{idempotencyKey: "KEY", event: RESOURCE_CREATED,
  details: {resource: "vm-1"}}]) {
  events { created } } }
"""


@pytest.fixture(scope="module")
def server(django_db_setup: None) -> Iterator[str]:
    with serving_test_database(
        SECURE_COOKIES="0",
        AUDIT_STREAM_RECHECK_SECONDS="1",
        RATE_LIMIT_PER_TOKEN=str(RATE_LIMIT),
        RATE_LIMIT_PER_ADDRESS="100000",
    ) as url:
        yield url


class Connection:
    """One graphql-transport-ws connection on which operations are sent one by one."""

    def __init__(self, url: str, token: str | None, headers: dict[str, str] | None = None):
        from contextlib import ExitStack

        from websockets.sync.client import connect

        self._stack = ExitStack()
        self.socket = self._stack.enter_context(
            connect(
                url.replace("http://", "ws://") + "/graphql/",
                subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                additional_headers=headers or {},
                open_timeout=10,
            )
        )
        payload = {"Authorization": f"Bearer {token}"} if token else {}
        self.socket.send(json.dumps({"type": "connection_init", "payload": payload}))
        assert self.receive() == {"type": "connection_ack"}
        self.ids = iter(range(1, 10_000))

    def receive(self, timeout: float = 10) -> dict[str, Any]:
        while True:
            message: dict[str, Any] = json.loads(self.socket.recv(timeout=timeout))
            if message["type"] != "ping":
                return message
            self.socket.send(json.dumps({"type": "pong"}))

    def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The operation's result ({"errors": [...]} for an error message)."""
        operation = str(next(self.ids))
        payload = {"query": query, "variables": variables or {}}
        self.socket.send(json.dumps({"id": operation, "type": "subscribe", "payload": payload}))
        message = self.receive()
        assert message.get("id") == operation, message
        if message["type"] == "error":
            return {"errors": message["payload"]}
        assert message["type"] == "next", message
        assert self.receive() == {"id": operation, "type": "complete"}
        result: dict[str, Any] = message["payload"]
        return result

    def closed_with(self, timeout: float = 10) -> tuple[int, str]:
        """The close code and reason, once the server closes the connection."""
        from websockets.exceptions import ConnectionClosed

        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.receive(timeout=deadline - time.monotonic())
        except ConnectionClosed as closed:
            assert closed.rcvd is not None
            return closed.rcvd.code, closed.rcvd.reason
        raise AssertionError("the connection stayed open")

    def close(self) -> None:
        self._stack.close()


@pytest.fixture
def connect(server: str) -> Iterator[Any]:
    opened: list[Connection] = []

    def make(token: str | None, **headers: str) -> Connection:
        connection = Connection(server, token, headers)
        opened.append(connection)
        return connection

    yield make
    for connection in opened:
        connection.close()


def codes(result: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in result.get("errors", [])]


def writer_token(user: User) -> tuple[ApiToken, str]:
    scopes = (ApiTokenScope.READ, ApiTokenScope.AUDIT_WRITE)
    return api_token_create(user=user, name="ws", scopes=scopes)


def record(org: Organization | None) -> None:
    assert org is not None
    audit_log_record(organization=org, event=E.RESOURCE_CREATED, actor=None, ip=None)


# --- credentials that stop being valid ------------------------------------------------------


@pytest.mark.parametrize("operation", [PAGE, RECORD.replace("KEY", "after-revoke"), TYPES])
def test_a_revoked_token_is_refused_on_the_next_operation_and_the_connection_closed(
    connect: Any, admin: User, operation: str
) -> None:
    token, secret = writer_token(admin)
    connection = connect(secret)
    assert codes(connection.execute(PAGE)) == []
    api_token_revoke(token=token)
    assert codes(connection.execute(operation)) == ["UNAUTHENTICATED"]
    code, reason = connection.closed_with()
    assert code == 4401 and reason.startswith("UNAUTHENTICATED")


def test_an_idle_connection_is_closed_soon_after_its_token_is_revoked(
    connect: Any, admin: User
) -> None:
    token, secret = writer_token(admin)
    connection = connect(secret)
    assert codes(connection.execute(TYPES)) == []
    api_token_revoke(token=token)
    started = time.monotonic()
    code, reason = connection.closed_with(timeout=10)
    assert code == 4401 and reason.startswith("UNAUTHENTICATED")
    assert time.monotonic() - started < 5  # AUDIT_STREAM_RECHECK_SECONDS is 1 here


def test_an_expired_token_is_refused_and_the_connection_closed(connect: Any, admin: User) -> None:
    token, secret = api_token_create(user=admin, expires_at=timezone.now() + timedelta(hours=1))
    connection = connect(secret)
    assert codes(connection.execute(PAGE)) == []
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert codes(connection.execute(PAGE)) == ["UNAUTHENTICATED"]
    assert connection.closed_with()[0] == 4401


def test_a_deactivated_user_is_refused_and_the_connection_closed(connect: Any, admin: User) -> None:
    connection = connect(writer_token(admin)[1])
    assert codes(connection.execute(PAGE)) == []
    user_update(user=admin, is_active=False)
    assert codes(connection.execute(RECORD.replace("KEY", "deactivated"))) == ["UNAUTHENTICATED"]
    assert connection.closed_with()[0] == 4401


def test_a_demoted_administrator_is_refused_and_the_connection_closed(
    connect: Any, admin: User
) -> None:
    assert admin.organization is not None
    connection = connect(writer_token(admin)[1])
    assert codes(connection.execute(PAGE)) == []
    member_role = role_create(organization=admin.organization, name="Viewer")
    user_update(user=admin, role=member_role)
    assert codes(connection.execute(PAGE)) == ["FORBIDDEN"]
    code, reason = connection.closed_with()
    assert code == 4403 and reason.startswith("FORBIDDEN")


def test_an_organization_moved_to_the_free_plan_closes_its_admins_connections(
    connect: Any, admin: User
) -> None:
    assert admin.organization is not None
    connection = connect(writer_token(admin)[1])
    assert codes(connection.execute(PAGE)) == []
    Organization.objects.filter(pk=admin.organization.pk).update(plan="free")
    assert codes(connection.execute(PAGE)) == ["PAID_PLAN_REQUIRED"]
    code, reason = connection.closed_with()
    assert code == 4403 and reason.startswith("PAID_PLAN_REQUIRED")


def test_a_connection_of_a_caller_still_allowed_stays_open(connect: Any, admin: User) -> None:
    connection = connect(writer_token(admin)[1])
    for _ in range(3):
        assert codes(connection.execute(PAGE)) == []
        time.sleep(1.2)  # past the recheck period
    assert codes(connection.execute(PAGE)) == []


# --- rate limits and memo, per operation ----------------------------------------------------


def test_each_operation_counts_against_the_token_limit(connect: Any, admin: User) -> None:
    connection = connect(writer_token(admin)[1])
    results = [connection.execute(TYPES) for _ in range(RATE_LIMIT + 3)]
    refused = [r for r in results if codes(r) == ["RATE_LIMITED"]]
    # The token came in connection_init, so the handshake counted for the address only.
    assert [codes(r) for r in results[:RATE_LIMIT]] == [[]] * RATE_LIMIT
    assert len(refused) == 3
    assert refused[0]["errors"][0]["extensions"]["retryAfter"] >= 1
    # Refused operations leave the connection open.
    assert codes(connection.execute(TYPES)) == ["RATE_LIMITED"]


def test_totals_are_fresh_for_every_operation(connect: Any, admin: User) -> None:
    connection = connect(writer_token(admin)[1])
    first = connection.execute(PAGE)["data"]["auditLogs"]["totalCount"]
    record(admin.organization)
    second = connection.execute(PAGE)["data"]["auditLogs"]["totalCount"]
    assert second == first + 1


# --- the handshake's origin -----------------------------------------------------------------


def test_an_origin_of_another_scheme_is_refused(server: str, admin: User) -> None:
    from websockets.exceptions import InvalidStatus

    port = server.rsplit(":", 1)[1]
    with pytest.raises(InvalidStatus) as refused:
        Connection(server, writer_token(admin)[1], {"Origin": f"https://127.0.0.1:{port}"})
    assert refused.value.response.status_code == 403
    same = Connection(server, writer_token(admin)[1], {"Origin": f"http://127.0.0.1:{port}"})
    assert codes(same.execute(TYPES)) == []
    same.close()


# --- hostile messages -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        "[" * 100_000,
        '{"type": "subscribe", "id": "1", "payload": ' + "[" * 50_000 + "]" * 50_000 + "}",
        '{"type": "subscribe", "id": "1", "payload": {"query": "{ __typename }", '
        '"variables": {"n": ' + "9" * 5000 + "}}}",
        "null",
        '"x"',
        "\udcff",
    ],
    ids=["deep-array", "deep-payload", "long-integer", "null", "string", "surrogate"],
)
def test_a_message_that_is_not_the_protocol_closes_with_4400_and_the_server_lives_on(
    server: str, admin: User, message: str
) -> None:
    connection = Connection(server, writer_token(admin)[1])
    connection.socket.send(message.encode("utf-8", "surrogatepass").decode("utf-8", "replace"))
    code, _ = connection.closed_with()
    assert code == 4400
    fresh = Connection(server, writer_token(admin)[1])
    assert codes(fresh.execute(TYPES)) == []
    fresh.close()


def test_values_postgresql_cannot_store_are_bad_input_over_a_websocket_too(
    connect: Any, admin: User
) -> None:
    connection = connect(writer_token(admin)[1])
    for bad in [
        '{userEmail: "a\\u0000b"}',
        '{userEmail: "\\ud800"}',
        '{from: "2026-01-01T00:00:00+23:59"}',
    ]:
        result = connection.execute("{ auditLogs(first: 1, filter: " + bad + ") { totalCount } }")
        if "+23:59" in bad:
            assert codes(result) == []
        else:
            assert codes(result) == ["BAD_USER_INPUT"], result
    # A lone surrogate in a GraphQL string literal is a syntax error; in variables, the value
    # reaches the checks of recordAuditEvents.
    assert codes(connection.execute(RECORD.replace('"KEY"', '"\\ud800"'))) == ["BAD_USER_INPUT"]
    record = "mutation($e: [AuditEventInput!]!) { recordAuditEvents(events: $e) { events { id } } }"
    result = connection.execute(
        record, {"e": [{"idempotencyKey": "\ud800", "event": "USER_LOGIN"}]}
    )
    assert codes(result) == ["BAD_USER_INPUT"]
    assert result["errors"][0]["extensions"]["problems"][0]["field"] == "idempotencyKey"


def test_log_streams_are_managed_by_the_same_rules_over_a_websocket(
    connect: Any, admin: User, make_user: Any
) -> None:
    from core.models import AuditLogStream

    create = """mutation($i: AuditLogStreamInput!) {
      createAuditLogStream(input: $i) { secret stream { id } } }"""
    new = {"i": {"name": "ws", "url": "https://siem.example.com/in"}}
    read_only = api_token_create(user=admin, name="r", scopes=(ApiTokenScope.READ,))[1]
    manager = api_token_create(user=admin, name="m", scopes=(ApiTokenScope.STREAMS_MANAGE,))[1]
    assert admin.organization is not None
    member = make_user(admin.organization)
    member_token = api_token_create(user=member, scopes=(ApiTokenScope.STREAMS_MANAGE,))[1]
    assert codes(connect(read_only).execute(create, new)) == ["FORBIDDEN"]
    assert codes(connect(member_token).execute(create, new)) == ["FORBIDDEN"]
    bad = {"i": {"name": "ws", "url": "http://siem.example.com/in"}}
    assert codes(connect(manager).execute(create, bad)) == ["BAD_USER_INPUT"]
    assert AuditLogStream.objects.count() == 0
    created = connect(manager).execute(create, new)
    assert created["data"]["createAuditLogStream"]["secret"].startswith("whsec_")
    assert AuditLogStream.objects.filter(organization=admin.organization).count() == 1
