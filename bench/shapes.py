"""The request shapes of the benchmark (S1-S8), as the admin page and integrations send
them, and S0, the stack's own cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

NODE = "cursor node { id event time ip details user { email name } }"
PAGE = f"pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }} edges {{ {NODE} }}"
QUERY_PAGE = (
    "query Page($filter: AuditLogFilter, $after: String) "
    f"{{ auditLogs(first: 50, filter: $filter, after: $after) {{ {PAGE} }} }}"
)
QUERY_PAGE_TOTAL = (
    "query PageTotal($filter: AuditLogFilter, $after: String) "
    f"{{ auditLogs(first: 50, filter: $filter, after: $after) {{ totalCount {PAGE} }} }}"
)
QUERY_TOTAL = "query Total($filter: AuditLogFilter) { auditLogs(filter: $filter) { totalCount } }"

# A person's name: the users called Grace (one in twenty of the organization's users).
EMAIL_SEARCH = "grace"
DEEP = 10_000


@dataclass(frozen=True)
class Shape:
    name: str
    title: str
    query: str
    variables: dict[str, Any] = field(default_factory=dict)


def shapes(now: datetime, deep_cursor: str) -> list[Shape]:
    # A 30-day window that starts and ends mid-hour, as a date-time picker sends it.
    window = {
        "from": (now - timedelta(days=60, minutes=17)).isoformat(),
        "to": (now - timedelta(days=30, minutes=43)).isoformat(),
    }
    return [
        # Not a shape of the issue: what the stack costs before any work (no token lookup,
        # no SQL), the floor under every other line.
        Shape("S0", "baseline: { __typename } only", "{ __typename }"),
        Shape("S1", "page only, no filter", QUERY_PAGE),
        Shape("S2", "page + total, no filter", QUERY_PAGE_TOTAL),
        Shape(
            "S3",
            "page + total, eventType",
            QUERY_PAGE_TOTAL,
            {"filter": {"eventType": "USER_LOGIN"}},
        ),
        Shape(
            "S4",
            "page + total, userEmail substring",
            QUERY_PAGE_TOTAL,
            {"filter": {"userEmail": EMAIL_SEARCH}},
        ),
        Shape("S5", "page + total, 30-day window", QUERY_PAGE_TOTAL, {"filter": window}),
        Shape(
            "S6",
            "page + total, all filters",
            QUERY_PAGE_TOTAL,
            {"filter": {"eventType": "USER_LOGIN", "userEmail": EMAIL_SEARCH, **window}},
        ),
        Shape("S7", f"page only, {DEEP:,} deep (keyset)", QUERY_PAGE, {"after": deep_cursor}),
        Shape(
            "S8",
            "total only, last 365 days",
            QUERY_TOTAL,
            {"filter": {"from": (now - timedelta(days=365)).isoformat(), "to": now.isoformat()}},
        ),
    ]
