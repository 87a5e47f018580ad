"""The audit_log indexes serve every filter of the auditLogs API with its newest-first order.

Checked with EXPLAIN on a table large enough (and ANALYZEd) for the planner to prefer a
sequential scan if no index fitted.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from audit.events import AuditEventType
from audit.services import AuditEntryDraft, audit_log_bulk_create
from core.models import Organization
from tests.support import TRANSACTIONAL, plan_nodes, query_plan, refresh_statistics

# ANALYZE is the owner's, and sees only committed rows.
pytestmark = TRANSACTIONAL

ROWS = 60_000
START = datetime(2026, 1, 1, tzinfo=UTC)


def _drafts(count: int, seed: int) -> Iterator[AuditEntryDraft]:
    rng = random.Random(seed)
    events = AuditEventType.values
    for i in range(count):
        yield AuditEntryDraft(
            event=rng.choice(events),
            time=START + timedelta(seconds=i * 500),
            user_email=f"user{rng.randrange(200)}@example.test",
            ip="203.0.113.1",
        )


@pytest.fixture
def big_org(make_org: Any) -> Organization:
    org: Organization = make_org("paid")
    other: Organization = make_org("paid")
    audit_log_bulk_create(organization=org, drafts=_drafts(ROWS, 1))
    audit_log_bulk_create(organization=other, drafts=_drafts(ROWS // 3, 2))
    refresh_statistics("audit_log")
    return org


PAGE = "SELECT * FROM audit_log WHERE organization_id = %s {where} ORDER BY time DESC, id DESC LIMIT 50"
COUNT = "SELECT count(*) FROM audit_log WHERE organization_id = %s {where}"
MID = START + timedelta(days=120)

SHAPES: list[tuple[str, str, str, list[Any], str | None]] = [
    ("page, no filter", PAGE, "", [], "audit_log_org_time"),
    ("page, event type", PAGE, "AND event = %s", ["ROLE_CREATED"], "audit_log_org_event_time"),
    (
        "page, several event types",
        PAGE,
        "AND event = ANY(%s)",
        [["RESOURCE_CREATED", "CREDENTIAL_DELETED"]],
        None,
    ),
    (
        "page, time window",
        PAGE,
        "AND time BETWEEN %s AND %s",
        [MID, MID + timedelta(days=30)],
        "audit_log_org_time",
    ),
    (
        "page, event type + window",
        PAGE,
        "AND event = %s AND time BETWEEN %s AND %s",
        ["USER_LOGIN", MID, MID + timedelta(days=30)],
        "audit_log_org_event_time",
    ),
    (
        "page, exact email",
        PAGE,
        "AND actor_email = %s",
        ["user7@example.test"],
        "audit_log_org_email_time",
    ),
    (
        "page, keyset 40k deep",
        PAGE,
        "AND (time, id) < (%s, %s)",
        [START + timedelta(seconds=500 * 20_000), 1 << 40],
        "audit_log_org_time",
    ),
    ("count, event type", COUNT, "AND event = %s", ["ROLE_CREATED"], "audit_log_org_event_time"),
    (
        "count, time window",
        COUNT,
        "AND time BETWEEN %s AND %s",
        [MID, MID + timedelta(days=30)],
        "audit_log_org_time",
    ),
    (
        "count, exact email",
        COUNT,
        "AND actor_email = %s",
        ["user7@example.test"],
        "audit_log_org_email_time",
    ),
]


def test_every_query_shape_uses_an_index(big_org: Organization) -> None:
    # One table for all shapes: building it is the slow part.
    problems = []
    for name, template, where, params, index in SHAPES:
        plan = query_plan(template.format(where=where), [big_org.pk, *params])
        nodes = list(plan_nodes(plan))
        scans = [n for n in nodes if n.get("Relation Name") == "audit_log"]
        used = {n.get("Index Name") for n in nodes}
        expected = {index} if index else {"audit_log_org_event_time", "audit_log_org_time"}
        if not scans or any(n["Node Type"] == "Seq Scan" for n in scans) or not used & expected:
            problems.append(f"{name}: {json.dumps(plan)}")
    assert not problems, "\n".join(problems)
