"""auditLogs filters through the API: each alone, combined, with inclusive time bounds;
totalCount always agrees with the filter."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from audit.events import AuditEventType as E
from audit.models import AuditLog
from audit.services import audit_log_record
from core.models import Organization, User
from tests.graphql_api.conftest import GraphQLClient, data_of

pytestmark = pytest.mark.django_db

QUERY = """
query Filtered($filter: AuditLogFilter) {
  auditLogs(first: 100, filter: $filter) {
    totalCount
    edges { node { event time user { email } } }
  }
}
"""

T0 = datetime(2026, 4, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
def entries(
    admin: User, make_user: Callable[..., User], other_paid_org: Organization
) -> dict[str, AuditLog]:
    org = admin.organization
    assert org is not None
    bob = make_user(org, email="Bob.Builder@Example.test")
    odd = make_user(org, email="x_y%z@example.test")
    stranger = make_user(other_paid_org, email="bob@other.test")
    rows = {
        "login": audit_log_record(organization=org, event=E.USER_LOGIN, actor=bob, time=T0),
        "resource": audit_log_record(
            organization=org, event=E.RESOURCE_CREATED, actor=bob, time=T0 + timedelta(hours=1)
        ),
        "credential": audit_log_record(
            organization=org, event=E.CREDENTIAL_DELETED, actor=odd, time=T0 + timedelta(hours=2)
        ),
        "expired": audit_log_record(
            organization=org, event=E.SESSION_EXPIRED, actor=None, time=T0 + timedelta(hours=3)
        ),
        "foreign": audit_log_record(
            organization=other_paid_org, event=E.USER_LOGIN, actor=stranger, time=T0
        ),
    }
    return rows


def run(gql: GraphQLClient, **filter_fields: Any) -> tuple[list[tuple[str, str]], int]:
    connection = data_of(gql.post(QUERY, {"filter": filter_fields}))["auditLogs"]
    got = [
        (e["node"]["event"], e["node"]["time"])
        for e in connection["edges"]
        if datetime.fromisoformat(e["node"]["time"]) < T0 + timedelta(days=1)
    ]
    # Every listed entry is counted, and nothing else is (all entries fit on one page).
    assert connection["totalCount"] == len(connection["edges"])
    return got, connection["totalCount"]


def events(gql: GraphQLClient, **filter_fields: Any) -> list[str]:
    return [event for event, _ in run(gql, **filter_fields)[0]]


WINDOW = {"from": T0.isoformat(), "to": (T0 + timedelta(hours=3)).isoformat()}


def test_no_filter_lists_the_organization_only(
    admin_gql: GraphQLClient, entries: dict[str, AuditLog]
) -> None:
    listed = events(admin_gql, **WINDOW)
    assert listed == ["SESSION_EXPIRED", "CREDENTIAL_DELETED", "RESOURCE_CREATED", "USER_LOGIN"]


def test_event_type(admin_gql: GraphQLClient, entries: dict[str, AuditLog]) -> None:
    assert events(admin_gql, eventType="USER_LOGIN", **WINDOW) == ["USER_LOGIN"]


def test_event_types_any_of(admin_gql: GraphQLClient, entries: dict[str, AuditLog]) -> None:
    got = events(admin_gql, eventTypes=["RESOURCE_CREATED", "CREDENTIAL_DELETED"])
    assert got == ["CREDENTIAL_DELETED", "RESOURCE_CREATED"]


def test_event_type_with_event_types_is_the_union(
    admin_gql: GraphQLClient, entries: dict[str, AuditLog]
) -> None:
    got = events(admin_gql, eventType="SESSION_EXPIRED", eventTypes=["RESOURCE_CREATED"])
    assert got == ["SESSION_EXPIRED", "RESOURCE_CREATED"]


@pytest.mark.parametrize(
    ("needle", "expected"),
    [
        ("bob.builder", ["RESOURCE_CREATED", "USER_LOGIN"]),
        ("BUILDER@EXAMPLE", ["RESOURCE_CREATED", "USER_LOGIN"]),
        ("  builder  ", ["RESOURCE_CREATED", "USER_LOGIN"]),
        ("_y%", ["CREDENTIAL_DELETED"]),
        ("x%z", []),  # % is a literal character, not a wildcard
        ("x_y", ["CREDENTIAL_DELETED"]),
        ("xay", []),  # _ is a literal character too
        ("other.test", []),  # another organization's user
    ],
)
def test_user_email_substring(
    admin_gql: GraphQLClient, entries: dict[str, AuditLog], needle: str, expected: list[str]
) -> None:
    assert events(admin_gql, userEmail=needle) == expected


def test_blank_user_email_is_no_filter(
    admin_gql: GraphQLClient, entries: dict[str, AuditLog]
) -> None:
    assert len(events(admin_gql, userEmail="   ", **WINDOW)) == 4


def test_from_and_to_are_inclusive(admin_gql: GraphQLClient, entries: dict[str, AuditLog]) -> None:
    exact = {"from": T0.isoformat(), "to": (T0 + timedelta(hours=1)).isoformat()}
    assert events(admin_gql, **exact) == ["RESOURCE_CREATED", "USER_LOGIN"]
    one_microsecond_inside = {
        "from": (T0 + timedelta(microseconds=1)).isoformat(),
        "to": (T0 + timedelta(hours=1) - timedelta(microseconds=1)).isoformat(),
    }
    assert events(admin_gql, **one_microsecond_inside) == []
    assert events(admin_gql, **{"from": (T0 + timedelta(hours=3)).isoformat()})[-1:] == [
        "SESSION_EXPIRED"
    ]
    assert events(admin_gql, to=T0.isoformat())[:1] == ["USER_LOGIN"]


def test_from_equal_to_to_is_one_instant(
    admin_gql: GraphQLClient, entries: dict[str, AuditLog]
) -> None:
    assert events(admin_gql, **{"from": T0.isoformat(), "to": T0.isoformat()}) == ["USER_LOGIN"]


def test_times_with_an_offset_and_without_one(
    admin_gql: GraphQLClient, entries: dict[str, AuditLog]
) -> None:
    # 11:30 at +02:00 is 09:30 UTC; a time without an offset is UTC.
    assert events(
        admin_gql, **{"from": "2026-04-01T11:30:00+02:00", "to": "2026-04-01T09:30:00"}
    ) == ["USER_LOGIN"]


def test_every_filter_combined(admin_gql: GraphQLClient, entries: dict[str, AuditLog]) -> None:
    got = events(
        admin_gql,
        eventType="USER_LOGIN",
        eventTypes=["RESOURCE_CREATED", "CREDENTIAL_DELETED"],
        userEmail="BOB",
        **{"from": (T0 + timedelta(minutes=30)).isoformat()},
        to=(T0 + timedelta(hours=2)).isoformat(),
    )
    assert got == ["RESOURCE_CREATED"]


def test_system_events_never_match_an_email(
    admin_gql: GraphQLClient, entries: dict[str, AuditLog]
) -> None:
    assert "SESSION_EXPIRED" not in events(admin_gql, userEmail="e")


def test_user_of_an_entry_is_the_snapshot(
    admin_gql: GraphQLClient, entries: dict[str, AuditLog]
) -> None:
    body = admin_gql.post(QUERY, {"filter": {"eventType": "USER_LOGIN", **WINDOW}})
    node = data_of(body)["auditLogs"]["edges"][0]["node"]
    assert node["user"] == {"email": "bob.builder@example.test"}
