"""Exact totals for the auditLogs API, without counting entries one by one.

The admin page asks for a page and its total on every click. Counting the matching
entries would cost time in proportion to how many match (a million-entry organization, a
million index entries). Instead a total is a sum over rollups that the database keeps in
the inserting transaction (audit/models.py, migration 0004):

* whole UTC calendar months inside the ``from``/``to`` window come from the monthly
  rollup (per event type), or, for an email search, from the per-actor monthly rollup of
  the few addresses the search resolves to (audit/filters.py);
* the rest of the two boundary months: whole days from the daily rollups;
* the rest of the two boundary days: whole hours from the hourly rollup, and only the
  entries of the two boundary hours are counted one by one (for an email search, the
  boundary days' entries of the matched addresses, by index).

The work is bounded by the window's months, days and hours and the number of matched
addresses, not by the number of entries, and the result is exact: the rollups are updated in the same
transaction as the entries, and the total is read in the same statement (the same
snapshot) as the page it goes with.

The rollups know nothing of addresses or details: a total with ``ip``, ``search`` or
``details`` (``AuditLogFilter.searches``) counts the matching entries themselves, through
the index of the search (audit/filters.py), so its cost grows with the number of matches
(docs/PERFORMANCE.md, "Searching by address and details"). It counts at most
``AUDIT_LOG_SEARCH_TOTAL_MAX`` of them: past that, the statement stops counting and the
total is refused (``TotalTooCostly``) rather than left to run into the statement timeout.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import BigIntegerField
from django.db.models.expressions import RawSQL

from audit.filters import AuditLogFilter, event_values, matched_emails_sql, matching_sql
from core.models import Organization

# What a counted total reads as when it would exceed AUDIT_LOG_SEARCH_TOTAL_MAX.
TOTAL_REFUSED = -1


class TotalTooCostly(Exception):
    """A search's total would count more entries than ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the total would count more than {limit} entries")
        self.limit = limit


def checked_total(total: int) -> int:
    """``total`` as read from ``audit_log_total_sql``; TotalTooCostly if it was refused."""
    if total == TOTAL_REFUSED:
        raise TotalTooCostly(settings.AUDIT_LOG_SEARCH_TOTAL_MAX)
    return total


MONTH, DAY, HOUR = "month", "day", "hour"
# Timestamps have microsecond precision: an inclusive ``to`` ends one tick later.
TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class Span:
    """The half-open interval [start, end); None is unbounded."""

    start: datetime | None
    end: datetime | None


def _floor(moment: datetime, unit: str) -> datetime:
    moment = moment.astimezone(UTC)
    if unit == MONTH:
        return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if unit == DAY:
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


def _next(moment: datetime, unit: str) -> datetime:
    if unit == MONTH:
        year, month = divmod(moment.month, 12)
        return moment.replace(year=moment.year + year, month=month + 1)
    return moment + (timedelta(days=1) if unit == DAY else timedelta(hours=1))


def _ceil(moment: datetime, unit: str) -> datetime:
    floor = _floor(moment, unit)
    return floor if floor == moment else _next(floor, unit)


def split(span: Span, unit: str) -> tuple[Span | None, list[Span]]:
    """The whole units (months, days or hours) inside ``span``, and the partial spans at
    its edges, which are smaller than a unit -- or the whole span when it holds no whole
    unit."""
    lo = _ceil(span.start, unit) if span.start is not None else None
    hi = _floor(span.end, unit) if span.end is not None else None
    if lo is not None and hi is not None and lo >= hi:
        assert span.start is not None and span.end is not None
        return None, [span] if span.start < span.end else []
    edges = []
    if span.start is not None and lo is not None and span.start < lo:
        edges.append(Span(span.start, lo))
    if span.end is not None and hi is not None and hi < span.end:
        edges.append(Span(hi, span.end))
    return Span(lo, hi), edges


_ROLLUPS = {
    # (email search?, unit) -> table
    (False, MONTH): "audit_count_month",
    (False, DAY): "audit_count_day",
    (False, HOUR): "audit_count_hour",
    (True, MONTH): "audit_count_actor_month",
    (True, DAY): "audit_count_actor_day",
}


def audit_log_total_sql(
    *, organization: Organization, filters: AuditLogFilter | None = None, cte: bool = False
) -> tuple[str, list[Any]]:
    """SQL for the exact number of the organization's entries that match ``filters``: a
    scalar expression (with its parameters) to attach to a page query, so that both come
    from one snapshot, or to select alone.

    Written as SQL rather than built with the ORM: compiling the equivalent expression
    tree cost more than running it (3 ms against 1 ms for a year's window; profiling
    notes in docs/PERFORMANCE.md). Fixed fragments only; every value is a parameter. With
    ``cte``, an email search reads its addresses from the statement's CTE
    (``matched_emails_sql``)."""
    f = filters or AuditLogFilter()
    window = Span(
        f.time_from.astimezone(UTC) if f.time_from is not None else None,
        f.time_to.astimezone(UTC) + TICK if f.time_to is not None else None,
    )
    if window.start is not None and window.end is not None and window.start >= window.end:
        return "0", []
    if f.searches:
        return _counted_sql(organization, f, cte)

    email = f.user_email is not None
    common: list[str] = ["organization_id = %s"]
    common_params: list[Any] = [organization.pk]
    if f.event_types is not None:
        common.append("event = ANY(%s)")
        common_params.append(event_values(f.event_types))
    if f.user_email is not None:
        emails, emails_params = matched_emails_sql(organization, f.user_email, cte=cte)
        common.append(f"actor_email IN ({emails})")
        common_params += emails_params
    units = [MONTH, DAY] if email else [MONTH, DAY, HOUR]

    terms: list[str] = []
    params: list[Any] = []

    def bounded(column: str, span: Span, as_date: bool) -> tuple[list[str], list[Any]]:
        where, values = [], []
        if span.start is not None:
            where.append(f"{column} >= %s")
            values.append(span.start.date() if as_date else span.start)
        if span.end is not None:
            where.append(f"{column} < %s")
            values.append(span.end.date() if as_date else span.end)
        return where, values

    def add(span: Span, remaining: list[str]) -> None:
        if not remaining:  # what no rollup covers: count the entries, by index
            where, values = bounded("time", span, False)
            terms.append(
                f"(SELECT count(*) FROM audit_log WHERE {' AND '.join(common + where)})"  # noqa: S608
            )
            params.extend(common_params + values)
            return
        unit = remaining[0]
        whole, edges = split(span, unit)
        if whole is not None:
            where, values = bounded(unit, whole, unit != HOUR)
            table = _ROLLUPS[(email, unit)]
            terms.append(
                f"COALESCE((SELECT sum(n) FROM {table} WHERE {' AND '.join(common + where)}), 0)"  # noqa: S608
            )
            params.extend(common_params + values)
        for edge in edges:
            add(edge, remaining[1:])

    add(window, units)
    if not terms:
        return "0", []
    return "(" + " + ".join(terms) + ")", params


def _counted_sql(organization: Organization, f: AuditLogFilter, cte: bool) -> tuple[str, list[Any]]:
    """The total of a search, counted from the entries, at most AUDIT_LOG_SEARCH_TOTAL_MAX
    of them: TOTAL_REFUSED past that."""
    condition, params = matching_sql("c", organization, f, cte=cte)
    limit = int(settings.AUDIT_LOG_SEARCH_TOTAL_MAX)
    counted, counted_params = capped_count_sql(
        f"(SELECT 1 FROM audit_log c WHERE {condition} LIMIT %s) counted"  # noqa: S608
    )
    return f"({counted})", [*counted_params, *params, limit + 1]


def capped_count_sql(source: str) -> tuple[str, list[Any]]:
    """The count of the rows of ``source`` (a FROM item holding at most one row past the
    limit), or TOTAL_REFUSED when it holds more than AUDIT_LOG_SEARCH_TOTAL_MAX."""
    return (
        f"SELECT CASE WHEN count(*) > %s THEN {TOTAL_REFUSED} ELSE count(*) END FROM {source}",  # noqa: S608 - fixed fragments
        [int(settings.AUDIT_LOG_SEARCH_TOTAL_MAX)],
    )


def audit_log_total(*, organization: Organization, filters: AuditLogFilter | None = None) -> RawSQL:
    """``audit_log_total_sql`` as an expression for a queryset annotation."""
    sql, params = audit_log_total_sql(organization=organization, filters=filters)
    return RawSQL(sql, params, output_field=BigIntegerField())  # noqa: S611
