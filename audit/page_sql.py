"""``audit_log_page`` as one statement written directly, for readers of plain rows.

``audit_log_page`` (audit/selectors.py) builds its statement with the ORM on every call:
about 0.7 ms of CPU per page at 1M events, more than PostgreSQL takes to run it (profiling
notes in docs/PERFORMANCE.md). ``audit_log_page_rows`` writes the same statement as text,
from fixed fragments, with every value a parameter: the same conditions (the
organization, the event types, the email directory, the time range), the same keyset
window and order, the same per-address email page (``_email_page_ids``, whose entries
are then read by id), the same total (audit/totals.py) and the same look past the
cursors, attached as subqueries so that all come from one snapshot. An email search
reads the directory once for all of them (a MATERIALIZED CTE) instead of once in each.
A search of the details (``search``, ``details``) that asks for its total finds its matches
once (a MATERIALIZED CTE of their times and ids, up to one past the total's limit) and
takes the total, the page and the look past the cursors from them: the total must read
every match anyway, and reading them twice (for a word, a GIN index scan and the table
rows it points to) doubled the statement's cost. Past the limit the total is refused,
and the page (read from an arbitrary part of the matches) with it.
The rows are named tuples of the columns asked for, and the flags come from the
selector's own ``page_of``.

Its cursor reads ``timestamptz`` with psycopg's own loader (compiled, with psycopg's C
extension) instead of Django's, which subclasses psycopg's pure-Python one only to put
Django's time zone on each value: 0.4 ms of CPU for a page of 51 times against 0.1 ms. It
does so only where the two give the same value, a connection whose time zone is UTC
(``USE_TZ`` with the default ``TIME_ZONE`` of the database, as this project configures
it), whose session Django sets to UTC, so that psycopg's values are UTC already.

``audit_log_page`` hands over to it when asked for ``columns`` without ``prepare`` (the
compiled read path, graphql_api/compiled.py). tests/audit/test_page_sql.py
is its licence: property-based against ``audit_log_page`` for random filters, cursors,
page sizes and directions, rows and flags and totals alike.
"""

from __future__ import annotations

import functools
from collections import namedtuple
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import connection
from psycopg import adapters
from psycopg.pq import Format

from audit.filters import MATCHED_EMAILS, AuditLogFilter, matched_emails_sql, matching_sql
from audit.selectors import (
    PAGE_SIZE_DEFAULT,
    PAGE_SIZE_MAX,
    AuditLogPage,
    AuditLogPosition,
    _email_page_ids,
    page_of,
)
from audit.totals import audit_log_total_sql, capped_count_sql
from core.authentication import CredentialsGuard, StaleCredentials
from core.models import Organization

# The page's entries are named as Django names them, so its statement reads the same.
X = '"audit_log"'
# The columns a reader may ask for, as SQL of the page's entries.
COLUMNS = {
    "id": f'{X}."id"',
    "time": f'{X}."time"',
    "event": f'{X}."event"',
    "ip": f'{X}."ip"',
    "actor_id": f'{X}."actor_id"',
    "actor_email": f'{X}."actor_email"',
    "actor_name": f'{X}."actor_name"',
    "details_json": f'{X}."details"::text',
}


_TIMESTAMPTZ = adapters.types["timestamptz"].oid
_TIME_LOADER = adapters.get_loader(_TIMESTAMPTZ, Format.TEXT)


def _with_fast_times(cursor: Any) -> None:
    """Read ``timestamptz`` on ``cursor`` (Django's) with psycopg's own loader, where it
    gives the values Django's would."""
    if settings.USE_TZ and connection.timezone_name == "UTC":
        cursor.cursor.adapters.register_loader(_TIMESTAMPTZ, _TIME_LOADER)


@functools.lru_cache(maxsize=64)
def _row_type(names: tuple[str, ...]) -> Any:
    return namedtuple("Row", names)


def _matching(alias: str, organization: Organization, f: AuditLogFilter) -> tuple[str, list[Any]]:
    """The conditions of ``audit_log_list`` on the entries aliased ``alias`` (an email
    search's addresses from the statement's CTE)."""
    return matching_sql(alias, organization, f, cte=True)


def _nearest(
    alias: str,
    organization: Organization,
    f: AuditLogFilter,
    position: AuditLogPosition,
    *,
    newer: bool,
) -> tuple[str, list[Any]]:
    condition, params = _matching(alias, organization, f)
    comparison, order = (">=", "ASC") if newer else ("<=", "DESC")
    sql = (
        f"SELECT {alias}.id FROM audit_log {alias} WHERE {condition}"  # noqa: S608 - fixed fragments
        f" AND ({alias}.time, {alias}.id) {comparison} (%s, %s)"
        f" ORDER BY {alias}.time {order}, {alias}.id {order} LIMIT 1"
    )
    return sql, [*params, position.time, position.id]


# A search's matches (time, id), read once by a statement that wants its total and page.
MATCHES = "audit_matches"


def _matched_sql(organization: Organization, f: AuditLogFilter) -> tuple[str, list[Any]]:
    """Every match of ``f`` (a search without an email), up to one past the total's limit:
    beyond it the total is refused, and the page with it."""
    condition, params = _matching("m", organization, f)
    limit = int(settings.AUDIT_LOG_SEARCH_TOTAL_MAX)
    sql = f"SELECT m.time, m.id FROM audit_log m WHERE {condition} LIMIT %s"  # noqa: S608
    return sql, [*params, limit + 1]


def _nearest_match(position: AuditLogPosition, *, newer: bool) -> tuple[str, list[Any]]:
    comparison, order = (">=", "ASC") if newer else ("<=", "DESC")
    return (
        f"SELECT k.id FROM {MATCHES} k WHERE (k.time, k.id) {comparison} (%s, %s)"  # noqa: S608
        f" ORDER BY k.time {order}, k.id {order} LIMIT 1",
        [position.time, position.id],
    )


def _page_of_matches(
    after: AuditLogPosition | None, before: AuditLogPosition | None, forward: bool, limit: int
) -> tuple[str, list[Any]]:
    """The ids of the page among the statement's matches."""
    where, params = ["TRUE"], []
    if after is not None:
        where.append("(k.time, k.id) < (%s, %s)")
        params += [after.time, after.id]
    if before is not None:
        where.append("(k.time, k.id) > (%s, %s)")
        params += [before.time, before.id]
    order = "DESC" if forward else "ASC"
    return (
        f"SELECT k.id FROM {MATCHES} k WHERE {' AND '.join(where)}"  # noqa: S608
        f" ORDER BY k.time {order}, k.id {order} LIMIT %s",
        [*params, limit],
    )


def audit_log_page_rows(
    *,
    organization: Organization,
    filters: AuditLogFilter | None = None,
    first: int | None = None,
    after: AuditLogPosition | None = None,
    last: int | None = None,
    before: AuditLogPosition | None = None,
    with_total: bool = False,
    columns: Sequence[str] = ("id", "time"),
    guard: CredentialsGuard | None = None,
) -> AuditLogPage:
    """What ``audit_log_page`` returns with ``columns``: the page, its flags and (with
    ``with_total``) the total; the entries as named tuples of ``columns`` (names of
    ``COLUMNS``), in one statement (a second, single-row one when the page is empty).
    With ``guard``, the statement also checks that the caller is as remembered, and
    StaleCredentials discards what it read otherwise."""
    for name, value in (("first", first), ("last", last)):
        if value is not None and not 0 <= value <= PAGE_SIZE_MAX:
            raise ValueError(f"{name} must be between 0 and {PAGE_SIZE_MAX}")
    f = filters or AuditLogFilter()
    forward = first is not None or last is None
    size = (first if first is not None else PAGE_SIZE_DEFAULT) if forward else last
    assert size is not None

    extras: list[tuple[str, str, list[Any]]] = []  # (name, SQL, parameters)
    # A search of the details with its total: the matches are found once, for the total
    # and the page. (An address range is not: its index yields the page's newest entries,
    # or the time index does, without reading every match.)
    shared = (
        with_total and (f.search is not None or f.details_json is not None) and f.user_email is None
    )
    if shared:
        matched, matched_params = _matched_sql(organization, f)
        extras.append(("audit_total", *capped_count_sql(MATCHES)))
    elif with_total:
        total, total_params = audit_log_total_sql(organization=organization, filters=f, cte=True)
        extras.append(("audit_total", total, total_params))
    # Matching entries outside the window: the nearest newer than ``after`` (itself
    # included) and older than ``before``, read from the cursor in index order.
    if after is not None:
        nearest = _nearest_match if shared else functools.partial(_nearest, "n", organization, f)
        extras.append(("audit_newer", *nearest(after, newer=True)))
    if before is not None:
        nearest = _nearest_match if shared else functools.partial(_nearest, "o", organization, f)
        extras.append(("audit_older", *nearest(before, newer=False)))
    if guard is not None:
        extras.append(("caller_guard", guard.sql, list(guard.params)))

    if shared:
        ids, ids_params = _page_of_matches(after, before, forward, size + 1)
        where = [f"{X}.organization_id = %s", f"{X}.id = ANY(ARRAY({ids}))"]
        where_params = [organization.pk, *ids_params]
    elif f.user_email is not None:
        # The ids already hold every condition: the page reads those entries by id.
        ids_sql = _email_page_ids(organization, f, after, before, forward, size + 1, cte=True)
        where = [f"{X}.organization_id = %s", f"{X}.id = ANY(ARRAY({ids_sql.sql}))"]
        where_params = [organization.pk, *ids_sql.params]
    else:
        condition, where_params = _matching(X, organization, f)
        where = [condition]
        if after is not None:
            where.append(f"({X}.time, {X}.id) < (%s, %s)")
            where_params += [after.time, after.id]
        if before is not None:
            where.append(f"({X}.time, {X}.id) > (%s, %s)")
            where_params += [before.time, before.id]
    order = "DESC" if forward else "ASC"

    selected = [COLUMNS[name] for name in columns]
    select_params: list[Any] = []
    for name, sql, params in extras:
        selected.append(f"({sql}) AS {name}")
        select_params += params
    # An email search reads the directory once for every part of the statement.
    with_params: list[Any] = []
    prefix = ""
    if f.user_email is not None:
        emails, with_params = matched_emails_sql(organization, f.user_email)
        prefix = f"WITH {MATCHED_EMAILS} AS MATERIALIZED ({emails}) "
    elif shared:
        prefix = f"WITH {MATCHES} AS MATERIALIZED ({matched}) "
        with_params = matched_params
    statement = (
        f"{prefix}SELECT {', '.join(selected)} FROM {X} WHERE {' AND '.join(where)}"  # noqa: S608 - fixed fragments; values are parameters
        f" ORDER BY {X}.time {order}, {X}.id {order} LIMIT %s"
    )
    names = tuple(columns) + tuple(name for name, _, _ in extras)
    row_type = _row_type(names)
    with connection.cursor() as cursor:
        _with_fast_times(cursor)
        cursor.execute(statement, [*with_params, *select_params, *where_params, size + 1])
        rows: list[Any] = [row_type._make(row) for row in cursor.fetchall()]
        if rows:
            summary = {name: getattr(rows[0], name) for name, _, _ in extras}
        elif extras:
            cursor.execute(
                f"{prefix}SELECT " + ", ".join(f"({sql}) AS {name}" for name, sql, _ in extras),
                [*with_params, *(p for _, _, params in extras for p in params)],
            )
            found = cursor.fetchone()
            summary = {name: value for (name, _, _), value in zip(extras, found, strict=True)}
        else:
            summary = {}
    if guard is not None and summary.pop("caller_guard") is not True:
        raise StaleCredentials(guard)
    return page_of(rows, summary, size=size, forward=forward, last=last, with_total=with_total)
