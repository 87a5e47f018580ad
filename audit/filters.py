"""The filters of the auditLogs API: validation, and the conditions shared by the page
query (audit/selectors.py) and the totals (audit/totals.py), so both always mean the same
thing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet

from audit.events import AuditEventType
from audit.models import AuditActorEmail
from audit.storable import as_utc, text_problem
from core.models import Organization

USER_EMAIL_MAX_LENGTH = 254


# Filter bounds are clamped to these (entries carry ENTRY_TIME_MIN to ENTRY_TIME_MAX).
FILTER_TIME_MIN = datetime(2, 1, 1, tzinfo=UTC)
FILTER_TIME_MAX = datetime(9998, 12, 31, tzinfo=UTC)


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
        if user_email is not None and (unstorable := text_problem(user_email)) is not None:
            raise ValueError(f"userEmail {unstorable}")
        email = user_email.strip() if user_email is not None else None
        if time_from is not None and time_to is not None and time_from > time_to:
            raise ValueError("from must not be after to")
        # Bounds beyond any entry's time mean the same as none, and arithmetic near the
        # ends of the calendar (UTC offsets, hour and day buckets) would overflow. Then
        # UTC: PostgreSQL refuses offsets beyond +-15:59, which ISO 8601 allows.
        if time_from is not None:
            time_from = as_utc(min(max(time_from, FILTER_TIME_MIN), FILTER_TIME_MAX))
        if time_to is not None:
            time_to = as_utc(min(max(time_to, FILTER_TIME_MIN), FILTER_TIME_MAX))
        return cls(
            event_types=frozenset(chosen) if chosen is not None else None,
            user_email=email or None,
            time_from=time_from,
            time_to=time_to,
        )

    def matches(
        self,
        *,
        event: str,
        actor_email_upper: str | None,
        time: datetime,
        user_email_upper: str | None,
    ) -> bool:
        """Whether an entry with these values passes the filter, for entries already in
        memory (the live stream's fan-out). The same test as the SQL conditions below,
        provided both emails were upper-cased by PostgreSQL (``UPPER``), whose case
        mapping depends on the database's locale: the email condition is then plain
        containment, as ``UPPER(email) LIKE UPPER('%needle%')`` with the needle escaped."""
        if self.event_types is not None and event not in self.event_types:
            return False
        if self.user_email is not None:
            assert user_email_upper is not None
            if actor_email_upper is None or user_email_upper not in actor_email_upper:
                return False
        if self.time_from is not None and time < self.time_from:
            return False
        return self.time_to is None or time <= self.time_to


def event_values(event_types: frozenset[AuditEventType]) -> list[str]:
    return sorted(e.value for e in event_types)


def event_condition(event_types: frozenset[AuditEventType]) -> Q:
    values = event_values(event_types)
    return Q(event=values[0]) if len(values) == 1 else Q(event__in=values)


def actor_emails_matching(organization: Organization, needle: str) -> QuerySet[Any, Any]:
    """The organization's recorded actor emails that contain ``needle``, ignoring case, as
    a subquery. An email search resolves to these few addresses first, then reads their
    entries (or counts) by index. icontains escapes % and _ itself: they match literally."""
    return AuditActorEmail.objects.filter(
        organization=organization, email__icontains=needle
    ).values("email")


def actor_emails_matching_sql(organization: Organization, needle: str) -> tuple[str, list[Any]]:
    """``actor_emails_matching`` for hand-written SQL: a condition on the directory rows
    aliased ``d`` (``FROM audit_actor_email d``), with its parameters. The same test as
    Django's icontains: UPPER on both sides, and %, _ and \\ escaped in the needle."""
    pattern = "%" + connection.ops.prep_for_like_query(needle) + "%"
    return (
        "d.organization_id = %s AND UPPER(d.email::text) LIKE UPPER(%s)",
        [organization.pk, pattern],
    )


# Where a statement reads the matched addresses once, as a CTE of this name (audit/page_sql.py).
MATCHED_EMAILS = "audit_matched_emails"


def matched_emails_sql(
    organization: Organization, needle: str, *, cte: bool = False
) -> tuple[str, list[Any]]:
    """The addresses of the directory that ``needle`` matches, as a subquery (one column,
    ``email``) with its parameters; with ``cte``, read from a CTE named MATCHED_EMAILS
    that the statement defines with the subquery itself."""
    if cte:
        return f"SELECT email FROM {MATCHED_EMAILS}", []  # noqa: S608 - a fixed name
    condition, params = actor_emails_matching_sql(organization, needle)
    return f"SELECT d.email FROM audit_actor_email d WHERE {condition}", params  # noqa: S608


def filter_query(filters: AuditLogFilter) -> str:
    """The filter as the export endpoint's query string (eventType, userEmail, from, to),
    for the log's record of an export or a stream's change; empty for no filter."""
    from urllib.parse import urlencode

    pairs = [("eventType", e.value) for e in sorted(filters.event_types or (), key=str)]
    if filters.user_email:
        pairs.append(("userEmail", filters.user_email))
    if filters.time_from:
        pairs.append(("from", filters.time_from.isoformat()))
    if filters.time_to:
        pairs.append(("to", filters.time_to.isoformat()))
    return urlencode(pairs)
