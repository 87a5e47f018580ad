"""The SQL that auditLogs actually runs uses an index for every filter shape: no
sequential scan of audit_log, on a table large enough (and ANALYZEd) for the planner to
prefer one if no index fitted, and vacuumed as autovacuum would leave it. The statements are captured from real API requests, so a
change to the selector or the resolver is checked too."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.events import AuditEventType as E
from audit.services import AuditEntryDraft, audit_log_bulk_create
from core.models import Organization, User
from tests.graphql_api.conftest import GraphQLClient, data_of
from tests.support import TRANSACTIONAL, plan_nodes, query_plan, refresh_statistics

# VACUUM cannot run inside the test's transaction: this module commits, and the tables are
# emptied afterwards.
pytestmark = TRANSACTIONAL

ROWS = 30_000
OTHER_TENANTS = 3  # the caller's organization is a quarter of the table, as among tenants
START = datetime(2026, 1, 1, tzinfo=UTC)
MID = START + timedelta(seconds=500 * ROWS // 2)

QUERY = """
query($filter: AuditLogFilter, $first: Int, $after: String, $last: Int, $before: String) {
  auditLogs(filter: $filter, first: $first, after: $after, last: $last, before: $before) {
    totalCount pageInfo { hasNextPage hasPreviousPage endCursor }
    edges { cursor node { id event time ip details user { email } } }
  }
}
"""
TOTAL_ONLY = "query($filter: AuditLogFilter) { auditLogs(filter: $filter) { totalCount } }"


def _drafts(count: int, seed: int) -> Iterator[AuditEntryDraft]:
    rng = random.Random(seed)
    # A realistic mix: many sign-ins, few changes; 5% system events without a user.
    weights = {E.USER_LOGIN: 40, E.SESSION_STARTED: 20, E.RESOURCE_UPDATED: 10}
    events = [e for e in E.values for _ in range(weights.get(e, 2))]  # type: ignore[call-overload]
    for i in range(count):
        system = rng.random() < 0.05
        yield AuditEntryDraft(
            event=E.SESSION_EXPIRED if system else rng.choice(events),
            time=START + timedelta(seconds=i * 500),
            user_email=None if system else f"user{rng.randrange(300)}@example.test",
            ip="203.0.113.1",
        )


@pytest.fixture
def big(admin: User, make_org: Callable[..., Organization]) -> Organization:
    org = admin.organization
    assert org is not None
    audit_log_bulk_create(organization=org, drafts=_drafts(ROWS, 1))
    for n in range(OTHER_TENANTS):
        audit_log_bulk_create(organization=make_org("paid"), drafts=_drafts(ROWS, 2 + n))
    # As autovacuum leaves a table in production: statistics, and a visibility map that
    # makes index-only scans (the way to count) possible.
    refresh_statistics("audit_log", "audit_actor_email", vacuum=True)
    return org


WINDOW = {"from": MID.isoformat(), "to": (MID + timedelta(days=30)).isoformat()}
SHAPES: list[tuple[str, str, dict[str, Any]]] = [
    ("no filter", QUERY, {"first": 50}),
    ("total only", TOTAL_ONLY, {}),
    ("event type", QUERY, {"first": 50, "filter": {"eventType": "ROLE_CREATED"}}),
    ("event type, total only", TOTAL_ONLY, {"filter": {"eventType": "USER_LOGIN"}}),
    (
        "several event types",
        QUERY,
        {"first": 50, "filter": {"eventTypes": ["RESOURCE_CREATED", "CREDENTIAL_DELETED"]}},
    ),
    ("user email", QUERY, {"first": 50, "filter": {"userEmail": "user12"}}),
    ("user email, total only", TOTAL_ONLY, {"filter": {"userEmail": "USER1"}}),
    ("30-day window", QUERY, {"first": 50, "filter": WINDOW}),
    (
        "all filters",
        QUERY,
        {"first": 50, "filter": {"eventType": "USER_LOGIN", "userEmail": "user7", **WINDOW}},
    ),
    ("oldest page", QUERY, {"last": 50}),
]


def _audit_statements(gql: GraphQLClient, query: str, variables: dict[str, Any]) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        data_of(gql.post(query, variables))
    return [
        q["sql"]
        for q in captured.captured_queries
        if "audit_log" in q["sql"] or "audit_count" in q["sql"]
    ]


def test_every_shape_the_api_runs_uses_an_index(
    admin_gql: GraphQLClient, big: Organization
) -> None:
    # Shapes that start from a cursor deep in the table.
    first_page = data_of(admin_gql.post(QUERY, {"first": 50}))["auditLogs"]
    deep_cursor = None
    after = first_page["pageInfo"]["endCursor"]
    for _ in range(3):  # a few pages in, then jump with the cursor of an entry mid-table
        page = data_of(admin_gql.post(QUERY, {"first": 100, "after": after}))["auditLogs"]
        after = page["pageInfo"]["endCursor"]
    deep_cursor = after
    shapes = [
        *SHAPES,
        ("keyset forward", QUERY, {"first": 50, "after": deep_cursor}),
        ("keyset backward", QUERY, {"last": 50, "before": deep_cursor}),
        (
            "keyset + event type",
            QUERY,
            {"first": 50, "after": deep_cursor, "filter": {"eventType": "USER_LOGIN"}},
        ),
    ]
    problems: list[str] = []
    for name, query, variables in shapes:
        statements = _audit_statements(admin_gql, query, variables)
        assert statements, name
        for sql in statements:
            plan = query_plan(sql)
            nodes = list(plan_nodes(plan))
            scans = [n for n in nodes if n.get("Relation Name") == "audit_log"]
            if any(n["Node Type"] == "Seq Scan" for n in scans):
                problems.append(f"{name}: {sql}\n{json.dumps(plan, indent=1)}")
            # An email search resolves addresses in the directory first, then reads their
            # index ranges: no entry's email is tested row by row.
            if (
                scans
                and "userEmail" in json.dumps(variables)
                and not any("actor_email" in n.get("Index Cond", "") for n in scans)
            ):
                problems.append(f"{name}: email not used as an index condition\n{sql}")
    assert not problems, "\n\n".join(problems)
