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
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import models
from django.db.models import BigIntegerField, Expression, F, Func, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from audit.filters import AuditLogFilter, actor_emails_matching, event_condition
from audit.models import (
    AuditCountActorDay,
    AuditCountActorMonth,
    AuditCountDay,
    AuditCountHour,
    AuditCountMonth,
    AuditLog,
)
from core.models import Organization

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


def _sum_of_n(queryset: QuerySet) -> Expression:  # type: ignore[type-arg]
    # Scalar subqueries: PostgreSQL runs each once, inside the statement that uses them.
    return Coalesce(
        Subquery(
            queryset.order_by().annotate(total=Func(F("n"), function="sum")).values("total"),
            output_field=BigIntegerField(),
        ),
        Value(0),
        output_field=BigIntegerField(),
    )


def _count_of(queryset: QuerySet[AuditLog]) -> Subquery:
    return Subquery(
        queryset.order_by()
        .annotate(total=Func(template="count(*)", output_field=BigIntegerField()))
        .values("total"),
        output_field=BigIntegerField(),
    )


def _range(prefix: str, span: Span, as_date: bool = False) -> dict[str, object]:
    bounds: dict[str, object] = {}
    if span.start is not None:
        bounds[f"{prefix}__gte"] = span.start.date() if as_date else span.start
    if span.end is not None:
        bounds[f"{prefix}__lt"] = span.end.date() if as_date else span.end
    return bounds


def audit_log_total(
    *, organization: Organization, filters: AuditLogFilter | None = None
) -> Expression:
    """An SQL expression for the exact number of the organization's entries that match
    ``filters`` -- to attach to a page query (one snapshot) or to evaluate alone."""
    f = filters or AuditLogFilter()
    window = Span(
        f.time_from.astimezone(UTC) if f.time_from is not None else None,
        f.time_to.astimezone(UTC) + TICK if f.time_to is not None else None,
    )
    if window.start is not None and window.end is not None and window.start >= window.end:
        return Value(0, output_field=BigIntegerField())

    entries = AuditLog.objects.filter(organization=organization)
    rollup_filter: dict[str, object] = {"organization": organization}
    if f.user_email is not None:
        emails = actor_emails_matching(organization, f.user_email)
        entries = entries.filter(actor_email__in=emails)
        rollup_filter["actor_email__in"] = emails
        levels: list[tuple[str, type[models.Model]]] = [
            (MONTH, AuditCountActorMonth),
            (DAY, AuditCountActorDay),
        ]
    else:
        levels = [(MONTH, AuditCountMonth), (DAY, AuditCountDay), (HOUR, AuditCountHour)]
    if f.event_types is not None:
        entries = entries.filter(event_condition(f.event_types))

    def rollup(model: type[models.Model], field: str, span: Span) -> Expression:
        rows = model._default_manager.filter(**rollup_filter, **_range(field, span, field != HOUR))
        if f.event_types is not None:
            rows = rows.filter(event_condition(f.event_types))
        return _sum_of_n(rows)

    def parts_of(span: Span, remaining: list[tuple[str, type[models.Model]]]) -> list[Any]:
        if not remaining:  # what no rollup covers: count the entries, by index
            return [_count_of(entries.filter(**_range("time", span)))]
        unit, model = remaining[0]
        whole, edges = split(span, unit)
        found = [rollup(model, unit, whole)] if whole is not None else []
        for edge in edges:
            found += parts_of(edge, remaining[1:])
        return found

    parts = parts_of(window, levels)
    if not parts:
        return Value(0, output_field=BigIntegerField())
    total: Expression = functools.reduce(operator.add, parts)
    return total
