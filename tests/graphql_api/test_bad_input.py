"""Every bad input gets a GraphQL error with extensions.code and nothing else: no data,
no stack trace, no SQL."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from audit.events import AuditEventType as E
from audit.models import AuditLog
from audit.services import audit_log_record
from core.models import Organization, User
from graphql_api.cursors import cursor_decode
from tests.graphql_api.conftest import GraphQLClient, data_of, error_codes

pytestmark = pytest.mark.django_db

PAGE = """
query Page($first: Int, $after: String, $last: Int, $before: String, $filter: AuditLogFilter) {
  auditLogs(first: $first, after: $after, last: $last, before: $before, filter: $filter) {
    totalCount
    pageInfo { endCursor }
    edges { cursor node { id } }
  }
}
"""

LEAKS = ("Traceback", "SELECT", "psycopg", "django.", 'File "', "audit_log")


def assert_bad_input(body: dict[str, Any], mentions: str | None = None) -> None:
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body.get("data") is None
    text = json.dumps(body)
    assert not any(leak in text for leak in LEAKS), text
    if mentions is not None:
        assert mentions in body["errors"][0]["message"]


@pytest.fixture
def cursor(admin_gql: GraphQLClient) -> str:
    value: str = data_of(admin_gql.post(PAGE, {"first": 1}))["auditLogs"]["pageInfo"]["endCursor"]
    return value


@pytest.mark.parametrize(
    ("variables", "mentions"),
    [
        ({"first": 101}, "first must be between 0 and 100"),
        ({"first": -1}, "first must be between 0 and 100"),
        ({"last": 101}, "last must be between 0 and 100"),
        ({"last": -5}, "last must be between 0 and 100"),
        ({"first": 2**31}, "Int cannot represent"),
        ({"first": "ten"}, "Int cannot represent"),
        ({"after": "not-a-cursor"}, "invalid cursor"),
        ({"before": ""}, "invalid cursor"),
        ({"after": "x" * 5000}, "invalid cursor"),
        (
            {"filter": {"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}},
            "from must not be after to",
        ),
        ({"filter": {"userEmail": "a" * 255}}, "at most 254 characters"),
        ({"filter": {"eventTypes": []}}, "at least one event type"),
        ({"filter": {"eventType": "USER_LOGGED_IN"}}, "USER_LOGGED_IN"),
        ({"filter": {"from": "yesterday"}}, "DateTime"),
        ({"filter": {"unknownField": 1}}, "unknownField"),
    ],
)
def test_bad_arguments(admin_gql: GraphQLClient, variables: dict[str, Any], mentions: str) -> None:
    assert_bad_input(admin_gql.post(PAGE, variables), mentions)


def test_254_character_email_is_accepted(admin_gql: GraphQLClient) -> None:
    body = admin_gql.post(PAGE, {"filter": {"userEmail": "a" * 254}})
    assert data_of(body)["auditLogs"]["totalCount"] == 0


def test_page_size_limits_are_inclusive(admin_gql: GraphQLClient) -> None:
    for variables in ({"first": 100}, {"last": 100}, {"first": 0}, {"last": 0}):
        assert "errors" not in admin_gql.post(PAGE, variables)


def _tamper(cursor: str) -> list[str]:
    payload, _, signature = cursor.partition(".")
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    version, org, micros, entry = decoded.split(":")
    forged = f"{version}:{org}:{micros}:{int(entry) + 1}"
    forged_payload = base64.urlsafe_b64encode(forged.encode()).decode().rstrip("=")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    return [
        f"{forged_payload}.{signature}",  # another position, old signature
        f"{payload}.{flipped}",  # one character of the signature changed
        payload,  # signature removed
        cursor[:-3],  # truncated
        cursor + "x",
    ]


def test_tampered_cursors(admin_gql: GraphQLClient, cursor: str) -> None:
    for bad in _tamper(cursor):
        for argument in ("after", "before"):
            assert_bad_input(admin_gql.post(PAGE, {argument: bad}), "invalid cursor")


def test_a_cursor_from_another_organization_reveals_nothing(
    admin_gql: GraphQLClient,
    other_paid_org: Organization,
    make_user: Callable[..., User],
    token_for: Callable[[User], str],
) -> None:
    other_admin = make_user(other_paid_org, admin=True)
    audit_log_record(organization=other_paid_org, event=E.USER_LOGIN, actor=other_admin)
    foreign = data_of(admin_gql.post(PAGE, {"first": 1}, token=token_for(other_admin)))
    foreign_cursor = foreign["auditLogs"]["pageInfo"]["endCursor"]
    body = admin_gql.post(PAGE, {"after": foreign_cursor})
    garbage = admin_gql.post(PAGE, {"after": "garbage"})
    assert_bad_input(body)
    # Exactly the error of a made-up cursor: nothing tells the two apart.
    assert body["errors"][0]["message"] == garbage["errors"][0]["message"].replace(
        "garbage", foreign_cursor
    )


def test_cursor_round_trip_keeps_microseconds(cursor: str, admin: User) -> None:
    assert admin.organization is not None
    position = cursor_decode(cursor, organization_id=admin.organization.pk)
    newest = AuditLog.objects.filter(organization=admin.organization).order_by("-time", "-id")[0]
    assert (position.time, position.id) == (newest.time, newest.pk)


def test_syntax_error(admin_gql: GraphQLClient) -> None:
    assert_bad_input(admin_gql.post("{ auditLogs(first: 1) { totalCount "), "Syntax Error")


def test_unknown_field(admin_gql: GraphQLClient) -> None:
    assert_bad_input(admin_gql.post("{ auditLogs { secretColumn } }"), "secretColumn")


def test_queries_are_not_mutations(admin_gql: GraphQLClient) -> None:
    body = admin_gql.post("mutation { auditLogs { totalCount } }")
    assert_bad_input(body, "auditLogs")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("{not json", "application/json"),
        ('{"variables": {}}', "application/json"),
        ("query=%7B%7D", "text/plain"),
        ("query=%7B%7D", "application/x-www-form-urlencoded"),  # a form, not JSON
    ],
)
def test_malformed_http_bodies(admin_gql: GraphQLClient, body: str, content_type: str) -> None:
    response = Client().post("/graphql/", data=body, content_type=content_type)
    assert 400 <= response.status_code < 500
    payload = json.loads(response.content)
    assert error_codes(payload) == ["BAD_USER_INPUT"]


def test_depth_limit(admin_gql: GraphQLClient, settings: Any) -> None:
    nested = "{ auditLogs { edges { node { user { email } } } } }"  # depth 4 (auditLogs is depth 0)
    assert "errors" not in admin_gql.post(nested)
    settings.GRAPHQL_MAX_DEPTH = 3
    assert_bad_input(admin_gql.post(nested), "exceeds maximum operation depth")
    # Fragments do not hide depth.
    spread = "{ auditLogs { ...E } } fragment E on AuditLogConnection { edges { node { user { email } } } }"
    assert_bad_input(admin_gql.post(spread), "exceeds maximum operation depth")


def test_alias_limit(admin_gql: GraphQLClient, settings: Any) -> None:
    many = " ".join(
        f"a{i}: auditEventTypes {{ value }}" for i in range(settings.GRAPHQL_MAX_ALIASES + 1)
    )
    assert_bad_input(admin_gql.post("{ " + many + " }"), "aliases")
    few = " ".join(
        f"a{i}: auditEventTypes {{ value }}" for i in range(settings.GRAPHQL_MAX_ALIASES)
    )
    assert "errors" not in admin_gql.post("{ " + few + " }")


def test_token_limit(admin_gql: GraphQLClient, settings: Any) -> None:
    huge = "{ " + " ".join(["__typename"] * settings.GRAPHQL_MAX_TOKENS) + " }"
    assert_bad_input(admin_gql.post(huge), "token")


def test_introspection_fits_the_limits(gql: GraphQLClient) -> None:
    from graphql import get_introspection_query

    body = gql.post(get_introspection_query(descriptions=True))
    assert "errors" not in body
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"


def test_batched_operations_are_refused(admin_gql: GraphQLClient) -> None:
    response = Client().post(
        "/graphql/",
        data=json.dumps([{"query": "{ auditEventTypes { value } }"}] * 2),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert error_codes(json.loads(response.content)) == ["BAD_USER_INPUT"]


def test_an_oversized_body_is_refused(db: None, settings: Any) -> None:
    padding = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    body = json.dumps({"query": "{ auditEventTypes { value } }", "extensions": {"pad": padding}})
    response = Client().post("/graphql/", data=body, content_type="application/json")
    assert response.status_code == 413
    assert error_codes(json.loads(response.content)) == ["BAD_USER_INPUT"]


def test_cursors_survive_a_key_rotation(
    admin_gql: GraphQLClient, cursor: str, settings: Any
) -> None:
    old_key = settings.SECRET_KEY
    settings.SECRET_KEY = "a-new-key-after-rotation"
    assert_bad_input(admin_gql.post(PAGE, {"after": cursor}), "invalid cursor")
    settings.SECRET_KEY_FALLBACKS = [old_key]
    assert "errors" not in admin_gql.post(PAGE, {"after": cursor})


@pytest.mark.parametrize(
    "bounds",
    [
        {"from": "0001-01-01T00:00:00+14:00"},
        {"to": "0001-01-01T00:00:00+14:00"},
        {"from": "9999-12-31T23:59:59.999999Z"},
        {"to": "9999-12-31T23:59:59-14:00"},
        {"from": "0001-01-01T00:00:00Z", "to": "9999-12-31T23:59:59Z"},
    ],
)
def test_times_at_the_ends_of_the_calendar_are_plain_bounds(
    admin_gql: GraphQLClient, admin: User, bounds: dict[str, str]
) -> None:
    """Found by the fuzz test: such bounds overflowed in UTC conversions and time buckets.
    They mean what they say: no entry is that old, or that new."""
    body = admin_gql.post(PAGE, {"filter": bounds, "first": 5})
    total = data_of(body)["auditLogs"]["totalCount"]
    everything = AuditLog.objects.filter(organization=admin.organization).count()
    early = "0001" in bounds.get("to", "") or "9999" in bounds.get("from", "")
    assert total == (0 if early else everything) and everything > 0
