"""GraphQL input types of the audit log API: the filter (and its conversion to a selector
filter) and the events an integration sends to recordAuditEvents."""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry
from strawberry.scalars import JSON

from audit.filters import DETAILS_FILTER_MAX_BYTES, IP_MAX_LENGTH, SEARCH_MAX_LENGTH
from audit.models import IDEMPOTENCY_KEY_MAX_LENGTH
from audit.selectors import USER_EMAIL_MAX_LENGTH
from audit.selectors import AuditLogFilter as SelectorFilter
from audit.services import DETAILS_MAX_BYTES, FUTURE_TOLERANCE
from graphql_api.errors import bad_user_input
from graphql_api.types import AuditEventType


@strawberry.input(
    name="AuditLogFilter",
    description=(
        "Narrows auditLogs; every field is optional and they combine with AND (eventType "
        "and eventTypes combine with OR). An empty filter matches every entry."
    ),
)
class AuditLogFilterInput:
    event_type: AuditEventType | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="Only entries of this event type; null for all events."
    )
    event_types: list[AuditEventType] | None = strawberry.field(  # type: ignore[valid-type]
        default=None,
        description=(
            "Only entries of any of these event types (e.g. the resource and credential "
            "events); with eventType, entries of either. Must not be empty; duplicates are "
            "ignored; null for all events."
        ),
    )
    user_email: str | None = strawberry.field(
        default=None,
        description=(
            "Only entries whose user's email, as recorded, contains this text, ignoring "
            "case. % and _ match themselves. Surrounding spaces are ignored; blank means "
            f"no filter; at most {USER_EMAIL_MAX_LENGTH} characters. Entries without a "
            "user never match."
        ),
    )
    from_: datetime | None = strawberry.field(
        name="from",
        default=None,
        description=(
            "Only entries at or after this time (inclusive). ISO 8601; without an offset, "
            "UTC. Must not be after `to`."
        ),
    )
    to: datetime | None = strawberry.field(
        default=None,
        description=(
            "Only entries at or before this time (inclusive). ISO 8601; without an offset, UTC."
        ),
    )

    ip: str | None = strawberry.field(
        default=None,
        description=(
            "Only entries from this IPv4 or IPv6 address or CIDR range: `203.0.113.7`, "
            "`203.0.113.0/24`, `2001:db8::/32`. Bits past the prefix are ignored; an "
            "IPv4-mapped range (`::ffff:203.0.113.0/120`) is the IPv4 range it maps. "
            f"Blank means no filter; at most {IP_MAX_LENGTH} characters. Entries without "
            "an address never match."
        ),
    )
    search: str | None = strawberry.field(
        default=None,
        description=(
            "Only entries whose details contain every word of this text, as keys or "
            "values, ignoring case. Words are split as PostgreSQL's text search does "
            "(`simple` configuration, no stemming): `vm-12` is the words `vm` and `-12`; "
            "an e-mail address, a host name or a path is one word. Blank means no filter; "
            f"at most {SEARCH_MAX_LENGTH} characters, with at least one letter or digit."
        ),
    )
    details: JSON | None = strawberry.field(
        default=None,
        description=(
            'Only entries whose details contain this JSON object (`{"resource": "vm-12"}`): '
            "every key with an equal value, nested objects alike, arrays holding at least "
            "the elements given (PostgreSQL's jsonb containment). Null or {} means no "
            f"filter; at most {DETAILS_FILTER_MAX_BYTES} bytes of JSON."
        ),
    )

    def to_selector_filter(self) -> SelectorFilter:
        """The validated selector filter; a BAD_USER_INPUT error says what is wrong."""
        try:
            return SelectorFilter.build(
                event_type=self.event_type.value if self.event_type is not None else None,
                event_types=(
                    [e.value for e in self.event_types] if self.event_types is not None else None
                ),
                user_email=self.user_email,
                time_from=_aware(self.from_),
                time_to=_aware(self.to),
                ip=self.ip,
                search=self.search,
                details=self.details,
            )
        except ValueError as error:
            raise bad_user_input(f"Invalid filter: {error}.") from error


@strawberry.input(
    name="AuditEventInput",
    description="One event for recordAuditEvents, as the integration saw it happen.",
)
class AuditEventInput:
    idempotency_key: str = strawberry.field(
        description=(
            "The integration's own id for this event, 1 to "
            f"{IDEMPOTENCY_KEY_MAX_LENGTH} characters, unique in the organization: an event "
            "whose key was already recorded is not recorded again. Keys compare exactly "
            "(case and spaces count)."
        )
    )
    event: AuditEventType = strawberry.field(  # type: ignore[valid-type]
        description="What happened."
    )
    user_email: str | None = strawberry.field(
        default=None,
        description=(
            "Who did it; null for a system event. When a member of the organization has "
            "this address, the entry links to that member."
        ),
    )
    ip: str | None = strawberry.field(
        default=None,
        description="The IPv4 or IPv6 address the action came from; null if none.",
    )
    details: JSON | None = strawberry.field(
        default=None,
        description=(
            "A JSON object with the event's context (at most "
            f"{DETAILS_MAX_BYTES // 1024} KiB encoded); null for an empty object."
        ),
    )
    time: datetime | None = strawberry.field(
        default=None,
        description=(
            "When it happened, ISO 8601 (without an offset, UTC); null for now. At most "
            f"{int(FUTURE_TOLERANCE.total_seconds() // 60)} minutes ahead of the server's "
            "clock."
        ),
    )


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
