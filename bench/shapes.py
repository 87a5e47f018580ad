"""The request shapes of the benchmark (S1-S8), as the admin page and integrations send
them, S0, the stack's own cost, and S9-S19, the searches by address and details."""

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


# The searches (ip, search, details), on the bench dataset (bench/dataset.py): every
# entry with a user comes from 203.0.X.Y, so a /24 holds about 0.37% of the entries and
# the /16 about 95%; the word and the containment each match under 1%.
IP_24 = "203.0.113.0/24"
IP_16 = "203.0.0.0/16"
SEARCH_WORD = "7200"  # a session extended by two hours (extended_by_seconds)
CONTAINS = {"region": "ap-south-1", "kind": "database"}


def search_shapes(now: datetime) -> list[Shape]:
    window = {
        "from": (now - timedelta(days=60, minutes=17)).isoformat(),
        "to": (now - timedelta(days=30, minutes=43)).isoformat(),
    }
    searches: list[tuple[str, dict[str, Any]]] = [
        ("ip /24", {"ip": IP_24}),
        ("ip /16", {"ip": IP_16}),
        ("one word", {"search": SEARCH_WORD}),
        ("containment", {"details": CONTAINS}),
    ]
    found = []
    number = 9
    for title, search in searches:
        # The /16's total over all time would count 95% of the entries: past the limit
        # (AUDIT_LOG_SEARCH_TOTAL_MAX), refused; its page alone is measured.
        wide = search.get("ip") == IP_16
        query, what = (QUERY_PAGE, "page only") if wide else (QUERY_PAGE_TOTAL, "page + total")
        found.append(Shape(f"S{number}", f"{what}, {title}", query, {"filter": search}))
        found.append(
            Shape(
                f"S{number + 1}",
                f"page + total, {title}, 30-day window",
                QUERY_PAGE_TOTAL,
                {"filter": {**search, **window}},
            )
        )
        number += 2
    # The page alone, as an integration paging through a search sends it: what must stay
    # flat as the log grows.
    for title, search in searches:
        if search.get("ip") != IP_16:  # S11 already
            found.append(Shape(f"S{number}", f"page only, {title}", QUERY_PAGE, {"filter": search}))
            number += 1
    return found
