"""Tenant isolation as a property: for random organizations, users, entries, filters and
cursors, an administrator only ever sees their own organization's entries, in order, and
totalCount matches a brute-force count over every row of the table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from strawberry.relay import from_base64

from audit.events import AuditEventType as E
from audit.models import AuditLog
from audit.services import AuditEntryDraft, audit_log_bulk_create
from core.models import Organization
from core.services import api_token_create, organization_create, user_create
from tests.graphql_api.conftest import GraphQLClient, data_of, error_codes

pytestmark = pytest.mark.django_db

QUERY = """
query Page($first: Int, $after: String, $filter: AuditLogFilter) {
  auditLogs(first: $first, after: $after, filter: $filter) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id } }
  }
}
"""

T0 = datetime(2026, 1, 1, tzinfo=UTC)
# Few distinct values, so that filters often match, times often tie, and emails share
# substrings (including the characters LIKE treats specially).
EMAILS = ["Ann@a.test", "ann.b@b.test", "b_n@a.test", "x%y@b.test", "ANNA@c.test"]
NEEDLES = ["ann", "AN", "_", "%", "@a.", "b_n", "x%y", "zzz", "."]
EVENTS = [E.USER_LOGIN, E.RESOURCE_CREATED, E.CREDENTIAL_DELETED, E.SESSION_EXPIRED]

entry = st.tuples(
    st.sampled_from(EVENTS),
    st.integers(min_value=0, max_value=20),  # minutes after T0: many ties
    st.none() | st.sampled_from(EMAILS),
)
tenants = st.lists(st.lists(entry, min_size=3, max_size=14), min_size=2, max_size=3)
filters = st.fixed_dictionaries(
    {},
    optional={
        "eventType": st.sampled_from(EVENTS).map(str),
        "eventTypes": st.lists(st.sampled_from(EVENTS).map(str), min_size=1, max_size=3),
        "userEmail": st.sampled_from(NEEDLES),
        "from": st.integers(0, 20).map(lambda m: (T0 + timedelta(minutes=m)).isoformat()),
        "to": st.integers(0, 20).map(lambda m: (T0 + timedelta(minutes=m)).isoformat()),
    },
)


@dataclass
class Row:
    id: int
    organization_id: int
    event: str
    email: str | None
    time: datetime


def brute_force(rows: list[Row], organization_id: int, f: dict[str, Any]) -> list[int]:
    def keep(r: Row) -> bool:
        if r.organization_id != organization_id:
            return False
        if "eventType" in f or "eventTypes" in f:
            wanted = {f.get("eventType"), *f.get("eventTypes", [])}
            if r.event not in wanted:
                return False
        if "userEmail" in f and (r.email is None or f["userEmail"].lower() not in r.email.lower()):
            return False
        if "from" in f and r.time < datetime.fromisoformat(f["from"]):
            return False
        return not ("to" in f and r.time > datetime.fromisoformat(f["to"]))

    return [r.id for r in sorted(filter(keep, rows), key=lambda r: (r.time, r.id), reverse=True)]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    data=tenants,
    caller_index=st.integers(min_value=0, max_value=2),
    f=filters,
    size=st.integers(min_value=1, max_value=6),
    foreign_index=st.integers(min_value=0, max_value=50),
)
# Cases that random search reaches only rarely: matching without regard to case, and LIKE's
# special characters taken literally.
@example(
    data=[
        [(E.USER_LOGIN, 1, "Ann@a.test"), (E.USER_LOGIN, 1, "ann.b@b.test")],
        [(E.USER_LOGIN, 1, "ANNA@c.test")],
    ],
    caller_index=0,
    f={"userEmail": "aNN"},
    size=1,
    foreign_index=0,
)
@example(
    data=[
        [
            (E.USER_LOGIN, 2, "b_n@a.test"),
            (E.USER_LOGIN, 2, "bxn@a.test"),
            (E.USER_LOGIN, 3, "x%y@b.test"),
            (E.USER_LOGIN, 4, "xzy@b.test"),
        ],
        [],
    ],
    caller_index=0,
    f={"userEmail": "_"},
    size=2,
    foreign_index=1,
)
@example(
    data=[[(E.USER_LOGIN, 3, "x%y@b.test"), (E.USER_LOGIN, 4, "xzy@b.test")], []],
    caller_index=0,
    f={"userEmail": "x%y"},
    size=2,
    foreign_index=1,
)
def test_an_admin_sees_exactly_their_organizations_matching_entries(
    db: None,
    data: list[list[tuple[str, int, str | None]]],
    caller_index: int,
    f: dict[str, Any],
    size: int,
    foreign_index: int,
) -> None:
    with transaction.atomic():
        organizations: list[Organization] = []
        tokens: list[str] = []
        for n, entries in enumerate(data):
            org = organization_create(slug=f"tenant{n}", name=f"Tenant {n}", plan="paid")
            admin = user_create(organization=org, email=f"admin@tenant{n}.test", is_admin=True)
            audit_log_bulk_create(
                organization=org,
                drafts=[
                    AuditEntryDraft(event=event, time=T0 + timedelta(minutes=m), user_email=email)
                    for event, m, email in entries
                ],
            )
            organizations.append(org)
            tokens.append(api_token_create(user=admin)[1])
        rows = [
            Row(r.pk, r.organization_id, r.event, r.actor_email, r.time)
            for r in AuditLog.objects.all()
        ]
        caller = caller_index % len(organizations)
        gql = GraphQLClient(Client(), token=tokens[caller])
        body = gql.post(QUERY, {"first": size, "filter": f})
        if "from" in f and "to" in f and f["from"] > f["to"]:
            assert error_codes(body) == ["BAD_USER_INPUT"]
            transaction.set_rollback(True)
            return

        expected = brute_force(rows, organizations[caller].pk, f)
        seen: list[int] = []
        cursors: list[str] = []
        while True:
            connection = data_of(body)["auditLogs"]
            assert connection["totalCount"] == len(expected)
            seen.extend(int(from_base64(e["node"]["id"])[1]) for e in connection["edges"])
            cursors.extend(e["cursor"] for e in connection["edges"])
            if not connection["pageInfo"]["hasNextPage"]:
                break
            after = connection["pageInfo"]["endCursor"]
            body = gql.post(QUERY, {"first": size, "after": after, "filter": f})
        assert seen == expected

        # Every cursor this admin was given is refused to every other organization's admin,
        # with no data.
        if cursors:
            other = (caller + 1) % len(organizations)
            stolen = cursors[foreign_index % len(cursors)]
            refused = gql.post(QUERY, {"first": size, "after": stolen}, token=tokens[other])
            assert error_codes(refused) == ["BAD_USER_INPUT"]
            assert refused["data"] is None
        transaction.set_rollback(True)
