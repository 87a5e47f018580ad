"""auditLogCreated, the live stream, against real uvicorn processes and real clients: a
graphql-transport-ws WebSocket client and a GraphQL over SSE client.

Entries are recorded by this process and committed (``transaction=True``); the servers
read the same test database. Most subscriptions start ``after`` the cursor of a marker
entry, so they cannot miss what follows, however long the server takes to start them.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone
from strawberry import relay

from audit.events import AuditEventType as E
from audit.log_streams import LOG_STREAMS_APPLICATION
from audit.models import AuditLog
from audit.selectors import AuditLogPosition
from audit.services import AuditEntryDraft, audit_log_bulk_create, audit_log_record
from core.models import ApiTokenScope, Organization, User
from core.services import api_token_create, api_token_revoke
from graphql_api.cursors import cursor_encode
from tests.graphql_api.conftest import serving_test_database
from tests.support import TRANSACTIONAL, SSESubscriber, WebSocketSubscriber, valid_details

pytestmark = TRANSACTIONAL

BUFFER = 20
MAX_STREAMS = 3
SUBSCRIBE = """
subscription Follow($filter: AuditLogFilter, $after: String) {
  auditLogCreated(filter: $filter, after: $after) {
    cursor
    node { id event ip details time user { email name } }
  }
}
"""


def _serve(**env: str) -> Iterator[str]:
    with serving_test_database(
        SECURE_COOKIES="0",
        # Short, so that the tests of revocation and of slow consumers are quick.
        AUDIT_STREAM_RECHECK_SECONDS="1",
        AUDIT_STREAM_BUFFER=str(BUFFER),
        AUDIT_STREAM_MAX_PER_HOLDER=str(MAX_STREAMS),
        # Long, so that every delivery within a test's timeouts is driven by the
        # notifications (or the listener's reconnection), not by polling.
        AUDIT_STREAM_POLL_SECONDS="60",
        **env,
    ) as url:
        yield url


@pytest.fixture(scope="module")
def server(django_db_setup: None) -> Iterator[str]:
    yield from _serve()


def record(org: Organization | None, event: E = E.RESOURCE_CREATED, **fields: Any) -> AuditLog:
    assert org is not None
    fields.setdefault("actor", None)
    fields.setdefault("ip", None)
    return audit_log_record(organization=org, event=event, **fields)


@contextmanager
def following(
    url: str, token: str, org: Organization | None, **variables: Any
) -> Iterator[WebSocketSubscriber]:
    """A WebSocket subscriber of ``org``'s stream from a marker entry recorded now, so it
    cannot miss what follows, however long the server takes to start the stream."""
    marker = record(org)
    client = WebSocketSubscriber(
        url, SUBSCRIBE, {"after": stream_cursor(marker), **variables}, token=token
    )
    try:
        yield client
    finally:
        client.close()


def stream_cursor(entry: AuditLog) -> str:
    return cursor_encode(
        organization_id=entry.organization_id,
        position=AuditLogPosition.of(entry),
        stream_txid=entry.stream_txid,
    )


def edge_of(result: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in result, result
    edge: dict[str, Any] = result["data"]["auditLogCreated"]
    return edge


def node_id(entry: AuditLog) -> str:
    return relay.to_base64("AuditLog", entry.pk)


def received_ids(client: WebSocketSubscriber | SSESubscriber, count: int) -> list[str]:
    return [edge_of(client.next())["node"]["id"] for _ in range(count)]


def error_code(result: dict[str, Any]) -> str:
    (error,) = result["errors"]
    code: str = error["extensions"]["code"]
    return code


@pytest.fixture
def reader(admin: User) -> str:
    return api_token_create(user=admin, name="stream")[1]


@pytest.mark.parametrize("transport", [WebSocketSubscriber, SSESubscriber])
def test_a_new_entry_arrives_with_its_fields(
    transport: type[WebSocketSubscriber | SSESubscriber], server: str, admin: User, reader: str
) -> None:
    client = transport(server, SUBSCRIBE, token=reader)
    try:
        time.sleep(1)  # no cursor: the stream starts when the server has read the request
        entry = record(
            admin.organization,
            E.ROLE_UPDATED,
            actor=admin,
            ip="198.51.100.4",
            details={"role": "Auditor"},
        )
        edge = edge_of(client.next())
        assert edge["node"] == {
            "id": node_id(entry),
            "event": "ROLE_UPDATED",
            "ip": "198.51.100.4",
            "details": {"role": "Auditor"},
            "time": entry.time.isoformat(),
            "user": {"email": admin.email, "name": "Ada Admin"},
        }
        assert edge["cursor"] == stream_cursor(entry)
    finally:
        client.close()


@pytest.mark.parametrize("transport", [WebSocketSubscriber, SSESubscriber])
def test_a_filtered_stream_delivers_only_matching_entries(
    transport: type[WebSocketSubscriber | SSESubscriber],
    server: str,
    admin: User,
    reader: str,
    make_user: Callable[..., User],
) -> None:
    org = admin.organization
    other = make_user(org, email="someone.else@example.test")
    marker = record(org)
    client = transport(
        server,
        SUBSCRIBE,
        {
            "filter": {"eventTypes": ["ROLE_CREATED", "ROLE_DELETED"], "userEmail": "SOMEONE"},
            "after": stream_cursor(marker),
        },
        token=reader,
    )
    try:
        wanted = []
        for event, actor in [
            (E.ROLE_CREATED, other),
            (E.ROLE_CREATED, admin),
            (E.RESOURCE_CREATED, other),
            (E.ROLE_DELETED, other),
            (E.ROLE_DELETED, None),
        ]:
            entry = record(org, event, actor=actor)
            if actor is other and event != E.RESOURCE_CREATED:
                wanted.append(node_id(entry))
        assert received_ids(client, 2) == wanted
        if isinstance(client, WebSocketSubscriber):
            assert client.nothing_within(1.5)
    finally:
        client.close()


@pytest.mark.parametrize("transport", [WebSocketSubscriber, SSESubscriber])
def test_a_stream_filtered_by_address_words_and_details_delivers_only_matching_entries(
    transport: type[WebSocketSubscriber | SSESubscriber],
    server: str,
    admin: User,
    reader: str,
    other_paid_org: Organization,
) -> None:
    """The live stream tests ip, search and details in memory (audit/filters.py): the
    same entries as auditLogs would select, from its catch-up read and live alike."""
    org = admin.organization
    marker = record(org)
    details = valid_details(E.RESOURCE_CREATED)

    def entry(ip: str | None, note: str, resource: str, organization: Any = org) -> AuditLog:
        return record(
            organization,
            ip=ip,
            details={**details, "note": note, "target": {"name": resource, "tags": ["a", "b"]}},
        )

    early = entry("203.0.113.9", "Rebooted by ops", "vm-12")  # before the subscription
    client = transport(
        server,
        SUBSCRIBE,
        {
            "filter": {
                "ip": "::ffff:203.0.113.0/120",
                "search": "REBOOTED",
                "details": {"target": {"name": "vm-12", "tags": ["b"]}},
            },
            "after": stream_cursor(marker),
        },
        token=reader,
    )
    try:
        wanted = [node_id(early)]
        for ip, note, resource, organization, matches in [
            ("::ffff:203.0.113.77", "rebooted twice", "vm-12", org, True),  # stored unmapped
            ("203.0.114.1", "rebooted", "vm-12", org, False),  # another range
            ("203.0.113.8", "rebooting", "vm-12", org, False),  # another word
            ("203.0.113.8", "rebooted", "vm-1", org, False),  # other details
            ("203.0.113.8", "rebooted", "vm-12", other_paid_org, False),  # another organization
            (None, "rebooted", "vm-12", org, False),  # no address
            ("203.0.113.200", "was REBOOTED.", "vm-12", org, True),
        ]:
            found = entry(ip, note, resource, organization)
            if matches:
                wanted.append(node_id(found))
        assert len(wanted) == 3
        assert received_ids(client, 3) == wanted
        if isinstance(client, WebSocketSubscriber):
            assert client.nothing_within(1.5)
    finally:
        client.close()


def test_resuming_with_the_last_cursor_misses_nothing_and_repeats_nothing(
    server: str, admin: User, reader: str
) -> None:
    org = admin.organization
    marker = record(org)
    first = WebSocketSubscriber(server, SUBSCRIBE, {"after": stream_cursor(marker)}, token=reader)
    seen = record(org, details={"n": 1})
    edge = edge_of(first.next())
    assert edge["node"]["id"] == node_id(seen)
    first.close()

    missed = [record(org, details={"n": n}) for n in (2, 3, 4)]
    again = WebSocketSubscriber(server, SUBSCRIBE, {"after": edge["cursor"]}, token=reader)
    try:
        assert received_ids(again, 3) == [node_id(e) for e in missed]
        live = record(org, details={"n": 5})
        assert received_ids(again, 1) == [node_id(live)]
        assert again.nothing_within(1.5)
    finally:
        again.close()


def test_an_auditlogs_cursor_replays_newer_entries_then_goes_live(
    server: str, admin: User, reader: str
) -> None:
    org = admin.organization
    assert org is not None
    base = timezone.now() + timedelta(seconds=30)  # newer than anything else of the org
    anchor, newer, newest = (
        record(org, details={"n": n}, time=base + timedelta(seconds=n)) for n in (0, 2, 1)
    )
    page_cursor = cursor_encode(organization_id=org.pk, position=AuditLogPosition.of(anchor))
    client = WebSocketSubscriber(server, SUBSCRIBE, {"after": page_cursor}, token=reader)
    try:
        # Oldest first by time: n=1, then n=2.
        assert received_ids(client, 2) == [node_id(newest), node_id(newer)]
        live = record(org, details={"n": 3})
        assert received_ids(client, 1) == [node_id(live)]
        assert client.nothing_within(1.5)
    finally:
        client.close()


def test_an_entry_recorded_through_one_server_reaches_a_subscriber_of_another(
    server: str, admin: User, reader: str
) -> None:
    writer = api_token_create(user=admin, scopes=(ApiTokenScope.AUDIT_WRITE,))[1]
    marker = record(admin.organization)
    for other_server in _serve():
        client = WebSocketSubscriber(
            other_server, SUBSCRIBE, {"after": stream_cursor(marker)}, token=reader
        )
        try:
            body = json.dumps(
                {
                    "query": "mutation($e: [AuditEventInput!]!) { recordAuditEvents(events: $e) { events { id } } }",
                    "variables": {
                        "e": [
                            {
                                "idempotencyKey": "two-servers",
                                "event": "USER_LOGIN",
                                "details": {"method": "password"},
                            }
                        ]
                    },
                }
            ).encode()
            request = urllib.request.Request(
                server + "/graphql/",
                data=body,
                headers={"Authorization": f"Bearer {writer}", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                recorded = json.loads(response.read())["data"]["recordAuditEvents"]["events"]
            assert received_ids(client, 1) == [recorded[0]["id"]]
        finally:
            client.close()


def test_a_rolled_back_entry_is_never_delivered(server: str, admin: User, reader: str) -> None:
    org = admin.organization
    with following(server, reader, org) as client:

        class Abort(Exception):
            pass

        with pytest.raises(Abort), transaction.atomic():
            record(org, details={"rolled": "back"})
            raise Abort
        kept = record(org, details={"kept": True})
        assert received_ids(client, 1) == [node_id(kept)]
        assert client.nothing_within(1.5)


def test_an_entry_waits_for_an_older_transaction_and_keeps_stream_order(
    server: str, admin: User, reader: str
) -> None:
    """A transaction that began writing first but commits last: the later one's entry is
    held back until it commits, then both arrive in stream order, and a client resuming
    after the first gets exactly the second."""
    org = admin.organization
    marker = record(org)
    client = WebSocketSubscriber(server, SUBSCRIBE, {"after": stream_cursor(marker)}, token=reader)
    inserted, release = threading.Event(), threading.Event()
    slow: dict[str, AuditLog] = {}

    def older_transaction() -> None:
        try:
            with transaction.atomic():
                slow["entry"] = record(org, details={"slow": True})
                inserted.set()
                assert release.wait(20)
        finally:
            connection.close()

    thread = threading.Thread(target=older_transaction)
    thread.start()
    try:
        assert inserted.wait(10)
        fast = record(org, details={"fast": True})  # commits first
        assert client.nothing_within(1.5)
        release.set()
        thread.join(10)
        first, second = (edge_of(client.next()) for _ in range(2))
        assert [first["node"]["id"], second["node"]["id"]] == [
            node_id(slow["entry"]),
            node_id(fast),
        ]
    finally:
        release.set()
        thread.join(10)
        client.close()
    resumed = WebSocketSubscriber(server, SUBSCRIBE, {"after": first["cursor"]}, token=reader)
    try:
        assert received_ids(resumed, 1) == [node_id(fast)]
        assert resumed.nothing_within(1)
    finally:
        resumed.close()


def test_another_organizations_entries_are_never_delivered(
    server: str,
    admin: User,
    reader: str,
    other_paid_org: Organization,
) -> None:
    with following(server, reader, admin.organization) as client:
        for n in range(10):
            record(other_paid_org, details={"n": n})
        mine = record(admin.organization)
        assert received_ids(client, 1) == [node_id(mine)]
        assert client.nothing_within(1.5)


@pytest.mark.parametrize("transport", [WebSocketSubscriber, SSESubscriber])
@pytest.mark.parametrize(
    ("caller", "code"),
    [
        ("anonymous", "UNAUTHENTICATED"),
        ("bad token", "UNAUTHENTICATED"),
        ("member", "FORBIDDEN"),
        ("free admin", "PAID_PLAN_REQUIRED"),
        ("write-only token of a member", "FORBIDDEN"),
    ],
)
def test_who_may_not_subscribe(
    transport: type[WebSocketSubscriber | SSESubscriber],
    caller: str,
    code: str,
    server: str,
    paid_org: Organization,
    make_org: Callable[..., Organization],
    make_user: Callable[..., User],
) -> None:
    token = {
        "anonymous": lambda: None,
        "bad token": lambda: "not-a-token",
        "member": lambda: api_token_create(user=make_user(paid_org))[1],
        "free admin": lambda: api_token_create(user=make_user(make_org("free"), admin=True))[1],
        "write-only token of a member": lambda: api_token_create(
            user=make_user(paid_org), scopes=(ApiTokenScope.AUDIT_WRITE,)
        )[1],
    }[caller]()
    client = transport(server, SUBSCRIBE, token=token)
    try:
        assert error_code(client.next()) == code
    finally:
        client.close()


def test_a_cursor_of_another_organization_is_refused(
    server: str, reader: str, other_paid_org: Organization
) -> None:
    foreign = stream_cursor(record(other_paid_org))
    client = WebSocketSubscriber(server, SUBSCRIBE, {"after": foreign}, token=reader)
    try:
        assert error_code(client.next()) == "BAD_USER_INPUT"
    finally:
        client.close()


def test_revoking_the_token_ends_an_open_stream(server: str, admin: User) -> None:
    token, secret = api_token_create(user=admin)
    with following(server, secret, admin.organization) as client:
        entry = record(admin.organization)
        assert received_ids(client, 1) == [node_id(entry)]  # the stream is open
        api_token_revoke(token=token)
        started = time.monotonic()
        result = client.next(timeout=10)  # rechecked every second on this server
        assert error_code(result) == "UNAUTHENTICATED"
        assert time.monotonic() - started < 5


def test_a_client_that_falls_behind_is_closed_and_resumes_where_it_stopped(
    server: str, admin: User, reader: str
) -> None:
    org = admin.organization
    assert org is not None
    with following(server, reader, org) as client:
        first = record(org)
        assert received_ids(client, 1) == [node_id(first)]  # caught up, following live
        # One statement, so the server reads them at once: more than the buffer holds.
        now = timezone.now()
        drafts = [AuditEntryDraft(event="USER_LOGIN", time=now) for _ in range(BUFFER * 3)]
        audit_log_bulk_create(organization=org, drafts=drafts)
        result = client.next()
        (error,) = result["errors"]
        assert error["extensions"]["code"] == "SLOW_CONSUMER"
        resume = error["extensions"]["resumeAfter"]
    burst = list(
        AuditLog.objects.filter(organization=org, id__gt=first.pk).order_by("stream_txid", "id")
    )
    assert len(burst) == BUFFER * 3
    again = WebSocketSubscriber(server, SUBSCRIBE, {"after": resume}, token=reader)
    try:
        assert received_ids(again, len(burst)) == [node_id(e) for e in burst]
        assert again.nothing_within(1)
    finally:
        again.close()


def test_entries_recorded_while_the_listening_connection_is_down_are_delivered(
    server: str, admin: User, reader: str
) -> None:
    org = admin.organization
    with following(server, reader, org) as client:
        before = record(org)
        assert received_ids(client, 1) == [node_id(before)]
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE query = 'LISTEN audit_log_created' AND pid <> pg_backend_pid()"
                " AND application_name <> %s",
                [LOG_STREAMS_APPLICATION],
            )
            assert cursor.fetchall() == [(True,)]  # the one server's listener
        during = [record(org, details={"n": n}) for n in range(3)]
        # Read from its position once the listener is back, not when a poll comes round.
        assert [edge_of(client.next(timeout=5))["node"]["id"] for _ in during] == [
            node_id(e) for e in during
        ]
        after = record(org)
        assert edge_of(client.next(timeout=5))["node"]["id"] == node_id(after)


def test_the_token_may_come_in_the_handshake_header(server: str, admin: User, reader: str) -> None:
    marker = record(admin.organization)
    client = WebSocketSubscriber(
        server,
        SUBSCRIBE,
        {"after": stream_cursor(marker)},
        headers={"Authorization": f"Bearer {reader}"},
    )
    try:
        entry = record(admin.organization)
        assert received_ids(client, 1) == [node_id(entry)]
    finally:
        client.close()


def _session_cookie(user: User) -> str:
    from django.conf import settings
    from django.test import Client

    browser = Client()
    browser.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"


def test_a_signed_in_browser_follows_from_its_own_origin(server: str, admin: User) -> None:
    cookie = _session_cookie(admin)  # signing in records an entry: before the marker
    marker = record(admin.organization)
    client = WebSocketSubscriber(
        server,
        SUBSCRIBE,
        {"after": stream_cursor(marker)},
        headers={"Cookie": cookie, "Origin": server},
    )
    try:
        entry = record(admin.organization)
        assert received_ids(client, 1) == [node_id(entry)]
        # Signing out (the session is deleted) ends the stream at the next check.
        from importlib import import_module

        from django.conf import settings

        store = import_module(settings.SESSION_ENGINE).SessionStore
        store(cookie.partition("=")[2]).delete()
        assert error_code(client.next(timeout=10)) == "UNAUTHENTICATED"
    finally:
        client.close()


def test_a_page_of_another_site_cannot_use_the_session(server: str, admin: User) -> None:
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:
        WebSocketSubscriber(
            server,
            SUBSCRIBE,
            headers={"Cookie": _session_cookie(admin), "Origin": "https://evil.example"},
        )
    assert refused.value.response.status_code == 403


def test_a_token_may_hold_only_so_many_open_streams(server: str, admin: User) -> None:
    token, other = (api_token_create(user=admin)[1] for _ in range(2))
    open_streams = [WebSocketSubscriber(server, SUBSCRIBE, token=token) for _ in range(MAX_STREAMS)]
    try:
        time.sleep(1)  # every one of them has started
        refused = WebSocketSubscriber(server, SUBSCRIBE, token=token)
        try:
            assert error_code(refused.next()) == "SUBSCRIPTION_LIMIT"
        finally:
            refused.close()
        with following(server, other, admin.organization) as elsewhere:  # its own count
            entry = record(admin.organization)
            assert received_ids(elsewhere, 1) == [node_id(entry)]
        open_streams.pop().close()  # closing one frees its place
        deadline = time.monotonic() + 10
        while True:
            again = WebSocketSubscriber(server, SUBSCRIBE, token=token)
            try:
                if again.nothing_within(1.5):
                    break  # accepted: no error, the stream is open
            except AssertionError:
                assert time.monotonic() < deadline, "the closed stream's place was not freed"
            finally:
                again.close()
    finally:
        for stream in open_streams:
            stream.close()
