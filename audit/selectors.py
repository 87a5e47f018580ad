"""Reading audit entries: the one place that scopes to an organization, applies the
filters of the auditLogs API and fixes the order (newest first: ``time`` DESC, ``id`` DESC).

Every read of audit data goes through here, so that no caller can forget the
organization: it is a required argument, not a filter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from audit.events import AuditEventType
from audit.models import AuditLog
from core.models import Organization

ORDER = ("-time", "-id")
USER_EMAIL_MAX_LENGTH = 254


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
        if event_type is not None or event_types is not None:
            chosen = {AuditEventType(e) for e in (event_types or ())}
            if event_type is not None:
                chosen.add(AuditEventType(event_type))
        email = user_email.strip() if user_email is not None else None
        if email is not None and len(email) > USER_EMAIL_MAX_LENGTH:
            raise ValueError(f"userEmail must be at most {USER_EMAIL_MAX_LENGTH} characters")
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
        # icontains escapes % and _ itself: they match literally.
        queryset = queryset.filter(actor_email__icontains=f.user_email)
    if f.time_from is not None:
        queryset = queryset.filter(time__gte=f.time_from)
    if f.time_to is not None:
        queryset = queryset.filter(time__lte=f.time_to)
    return queryset.order_by(*ORDER)


def audit_log_count(*, organization: Organization, filters: AuditLogFilter | None = None) -> int:
    """How many entries ``audit_log_list`` would return (exact)."""
    return audit_log_list(organization=organization, filters=filters).order_by().count()
