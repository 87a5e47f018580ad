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
from django.db import connection

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
            ip=_address(rng),
            details={"resource": f"vm-{rng.randrange(500)}", "note": f"w{rng.randrange(300)} done"},
        )


def _address(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.5:
        return f"203.0.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    if roll < 0.95:
        return f"198.{rng.randrange(40, 60)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    return f"2001:db8::{rng.randrange(1, 65535):x}"


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
        "audit_log_org_email_covering",
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
        "audit_log_org_email_covering",
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


def _statements_of(read: Any) -> list[tuple[str, Any]]:
    """The statements (SQL and parameters) that ``read()`` sends."""
    sent: list[tuple[str, Any]] = []

    def capture(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        sent.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        read()
    return sent


def test_an_email_search_reads_the_entries_of_its_page_and_indexes_only(
    big_org: Organization,
) -> None:
    """An email search with an event type and a window (the admin page's every filter):
    the page's ids, the look past them and the total come from index-only scans (the
    email index carries the event, the per-actor rollups their counts), and only the
    page's own entries are read from the table, by id."""
    from audit.filters import AuditLogFilter
    from audit.page_sql import audit_log_page_rows

    refresh_statistics(
        "audit_log",
        "audit_count_actor_day",
        "audit_count_actor_month",
        "audit_actor_email",
        vacuum=True,
    )
    filters = AuditLogFilter.build(
        event_type="USER_LOGIN",
        user_email="user7",  # user7, user70-79 and user170-179: 21 of the 200 addresses
        time_from=MID + timedelta(minutes=17),
        time_to=MID + timedelta(days=120, minutes=43),
    )
    ((sql, params),) = _statements_of(
        lambda: audit_log_page_rows(
            organization=big_org,
            filters=filters,
            first=50,
            with_total=True,
            columns=("id", "time", "event", "details_json"),
        )
    )
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        raw = cursor.fetchone()[0]
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    problems, table_reads = [], 0
    for node in plan_nodes(plan):
        relation = node.get("Relation Name", "")
        read = node.get("Actual Rows", 0) * node.get("Actual Loops", 1)
        if relation.startswith("audit_count_actor") and node["Node Type"] != "Index Only Scan":
            problems.append(f"{relation}: {node['Node Type']}")
        if relation == "audit_log" and node["Node Type"] == "Index Only Scan":
            continue
        if relation == "audit_log" and node.get("Index Name") == "audit_log_pkey":
            if read > 51:
                problems.append(f"the page read {read} entries by id")
        elif relation == "audit_log":
            # Where the planner counts a stretch of minutes at the window's ends another
            # way (about one entry per 8 minutes here).
            table_reads += read
    if table_reads > 10:
        problems.append(f"{table_reads} entries read from the table beyond the page")
    assert not problems, "\n".join(problems) + "\n" + json.dumps(plan)


def test_an_email_search_page_reads_about_one_page_of_entries(big_org: Organization) -> None:
    """21 addresses of about 300 entries each: the page reads a few entries of each
    address to find where the page ends, then each address up to there (about 3 x 21 +
    51 + 21 entries), not a page of 51 from each address (21 x 51 = 1,071)."""
    from audit.filters import AuditLogFilter
    from audit.page_sql import audit_log_page_rows

    refresh_statistics("audit_log", "audit_actor_email", vacuum=True)
    for first in (50, 100):
        ((sql, params),) = _statements_of(
            lambda first=first: audit_log_page_rows(
                organization=big_org,
                filters=AuditLogFilter.build(user_email="user7"),
                first=first,
                columns=("id", "time"),
            )
        )
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
            raw = cursor.fetchone()[0]
        plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
        read = sum(
            node.get("Actual Rows", 0) * node.get("Actual Loops", 1)
            for node in plan_nodes(plan)
            if node.get("Index Name") == "audit_log_org_email_covering"
        )
        # Each address's first entries (first // 21 + 2 of them), then up to the bound.
        assert read <= 21 * (first // 21 + 2) + first + 1 + 21, (first, read, json.dumps(plan))


SEARCH_SHAPES: list[tuple[str, dict[str, Any], set[str]]] = [
    ("ip /24", {"ip": "203.0.113.0/24"}, {"audit_log_org_ip_time"}),
    ("ip /16", {"ip": "203.0.0.0/16"}, {"audit_log_org_ip_time", "audit_log_org_time"}),
    ("ip v6 /64", {"ip": "2001:db8::/64"}, {"audit_log_org_ip_time"}),
    ("one word", {"search": "w17"}, {"audit_log_details_words"}),
    ("two words", {"search": "W17 done"}, {"audit_log_details_words"}),
    ("containment", {"details": {"resource": "vm-17"}}, {"audit_log_details_contains"}),
]


@pytest.mark.parametrize("window", [False, True], ids=["all time", "30 days"])
def test_every_search_shape_reads_by_index(big_org: Organization, window: bool) -> None:
    """The page and total of each ip, search and details shape, as the page statement
    sends them (audit/page_sql.py), with and without a 30-day window: no sequential scan
    of the audit table, and the search's own index (or, with a window, the time index)."""
    from audit.filters import AuditLogFilter
    from audit.page_sql import audit_log_page_rows

    refresh_statistics("audit_log", vacuum=True)
    problems = []
    for name, fields, indexes in SEARCH_SHAPES:
        bounds: dict[str, Any] = (
            {"time_from": MID, "time_to": MID + timedelta(days=30)} if window else {}
        )
        filters = AuditLogFilter.build(**fields, **bounds)
        expected = indexes | ({"audit_log_org_time"} if window else set())
        ((sql, params),) = _statements_of(
            lambda filters=filters: audit_log_page_rows(
                organization=big_org, filters=filters, first=50, with_total=True
            )
        )
        plan = query_plan(sql, params)
        nodes = list(plan_nodes(plan))
        scans = [n for n in nodes if n.get("Relation Name") == "audit_log"]
        used = {n.get("Index Name") for n in nodes}
        if any(n["Node Type"] == "Seq Scan" for n in scans) or not used & expected:
            problems.append(f"{name}: {json.dumps(plan)}")
    assert not problems, "\n".join(problems)
