"""Reading audit entries: the one place that scopes to an organization, applies the
filters of the auditLogs API and fixes the order (newest first: ``time`` DESC, ``id`` DESC).

Every read of audit data goes through here, so that no caller can forget the
organization: it is a required argument, not a filter.

Pages are keyset pages: a position is an entry's ``(time, id)``, and a page is the run of
entries strictly after (older than) or before (newer than) a position, read from the index
with a row comparison. There is no OFFSET anywhere, so a page 10,000 deep costs what the
first page costs, and entries inserted while a client pages never shift what it sees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import BigIntegerField, F, Func, IntegerField, QuerySet, Subquery
from django.db.models.fields.tuple_lookups import (
    Tuple,
    TupleGreaterThan,
    TupleGreaterThanOrEqual,
    TupleLessThan,
    TupleLessThanOrEqual,
)

from audit.events import AuditEventType
from audit.models import AuditActorEmail, AuditLog
from core.models import Organization

ORDER = ("-time", "-id")
USER_EMAIL_MAX_LENGTH = 254
PAGE_SIZE_MAX = 100
PAGE_SIZE_DEFAULT = 50


@dataclass(frozen=True)
class AuditLogFilter:
    """The filters of the auditLogs API, already validated. ``event_types`` is the union
    of ``eventType`` and ``eventTypes``; None means every event type."""

    event_types: frozenset[AuditEventType] | None = None
    user_email: str | None = None
    time_from: datetime | None = None
    time_to: datetime | None = None

    @classmethod
    def build(
        cls,
        *,
        event_type: AuditEventType | str | None = None,
        event_types: Iterable[AuditEventType | str] | None = None,
        user_email: str | None = None,
        time_from: datetime | None = None,
        time_to: datetime | None = None,
    ) -> AuditLogFilter:
        """Combine and check raw filter values; ValueError says what is wrong."""
        chosen: set[AuditEventType] | None = None
        if event_types is not None and not list(event_types):
            raise ValueError(
                "eventTypes must name at least one event type; omit it (or pass null) for all events"
            )
        if event_type is not None or event_types is not None:
            chosen = {AuditEventType(e) for e in (event_types or ())}
            if event_type is not None:
                chosen.add(AuditEventType(event_type))
        if user_email is not None and len(user_email) > USER_EMAIL_MAX_LENGTH:
            raise ValueError(f"userEmail must be at most {USER_EMAIL_MAX_LENGTH} characters")
        email = user_email.strip() if user_email is not None else None
        if time_from is not None and time_to is not None and time_from > time_to:
            raise ValueError("from must not be after to")
        return cls(
            event_types=frozenset(chosen) if chosen is not None else None,
            user_email=email or None,
            time_from=time_from,
            time_to=time_to,
        )


def audit_log_list(
    *, organization: Organization, filters: AuditLogFilter | None = None
) -> QuerySet[AuditLog]:
    """The organization's entries matching ``filters``, newest first."""
    queryset = AuditLog.objects.filter(organization=organization)
    f = filters or AuditLogFilter()
    if f.event_types is not None:
        values = sorted(e.value for e in f.event_types)
        queryset = (
            queryset.filter(event=values[0])
            if len(values) == 1
            else queryset.filter(event__in=values)
        )
    if f.user_email is not None:
        # The few matching addresses first (from the organization's directory), then their
        # entries by index. icontains escapes % and _ itself: they match literally.
        emails = AuditActorEmail.objects.filter(
            organization=organization, email__icontains=f.user_email
        ).values("email")
        queryset = queryset.filter(actor_email__in=Subquery(emails))
    if f.time_from is not None:
        queryset = queryset.filter(time__gte=f.time_from)
    if f.time_to is not None:
        queryset = queryset.filter(time__lte=f.time_to)
    return queryset.order_by(*ORDER)


def audit_log_count(*, organization: Organization, filters: AuditLogFilter | None = None) -> int:
    """How many entries ``audit_log_list`` would return (exact)."""
    return audit_log_list(organization=organization, filters=filters).order_by().count()


@dataclass(frozen=True, order=True)
class AuditLogPosition:
    """Where an entry sits in the newest-first order; what a cursor points at."""

    time: datetime
    id: int

    @classmethod
    def of(cls, entry: AuditLog) -> AuditLogPosition:
        return cls(time=entry.time, id=entry.pk)


@dataclass(frozen=True)
class AuditLogPage:
    """One page, newest first, with the Relay page flags. ``total_count`` is the number of
    entries matching the filter (cursors ignored); None when it was not asked for."""

    entries: list[AuditLog]
    has_next_page: bool
    has_previous_page: bool
    total_count: int | None = None


def _key() -> Tuple:
    return Tuple(F("time"), F("id"))


def _count_of(queryset: QuerySet[AuditLog]) -> Subquery:
    # An uncorrelated scalar subquery: PostgreSQL runs it once, in the same statement (and
    # so the same snapshot) as the page it is attached to.
    return Subquery(
        queryset.order_by()
        .annotate(n=Func(template="count(*)", output_field=IntegerField()))
        .values("n"),
        output_field=IntegerField(),
    )


def _nearest(queryset: QuerySet[AuditLog]) -> Subquery:
    return Subquery(queryset.values("id")[:1], output_field=BigIntegerField())


def audit_log_page(
    *,
    organization: Organization,
    filters: AuditLogFilter | None = None,
    first: int | None = None,
    after: AuditLogPosition | None = None,
    last: int | None = None,
    before: AuditLogPosition | None = None,
    with_total: bool = False,
    prepare: Callable[[QuerySet[AuditLog]], QuerySet[AuditLog]] | None = None,
) -> AuditLogPage:
    """A keyset page of the organization's entries matching ``filters``, per the Relay
    connection algorithm: the entries strictly older than ``after`` and newer than
    ``before``, then the newest ``first`` of them, then the oldest ``last`` of those.
    Without ``first`` and ``last``, ``first`` is PAGE_SIZE_DEFAULT.

    ``has_previous_page`` / ``has_next_page`` are exact: whether a matching entry newer
    than the page's first / older than its last exists, inside the window or past
    ``after`` / ``before``.
    ``prepare`` may narrow the page's queryset (columns to load); it must not filter.

    One SQL statement: the page, with the total and the look past the cursor attached as
    subqueries (a second, single-row statement only when the page is empty).
    """
    for name, size in (("first", first), ("last", last)):
        if size is not None and not 0 <= size <= PAGE_SIZE_MAX:
            raise ValueError(f"{name} must be between 0 and {PAGE_SIZE_MAX}")
    matching = audit_log_list(organization=organization, filters=filters)
    window = matching
    if after is not None:
        window = window.filter(TupleLessThan(_key(), (after.time, after.id)))
    if before is not None:
        window = window.filter(TupleGreaterThan(_key(), (before.time, before.id)))

    forward = first is not None or last is None
    size = (first if first is not None else PAGE_SIZE_DEFAULT) if forward else last
    assert size is not None
    page = window if forward else window.order_by("time", "id")
    if prepare is not None:
        page = prepare(page)

    extras: dict[str, Any] = {}
    if with_total:
        extras["audit_total"] = _count_of(matching)
    # Matching entries outside the window: newer than ``after`` (the entry itself
    # included) and older than ``before``. The nearest one's id, read in index order from
    # the cursor, so each costs one index probe.
    if after is not None:
        extras["audit_newer"] = _nearest(
            matching.filter(TupleGreaterThanOrEqual(_key(), (after.time, after.id))).order_by(
                "time", "id"
            )
        )
    if before is not None:
        extras["audit_older"] = _nearest(
            matching.filter(TupleLessThanOrEqual(_key(), (before.time, before.id)))
        )

    rows = list(page.annotate(**extras)[: size + 1]) if extras else list(page[: size + 1])
    if rows:
        summary = {name: getattr(rows[0], name) for name in extras}
    elif extras:
        summary = (
            Organization.objects.filter(pk=organization.pk).annotate(**extras).values(*extras).get()
        )
    else:
        summary = {}
    newer_outside = summary.get("audit_newer") is not None
    older_outside = summary.get("audit_older") is not None
    more = len(rows) > size  # beyond the page, inside the window
    rows = rows[:size]

    if forward:
        has_next, has_previous = more or older_outside, newer_outside
        if last is not None and len(rows) > last:
            rows = rows[len(rows) - last :]
            has_previous = True
    else:
        has_next, has_previous = older_outside, more or newer_outside
        rows.reverse()

    return AuditLogPage(
        entries=rows,
        has_next_page=has_next,
        has_previous_page=has_previous,
        total_count=summary["audit_total"] if with_total else None,
    )
