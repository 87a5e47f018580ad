"""recordAuditEvents: batch ingestion with idempotency keys, all or nothing, write-scoped."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from strawberry import relay

from audit.models import AuditCountDay, AuditLog
from audit.selectors import AuditLogFilter, audit_log_count
from audit.services import BATCH_MAX_EVENTS
from core.models import ApiTokenScope, Organization, User
from core.services import api_token_create, api_token_revoke
from tests.graphql_api.conftest import GraphQLClient, data_of, error_codes
from tests.support import valid_details

pytestmark = pytest.mark.django_db


def ingested(org: Organization | None) -> Any:
    """The organization's entries that came through recordAuditEvents (creating
    organizations and users records entries of its own)."""
    return AuditLog.objects.filter(organization=org, idempotency_key__isnull=False)


RECORD = """
mutation Record($events: [AuditEventInput!]!) {
  recordAuditEvents(events: $events) { events { id cursor created } }
}
"""
PAGE_AFTER = """
query Page($after: String) {
  auditLogs(first: 100, after: $after) { totalCount edges { node { id event ip details time user { email name } } } }
}
"""


def writer_token(user: User) -> str:
    return api_token_create(user=user, name="ingest", scopes=(ApiTokenScope.AUDIT_WRITE,))[1]


@pytest.fixture
def writer(admin: User) -> GraphQLClient:
    return GraphQLClient(Client(), token=writer_token(admin))


def event(key: str, **fields: Any) -> dict[str, Any]:
    """RESOURCE_CREATED, with the one key its details require, unless ``fields`` say otherwise."""
    return {
        "idempotencyKey": key,
        "event": "RESOURCE_CREATED",
        "details": {"resource": "vm-1"},
        **fields,
    }


def problems_of(body: dict[str, Any]) -> set[tuple[int, str]]:
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    return {(p["index"], p["field"]) for p in error["extensions"]["problems"]}


def test_records_every_field_into_the_token_organization(
    writer: GraphQLClient, admin: User, make_user: Callable[..., User], other_paid_org: Organization
) -> None:
    org = admin.organization
    member = make_user(org, email="Ops@Example.com", name="Ops")
    moment = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    events = [
        event(
            "k-1",
            event="CREDENTIAL_CREATED",
            userEmail=member.email.upper(),
            ip="::ffff:10.0.0.7",
            details={"credential": "AKIA1", "kind": "aws-access-key", "n": 1},
            time=moment.isoformat(),
        ),
        event("k-2", userEmail="outsider@elsewhere.test", ip="2001:db8::1"),
        event("k-3"),
    ]
    before = timezone.now()
    recorded = data_of(writer.post(RECORD, {"events": events}))["recordAuditEvents"]["events"]
    assert [e["created"] for e in recorded] == [True, True, True]

    entries = {e.pk: e for e in AuditLog.objects.filter(organization=org)}
    ids = [int(relay.from_base64(e["id"])[1]) for e in recorded]
    first, second, third = (entries[i] for i in ids)
    assert (first.event, first.actor_id, first.actor_email, first.actor_name) == (
        "CREDENTIAL_CREATED",
        member.pk,
        member.email,
        "Ops",
    )
    assert (first.ip, first.details, first.time, first.idempotency_key) == (
        "10.0.0.7",
        {"credential": "AKIA1", "kind": "aws-access-key", "n": 1},
        moment,
        "k-1",
    )
    assert (second.actor_id, second.actor_email, second.ip) == (
        None,
        "outsider@elsewhere.test",
        "2001:db8::1",
    )
    assert (
        third.actor_email is None and third.details == {"resource": "vm-1"} and third.time >= before
    )
    assert not ingested(other_paid_org).exists()

    # Read back through auditLogs with the same ids; the returned cursor pages from there.
    page = data_of(GraphQLClient(Client(), token=writer.token).post(PAGE_AFTER))["auditLogs"]
    assert {n["node"]["id"] for n in page["edges"]} >= {e["id"] for e in recorded}
    older = data_of(writer.post(PAGE_AFTER, {"after": recorded[2]["cursor"]}))["auditLogs"]
    assert all(n["node"]["id"] != recorded[2]["id"] for n in older["edges"])


def test_a_retried_batch_records_nothing_twice_and_returns_the_same_ids(
    writer: GraphQLClient, admin: User
) -> None:
    events = [event(f"retry-{n}", details={"resource": "vm-1", "n": n}) for n in range(5)]
    first = data_of(writer.post(RECORD, {"events": events}))["recordAuditEvents"]["events"]
    # The same batch again, and one that overlaps it with two new keys.
    again = data_of(writer.post(RECORD, {"events": events}))["recordAuditEvents"]["events"]
    overlap = [*events[3:], event("retry-5"), event("retry-6")]
    mixed = data_of(writer.post(RECORD, {"events": overlap}))["recordAuditEvents"]["events"]

    assert [e["id"] for e in again] == [e["id"] for e in first]
    assert [e["created"] for e in again] == [False] * 5
    assert [e["id"] for e in mixed[:2]] == [e["id"] for e in first[3:]]
    assert [e["created"] for e in mixed] == [False, False, True, True]
    assert ingested(admin.organization).count() == 7


def test_keys_are_per_organization(
    writer: GraphQLClient, make_user: Callable[..., User], other_paid_org: Organization
) -> None:
    other = GraphQLClient(Client(), token=writer_token(make_user(other_paid_org)))
    mine = data_of(writer.post(RECORD, {"events": [event("shared")]}))
    theirs = data_of(other.post(RECORD, {"events": [event("shared")]}))
    assert mine != theirs
    assert theirs["recordAuditEvents"]["events"][0]["created"] is True
    assert ingested(other_paid_org).count() == 1


def test_any_invalid_event_refuses_the_whole_batch_naming_each(
    writer: GraphQLClient, admin: User
) -> None:
    soon = timezone.now() + timedelta(minutes=4)
    late = timezone.now() + timedelta(minutes=6)
    events = [
        event("ok-0", time=soon.isoformat()),
        event("ok-1", ip="300.1.1.1"),
        event("ok-2", time=late.isoformat()),
        event("ok-0"),
        event(" "),
        event("ok-5", details=[1, 2]),
        event("ok-6", details={"bad": "nul\u0000byte"}),
        event("k" * 201),
        event("ok-8", userEmail="x" * 255),
        event("ok-9", ip="10.0.0.1"),
        # Before 1900 once in UTC (this one is year 0 there, which PostgreSQL refuses).
        event("ok-10", time="0001-01-01T00:00:00+14:00"),
        event("AUDIT_LOG_PRUNED", event="AUDIT_LOG_PRUNED"),
    ]
    body = writer.post(RECORD, {"events": events})
    assert body["data"] is None
    assert problems_of(body) == {
        (1, "ip"),
        (2, "time"),
        (3, "idempotencyKey"),
        (4, "idempotencyKey"),
        (5, "details"),
        (6, "details"),
        (7, "idempotencyKey"),
        (8, "userEmail"),
        (10, "time"),
        (11, "event"),
    }
    message = body["errors"][0]["message"]
    assert "events[1].ip" in message and "10 problem(s)" in message
    reserved = [p for p in body["errors"][0]["extensions"]["problems"] if p["index"] == 11]
    assert "recorded by the audit log itself" in reserved[0]["message"]
    assert body["errors"][0]["extensions"]["problemCount"] == 10
    assert not ingested(admin.organization).exists()
    rollup_total = sum(
        AuditCountDay.objects.filter(organization=admin.organization).values_list("n", flat=True)
    )
    assert rollup_total == AuditLog.objects.filter(organization=admin.organization).count()


def test_an_unknown_event_type_is_refused_before_anything_runs(writer: GraphQLClient) -> None:
    body = writer.post(RECORD, {"events": [event("a", event="NOT_AN_EVENT")]})
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert not AuditLog.objects.filter(idempotency_key__isnull=False).exists()


def test_batch_size_limit(writer: GraphQLClient, admin: User) -> None:
    too_many = [event(f"n{n}") for n in range(BATCH_MAX_EVENTS + 1)]
    body = writer.post(RECORD, {"events": too_many})
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert f"at most {BATCH_MAX_EVENTS}" in body["errors"][0]["message"]
    assert not ingested(admin.organization).exists()
    exactly = [event(f"n{n}") for n in range(BATCH_MAX_EVENTS)]
    assert len(
        data_of(writer.post(RECORD, {"events": exactly}))["recordAuditEvents"]["events"]
    ) == (BATCH_MAX_EVENTS)
    empty = data_of(writer.post(RECORD, {"events": []}))
    assert empty == {"recordAuditEvents": {"events": []}}


def test_ingested_events_keep_the_totals_exact(writer: GraphQLClient, admin: User) -> None:
    org = admin.organization
    assert org is not None
    base = datetime(2026, 1, 31, 23, 0, tzinfo=UTC)
    kinds = ["RESOURCE_CREATED", "ROLE_UPDATED", "USER_LOGIN"]
    events = [
        event(
            f"t{n}",
            event=kinds[n % 3],
            details=valid_details(kinds[n % 3]),
            userEmail=f"user{n % 4}@example.test" if n % 5 else None,
            time=(base + timedelta(minutes=17 * n)).isoformat(),
        )
        for n in range(300)
    ]
    data_of(writer.post(RECORD, {"events": events}))
    data_of(writer.post(RECORD, {"events": events[:100]}))  # a retry adds nothing
    window_from, window_to = base + timedelta(hours=5), base + timedelta(days=2, hours=3)
    for filters in [
        AuditLogFilter(),
        AuditLogFilter.build(event_type="ROLE_UPDATED"),
        AuditLogFilter.build(user_email="USER1@"),
        AuditLogFilter.build(time_from=window_from, time_to=window_to),
        AuditLogFilter.build(event_type="USER_LOGIN", user_email="user2", time_from=window_from),
    ]:
        rows = AuditLog.objects.filter(organization=org)
        if filters.event_types:
            rows = rows.filter(event__in=[e.value for e in filters.event_types])
        if filters.user_email:
            rows = rows.filter(actor_email__icontains=filters.user_email)
        if filters.time_from:
            rows = rows.filter(time__gte=filters.time_from)
        if filters.time_to:
            rows = rows.filter(time__lte=filters.time_to)
        assert audit_log_count(organization=org, filters=filters) == rows.count() > 0


@pytest.mark.parametrize(
    ("caller", "code"),
    [
        ("anonymous", "UNAUTHENTICATED"),
        ("revoked writer", "UNAUTHENTICATED"),
        ("read token of an admin", "FORBIDDEN"),
        ("session of an admin", "FORBIDDEN"),
    ],
)
def test_who_may_not_record(caller: str, code: str, admin: User) -> None:
    client = GraphQLClient(Client())
    if caller == "revoked writer":
        token, client.token = api_token_create(user=admin, scopes=(ApiTokenScope.AUDIT_WRITE,))
        api_token_revoke(token=token)
    elif caller == "read token of an admin":
        client.token = api_token_create(user=admin)[1]
    elif caller == "session of an admin":
        client.client.force_login(admin)
    body = client.post(RECORD, {"events": [event("x")]})
    assert error_codes(body) == [code]
    assert body["data"] is None
    assert not AuditLog.objects.filter(idempotency_key="x").exists()


@pytest.mark.parametrize("plan", ["paid", "free"])
def test_any_member_with_a_write_token_records_but_reads_only_as_their_role_allows(
    plan: str, make_org: Callable[..., Organization], make_user: Callable[..., User]
) -> None:
    org = make_org(plan)
    member = make_user(org)  # not an administrator
    client = GraphQLClient(Client(), token=writer_token(member))
    data_of(client.post(RECORD, {"events": [event("m-1")]}))
    assert AuditLog.objects.filter(organization=org, idempotency_key="m-1").exists()
    assert error_codes(client.post(PAGE_AFTER)) == ["FORBIDDEN"]


def test_a_write_token_of_a_paid_admin_reads_too(writer: GraphQLClient, admin: User) -> None:
    data_of(writer.post(RECORD, {"events": [event("r-1")]}))
    total = data_of(writer.post(PAGE_AFTER))["auditLogs"]["totalCount"]
    assert total == AuditLog.objects.filter(organization=admin.organization).count()


def test_a_write_token_of_a_free_plan_admin_cannot_read(
    make_org: Callable[..., Organization], make_user: Callable[..., User]
) -> None:
    free_admin = make_user(make_org("free"), admin=True)
    client = GraphQLClient(Client(), token=writer_token(free_admin))
    data_of(client.post(RECORD, {"events": [event("f-1")]}))
    assert error_codes(client.post(PAGE_AFTER)) == ["PAID_PLAN_REQUIRED"]
