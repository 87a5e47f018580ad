"""GET /audit-logs/export: the readers of auditLogs, refusals as HTTP statuses with coded
JSON bodies, the filters of auditLogs, and a file streamed by a real server."""

from __future__ import annotations

import csv
import io
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import Client

from audit.events import AuditEventType as E
from audit.models import AuditLog
from audit.services import AuditEntryDraft, audit_log_bulk_create
from core.models import Organization, User
from tests.support import TRANSACTIONAL

pytestmark = TRANSACTIONAL

URL = "/audit-logs/export"
T0 = datetime(2026, 5, 1, tzinfo=UTC)


def _get(path: str, token: str | None = None, method: str = "get") -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return getattr(Client(), method)(path, headers=headers)


async def _body(response: Any) -> bytes:
    return b"".join([chunk async for chunk in response.streaming_content])


def _error(response: Any) -> tuple[int, str, str]:
    body = json.loads(response.content)
    (error,) = body["errors"]
    return response.status_code, error["extensions"]["code"], error["message"]


@pytest.fixture
def entries(admin: User) -> list[AuditLog]:
    org = admin.organization
    assert org is not None
    audit_log_bulk_create(
        organization=org,
        drafts=[
            AuditEntryDraft(
                event=E.USER_LOGIN if n % 2 else E.RESOURCE_UPDATED,
                time=T0 + timedelta(hours=n),
                user_email=f"user{n % 3}@example.test",
                details={"n": n},
            )
            for n in range(30)
        ],
    )
    return list(AuditLog.objects.filter(organization=org).order_by("-time", "-id"))


@pytest.mark.parametrize(
    ("who", "status", "code"),
    [
        ("anonymous", 401, "UNAUTHENTICATED"),
        ("bad token", 401, "UNAUTHENTICATED"),
        ("member", 403, "FORBIDDEN"),
        ("free admin", 403, "PAID_PLAN_REQUIRED"),
    ],
)
def test_only_paid_administrators_may_export(
    make_org: Callable[..., Organization],
    make_user: Callable[..., User],
    token_for: Callable[[User], str],
    who: str,
    status: int,
    code: str,
) -> None:
    token = {
        "anonymous": lambda: None,
        "bad token": lambda: "alog_not-a-real-token",
        "member": lambda: token_for(make_user(make_org("paid"))),
        "free admin": lambda: token_for(make_user(make_org("free"), admin=True)),
    }[who]()
    found = _error(_get(URL, token))
    assert found[:2] == (status, code)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?format=xml", "format must be one of csv, jsonl"),
        ("?eventType=NOPE", "is not an audit event type"),
        ("?from=yesterday", "from must be an ISO 8601"),
        ("?from=2026-02-01&to=2026-01-01", "from must not be after to"),
        ("?event_type=USER_LOGIN", "unknown parameter(s): event_type"),
        ("?ip=203.0.113.0/99", "is not an IPv4 or IPv6 address or CIDR range"),
        ("?search=%2B%2B", "search must contain a word"),
        ("?details=%7Bnope", "details must be JSON"),
        ("?details=%5B1%5D", "details must be a JSON object"),
        ("?details=%7B%22a%22%3A%22%5Cu0000%22%7D", "details must not contain the NUL"),
        ("?details=" + "%5B" * 100_000, "details must be JSON"),
    ],
)
def test_bad_parameters_are_bad_user_input(
    admin: User, token_for: Callable[[User], str], query: str, message: str
) -> None:
    status, code, text = _error(_get(URL + query, token_for(admin)))
    assert (status, code) == (400, "BAD_USER_INPUT") and message in text


def test_other_methods_are_refused(admin: User, token_for: Callable[[User], str]) -> None:
    response = _get(URL, token_for(admin), method="post")
    assert _error(response)[:2] == (405, "BAD_USER_INPUT") and response["Allow"] == "GET"


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_other_methods_with_a_session_are_405_json_not_a_csrf_page(
    admin: User, method: str
) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    response = getattr(client, method)(URL)
    assert _error(response)[:2] == (405, "BAD_USER_INPUT")
    assert response["Allow"] == "GET" and response["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("query", "first", "last"),
    [
        # ISO 8601 allows offsets to +-23:59, PostgreSQL to +-15:59: the instant counts.
        ("from=2026-05-01T10:00:00%2B23:59", 0, 29),  # 2026-04-30T10:01Z
        ("from=2026-05-02T00:00:00%2B16:00", 8, 29),  # 2026-05-01T08:00Z
        ("to=2026-04-30T16:00:00-16:00", 0, 8),  # 2026-05-01T08:00Z
        ("from=2026-05-01T00:00:00%2B23:59&to=2026-05-01T12:00:00-16:00", 0, 28),
    ],
)
def test_times_with_any_valid_offset_select_that_instant(
    admin: User,
    entries: list[AuditLog],
    token_for: Callable[[User], str],
    query: str,
    first: int,
    last: int,
) -> None:
    response = _get(URL + "?format=jsonl&" + query, token_for(admin))
    assert response.status_code == 200
    lines = async_to_sync(_body)(response).decode().splitlines()
    details = [json.loads(line).get("details", {}) for line in lines]
    ns = sorted(d["n"] for d in details if "n" in d)
    assert ns == list(range(first, last + 1))


@pytest.mark.parametrize(
    ("query", "mentions"),
    [
        ("?userEmail=a%00b", "userEmail must not contain the NUL"),
        ("?eventType=%00", "eventType must not contain the NUL"),
        ("?format=csv%00", "format must not contain the NUL"),
        ("?to=2026-01-01T00:00:00%00", "to must not contain the NUL"),
    ],
)
def test_values_postgresql_cannot_use_are_refused_before_the_file_starts(
    admin: User, token_for: Callable[[User], str], query: str, mentions: str
) -> None:
    status, code, text = _error(_get(URL + query, token_for(admin)))
    assert (status, code) == (400, "BAD_USER_INPUT") and mentions in text, text


def test_a_session_may_export_and_only_its_organization_appears(
    client: Client,
    admin: User,
    entries: list[AuditLog],
    make_org: Callable[..., Organization],
) -> None:
    other = make_org("paid")
    audit_log_bulk_create(organization=other, drafts=[AuditEntryDraft(event=E.USER_LOGIN, time=T0)])
    client.force_login(admin)
    response = client.get(URL + "?format=jsonl")
    assert response.status_code == 200
    lines = async_to_sync(_body)(response).decode().splitlines()
    ids = [json.loads(line)["id"] for line in lines]
    expected = AuditLog.objects.filter(organization=admin.organization).order_by("-time", "-id")
    assert ids == list(expected.values_list("pk", flat=True))


def test_a_real_server_streams_the_filtered_file_with_its_name(
    live_server_url: str, admin: User, entries: list[AuditLog], token_for: Callable[[User], str]
) -> None:
    org = admin.organization
    assert org is not None
    query = (
        "?format=csv&eventType=USER_LOGIN&userEmail=USER1@&from=2026-05-01T05:00:00Z"
        "&to=2026-05-02T00:00:00%2B00:00"
    )
    request = urllib.request.Request(
        live_server_url + URL + query, headers={"Authorization": f"Bearer {token_for(admin)}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
        assert response.headers["Content-Disposition"] == (
            f'attachment; filename="audit-logs_{org.slug}_20260501T050000Z_20260502T000000Z.csv"'
        )
        assert response.headers.get("Transfer-Encoding") == "chunked"  # streamed, not buffered
        rows = list(csv.reader(io.StringIO(response.read().decode())))
    expected = [
        e
        for e in entries
        if e.event == E.USER_LOGIN
        and e.actor_email == "user1@example.test"
        and T0 + timedelta(hours=5) <= e.time <= T0 + timedelta(days=1)
    ]
    assert expected and [int(row[5]) for row in rows[1:]] == [e.pk for e in expected]
    assert {row[0] for row in rows[1:]} == {"USER_LOGIN"}


def test_a_real_server_refuses_with_a_coded_body(live_server_url: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(live_server_url + URL, timeout=30)
    assert refused.value.code == 401
    body = json.loads(refused.value.read())
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_a_failure_after_the_file_started_does_not_end_it_cleanly(
    client: Client,
    admin: User,
    entries: list[AuditLog],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django.db import OperationalError

    from audit import exporting

    real = exporting.audit_log_export_batch
    calls = []

    def failing(**kwargs: Any) -> Any:
        calls.append(kwargs)
        if len(calls) > 1:
            raise OperationalError("the database went away")
        return real(**kwargs)

    monkeypatch.setattr(exporting, "BATCH_SIZE", 10)
    monkeypatch.setattr(exporting, "audit_log_export_batch", failing)
    client.force_login(admin)
    response = client.get(URL)
    assert response.status_code == 200
    with pytest.raises(OperationalError):
        async_to_sync(_body)(response)


def test_exports_count_against_the_rate_limits(
    admin: User, token_for: Callable[[User], str], settings: Any
) -> None:
    settings.RATE_LIMIT_PER_ADDRESS = 2
    # An address of its own: other tests' requests count against 127.0.0.1.
    client = Client(REMOTE_ADDR="198.51.100.77")
    headers = {"Authorization": f"Bearer {token_for(admin)}"}
    for _ in range(2):
        assert client.get(URL + "?format=jsonl", headers=headers).status_code == 200
    refused = client.get(URL + "?format=jsonl", headers=headers)
    assert _error(refused)[:2] == (429, "RATE_LIMITED")
    assert int(refused["Retry-After"]) >= 1


def test_the_search_filters_select_what_auditlogs_selects(
    admin: User, entries: list[AuditLog], token_for: Callable[[User], str]
) -> None:
    """ip, search and details in the export's query string, combined with the others."""
    org = admin.organization
    assert org is not None
    audit_log_bulk_create(
        organization=org,
        drafts=[
            AuditEntryDraft(
                event=E.RESOURCE_UPDATED,
                time=T0 + timedelta(minutes=n),
                ip=f"203.0.113.{n}",
                details={"n": 100 + n, "note": "Rebooted" if n % 2 else "resized"},
            )
            for n in range(1, 9)
        ],
    )
    query = (
        "?format=jsonl&ip=203.0.113.0/29&search=rebooted&details=%7B%22note%22%3A%22Rebooted%22%7D"
    )
    response = _get(URL + query + "&eventType=RESOURCE_UPDATED", token_for(admin))
    assert response.status_code == 200
    lines = async_to_sync(_body)(response).decode().splitlines()
    # 203.0.113.0/29 holds .1 to .7; the odd ones were rebooted.
    assert [json.loads(line)["details"]["n"] for line in lines] == [107, 105, 103, 101]
