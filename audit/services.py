"""Recording audit entries: the only code that writes the audit_log table.

* ``audit_log_record`` -- one entry, inside the caller's transaction, so the entry exists
  exactly when the change it describes was committed. Actor and IP default to the audit
  context of the request or job (audit/context.py); explicit arguments win.
* ``audit_log_bulk_create`` -- many entries through COPY, in one transaction, in the
  order given (ids increase in that order). For imports and demo data.

Other parts of the platform (sessions, cloud resources, credentials) record their events
by calling ``audit_log_record`` with the event type and details of their action.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from audit.context import audit_context_get
from audit.events import AuditEventType
from audit.models import AuditLog
from core.client_ip import parse_ip
from core.models import Organization, User


class Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset()


def audit_log_record(
    *,
    organization: Organization,
    event: AuditEventType | str,
    actor: User | Unset | None = UNSET,
    ip: str | Unset | None = UNSET,
    details: Mapping[str, Any] | None = None,
    time: datetime | None = None,
) -> AuditLog:
    """Record one entry. Call it inside the transaction of the action it describes."""
    context = audit_context_get()
    acting = context.resolve_actor() if isinstance(actor, Unset) else actor
    address = context.ip if isinstance(ip, Unset) else ip
    entry = AuditLog(
        organization=organization,
        event=_known_event(event),
        actor=acting,
        actor_email=acting.email if acting is not None else None,
        actor_name=(acting.name or None) if acting is not None else None,
        ip=_normalized_ip(address),
        details=_json_object(details),
        time=_aware(time) if time is not None else timezone.now(),
    )
    entry.save(force_insert=True)
    return entry


@dataclass(frozen=True, slots=True)
class AuditEntryDraft:
    """One entry for ``audit_log_bulk_create``; ``user_email`` is resolved to a member of
    the organization when one has that address, and kept as the snapshot either way."""

    event: str
    time: datetime
    user_email: str | None = None
    user_name: str | None = None
    ip: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


# One encoder for every row (json.dumps with cls= builds a new one per call).
_DETAILS_ENCODER: Final = DjangoJSONEncoder()
_COPY_SQL = (
    "COPY audit_log (organization_id, event, actor_id, actor_email, actor_name, ip, details, time)"
    " FROM STDIN"
)


def audit_log_bulk_create(
    *,
    organization: Organization,
    drafts: Iterable[AuditEntryDraft],
    on_progress: Callable[[int], None] | None = None,
    progress_every: int = 10_000,
) -> int:
    """Insert every draft with COPY in one transaction (all or nothing); returns the count.

    Memory stays constant in the number of drafts (they are streamed); the member
    directory held for resolving emails grows with the organization's users only.
    """
    members = {
        email: (pk, name)
        for pk, email, name in User.objects.filter(organization=organization).values_list(
            "pk", "email", "name"
        )
    }
    known = set(AuditEventType.values)
    count = 0
    with transaction.atomic(), connection.cursor() as cursor, cursor.copy(_COPY_SQL) as copy:
        for draft in drafts:
            if draft.event not in known:
                raise ValidationError(f"unknown event type {draft.event!r}")
            member = members.get(draft.user_email.lower()) if draft.user_email else None
            actor_id, email, name = None, draft.user_email, draft.user_name
            if member is not None:
                actor_id = member[0]
                email = draft.user_email.lower() if draft.user_email else None
                name = draft.user_name if draft.user_name is not None else (member[1] or None)
            copy.write_row(
                (
                    organization.pk,
                    draft.event,
                    actor_id,
                    email,
                    name,
                    draft.ip,
                    _DETAILS_ENCODER.encode(draft.details),
                    draft.time,
                )
            )
            count += 1
            if on_progress is not None and count % progress_every == 0:
                on_progress(count)
    if on_progress is not None:
        on_progress(count)
    return count


def _known_event(event: AuditEventType | str) -> str:
    try:
        return AuditEventType(event).value
    except ValueError:
        raise ValidationError(f"unknown event type {event!r}") from None


def _normalized_ip(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    address = parse_ip(value)
    if address is None:
        raise ValidationError(f"{value!r} is not an IP address")
    return str(address)


def _json_object(details: Mapping[str, Any] | None) -> dict[str, Any]:
    if details is None:
        return {}
    if not isinstance(details, Mapping):
        raise ValidationError("details must be a JSON object")
    # Round-trip so that dates, UUIDs and decimals are stored as their JSON text.
    result: dict[str, Any] = json.loads(json.dumps(dict(details), cls=DjangoJSONEncoder))
    return result


def _aware(value: datetime) -> datetime:
    if timezone.is_naive(value):
        raise ValidationError("time must be timezone-aware")
    return value
