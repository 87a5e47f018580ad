"""Input no client should send, and what the API answers: a 4xx with a coded JSON body,
never a 500, never INTERNAL_SERVER_ERROR, never a partial write.

Raw bodies (every JSON type at the top level, bytes that are not UTF-8, deep nesting,
numbers Python cannot read), values PostgreSQL cannot store (NUL, lone surrogates,
non-finite numbers, zoned IPv6 addresses) and UTC offsets beyond PostgreSQL's range.
The export endpoint's are in tests/graphql_api/test_export.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from audit.models import AuditLog
from core.models import ApiTokenScope, User
from core.services import api_token_create
from tests.graphql_api.conftest import GraphQLClient, data_of, error_codes

pytestmark = pytest.mark.django_db

LEAKS = ("Traceback", 'File "', "psycopg", "django.", "SELECT ", "INSERT ", "audit_log")

RECORD = """
mutation Record($events: [AuditEventInput!]!) {
  recordAuditEvents(events: $events) { events { id created } }
}
"""
PAGE = """
query Page($filter: AuditLogFilter) {
  auditLogs(first: 5, filter: $filter) { totalCount edges { node { id time } } }
}
"""


@pytest.fixture
def token(admin: User) -> str:
    scopes = (ApiTokenScope.READ, ApiTokenScope.AUDIT_WRITE)
    return api_token_create(user=admin, name="hostile", scopes=scopes)[1]


@pytest.fixture
def writer(token: str) -> GraphQLClient:
    return GraphQLClient(Client(), token=token)


def post_raw(token: str, body: bytes, **headers: str) -> tuple[int, dict[str, Any]]:
    response = Client().generic(
        "POST",
        "/graphql/",
        data=body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}", **headers},
    )
    text = response.content.decode()
    assert not any(leak in text for leak in LEAKS), text
    parsed: dict[str, Any] = json.loads(text)
    return response.status_code, parsed


def assert_coded_client_error(
    status: int, body: dict[str, Any], code: str = "BAD_USER_INPUT"
) -> None:
    assert 400 <= status < 500, (status, body)
    assert body.get("data") is None, body
    assert error_codes(body) == [code], body


def recorded_events(admin: User) -> int:
    return AuditLog.objects.filter(
        organization=admin.organization, idempotency_key__isnull=False
    ).count()


# --- bodies ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"null",
        b"1",
        b"-0.5",
        b'"x"',
        b"true",
        b"[]",
        b"[1]",
        b"[null]",
        b'{"query": "{ __typename }"}\xff',
        b'{"query": "{ __typename \xff }"}',
        b"\xff\xfe\x00",
        b"[" * 100_000,
        b'{"a":' * 100_000,
        b'{"query": "{ __typename }", "variables": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        b'{"query": "{ __typename }", "variables": {"n": ' + b"9" * 5000 + b"}}",
        b'{"query": 1}',
        b'{"query": "{ __typename }", "variables": 3}',
        b'{"query": "{ __typename }", "operationName": 3}',
        b"",
    ],
    ids=lambda body: repr(body[:40]),
)
def test_a_body_that_is_not_one_graphql_request_is_a_coded_400(token: str, body: bytes) -> None:
    status, answer = post_raw(token, body)
    assert status == 400, answer
    assert_coded_client_error(status, answer)


def test_a_document_nested_beyond_the_parser_is_a_coded_400(token: str) -> None:
    # Nested inline fragments: within the document's token limit, deeper than the
    # recursion the parser can take.
    depth = 450
    query = "{ __typename " + "... on Query {" * depth + "__typename" + "}" * depth + "}"
    status, answer = post_raw(token, json.dumps({"query": query}).encode())
    assert status == 200 and error_codes(answer) == ["BAD_USER_INPUT"], answer
    assert "nested too deeply" in answer["errors"][0]["message"]


@pytest.mark.parametrize(
    "details",
    [
        '{"a":' * 5000 + "1" + "}" * 5000,
        '{"n": ' + "7" * 5000 + "}",
    ],
    ids=["nested-5000", "integer-5000-digits"],
)
def test_details_python_cannot_decode_are_a_coded_400(
    token: str, admin: User, details: str
) -> None:
    body = (
        '{"query": ' + json.dumps(RECORD) + ', "variables": {"events": [{"idempotencyKey": "k",'
        ' "event": "RESOURCE_CREATED", "details": ' + details + "}]}}"
    )
    status, answer = post_raw(token, body.encode())
    assert status == 400, answer
    assert_coded_client_error(status, answer)
    assert recorded_events(admin) == 0


# --- values PostgreSQL cannot store ----------------------------------------------------------


def problems_of(body: dict[str, Any]) -> set[tuple[int, str]]:
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", body
    return {(p["index"], p["field"]) for p in error["extensions"]["problems"]}


def event(key: str, **fields: Any) -> dict[str, Any]:
    """RESOURCE_CREATED with the key its details require, besides any ``details`` given."""
    details = {"resource": "vm-1", **fields.pop("details", {})}
    return {"idempotencyKey": key, "event": "RESOURCE_CREATED", "details": details, **fields}


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"userEmail": "a\x00b@acme.test"}, "userEmail"),
        ({"userEmail": "a\ud800@acme.test"}, "userEmail"),
        ({"idempotencyKey": "k\ud800"}, "idempotencyKey"),
        ({"idempotencyKey": "\udfff"}, "idempotencyKey"),
        ({"details": {"k": "v\x00"}}, "details"),
        ({"details": {"k\x00": "v"}}, "details"),
        ({"details": {"k": "\ud83d"}}, "details"),
        ({"details": {"\udc00": 1}}, "details"),
        ({"details": {"deep": [["x\ud800"]]}}, "details"),
        ({"ip": "fe80::1%eth0"}, "ip"),
        ({"ip": "::1%1"}, "ip"),
        ({"ip": "1.2.3.4\x00"}, "ip"),
        ({"ip": "\ud800"}, "ip"),
    ],
    ids=repr,
)
def test_text_postgresql_cannot_store_names_the_event_and_field(
    writer: GraphQLClient, admin: User, bad: dict[str, Any], field: str
) -> None:
    body = writer.post(RECORD, {"events": [event("fine"), event("bad", **bad)]})
    assert body["data"] is None
    assert problems_of(body) == {(1, field)}
    assert recorded_events(admin) == 0


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_non_finite_numbers_in_details_name_the_event_and_field(
    token: str, admin: User, number: str
) -> None:
    body = (
        '{"query": ' + json.dumps(RECORD) + ', "variables": {"events": ['
        '{"idempotencyKey": "fine", "event": "RESOURCE_CREATED", "details": {"resource": "v"}},'
        '{"idempotencyKey": "bad", "event": "RESOURCE_CREATED", "details": {"x": ['
        + number
        + "]}}]}}"
    )
    status, answer = post_raw(token, body.encode())
    assert status == 200, answer
    assert problems_of(answer) == {(1, "details")}
    assert recorded_events(admin) == 0


def test_details_nested_beyond_the_limit_name_the_event_and_field(
    writer: GraphQLClient, admin: User
) -> None:
    from audit.storable import DETAILS_MAX_DEPTH

    deep: Any = "leaf"
    for _ in range(DETAILS_MAX_DEPTH + 1):
        deep = {"a": deep}
    body = writer.post(RECORD, {"events": [event("bad", details=deep)]})
    assert problems_of(body) == {(0, "details")}
    assert DETAILS_MAX_DEPTH >= 16
    deep = "leaf"
    for _ in range(DETAILS_MAX_DEPTH - 1):
        deep = {"a": deep}
    assert data_of(writer.post(RECORD, {"events": [event("fine", details=deep)]}))
    assert recorded_events(admin) == 1


@pytest.mark.parametrize(
    "bad_filter",
    [
        {"userEmail": "a\x00b"},
        {"userEmail": "\ud800"},
        {"userEmail": "x\udfffy"},
    ],
    ids=repr,
)
def test_filter_text_postgresql_cannot_compare_is_bad_user_input(
    writer: GraphQLClient, bad_filter: dict[str, Any]
) -> None:
    body = writer.post(PAGE, {"filter": bad_filter})
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert "userEmail" in body["errors"][0]["message"]


# --- UTC offsets beyond PostgreSQL's +-15:59 -------------------------------------------------


@pytest.mark.parametrize("offset", ["+23:59", "+16:00", "-23:59", "-16:00"])
def test_filter_times_with_any_valid_offset_mean_that_instant(
    writer: GraphQLClient, admin: User, offset: str
) -> None:
    body = writer.post(
        PAGE,
        {"filter": {"from": f"2020-01-01T00:00:00{offset}", "to": f"2099-01-01T00:00:00{offset}"}},
    )
    total = data_of(body)["auditLogs"]["totalCount"]
    assert total == AuditLog.objects.filter(organization=admin.organization).count() > 0


@pytest.mark.parametrize("offset", ["+23:59", "+16:00", "-16:00"])
def test_an_event_time_with_any_valid_offset_is_stored_in_utc(
    writer: GraphQLClient, admin: User, offset: str
) -> None:
    from datetime import UTC, datetime

    moment = f"2026-01-15T12:00:00{offset}"
    body = writer.post(RECORD, {"events": [event(f"t{offset}", time=moment)]})
    assert data_of(body)["recordAuditEvents"]["events"][0]["created"] is True
    stored = AuditLog.objects.get(organization=admin.organization, idempotency_key=f"t{offset}")
    assert stored.time == datetime.fromisoformat(moment).astimezone(UTC)


# --- a subscription where no stream can be sent ----------------------------------------------


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_a_subscription_over_plain_http_says_how_to_subscribe(token: str, method: str) -> None:
    query = "subscription { auditLogCreated { cursor } }"
    client = Client()
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    if method == "POST":
        response = client.post(
            "/graphql/",
            data=json.dumps({"query": query}),
            content_type="application/json",
            headers=headers,
        )
    else:
        response = client.get("/graphql/", {"query": query}, headers=headers)
    body = json.loads(response.content)
    assert 400 <= response.status_code < 500, body
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    message = body["errors"][0]["message"]
    assert "WebSocket" in message and "text/event-stream" in message
