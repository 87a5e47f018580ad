"""Opaque, signed cursors for audit entries.

A cursor names a position in the newest-first order, ``(time, id)``, and the organization it
was issued for, signed with an HMAC of ``SECRET_KEY`` (rotated keys keep working through
``SECRET_KEY_FALLBACKS``). A cursor that was altered, truncated, made up, or issued to
another organization fails to decode, all with the same message, so a foreign cursor
reveals nothing about the entry it points at.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from django.core import signing

from audit.models import AuditLog
from audit.selectors import AuditLogPosition

_SALT = "graphql_api.cursors.audit-log"
_VERSION = "1"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Far more than any real cursor; bounds the work spent on garbage.
CURSOR_MAX_LENGTH = 200


class InvalidCursor(ValueError):
    def __init__(self) -> None:
        super().__init__(
            "invalid cursor: use a cursor returned by auditLogs for your organization, unchanged"
        )


def _signer() -> signing.Signer:
    return signing.Signer(salt=_SALT, algorithm="sha256")


def _micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def cursor_encode(*, organization_id: int, position: AuditLogPosition) -> str:
    payload = f"{_VERSION}:{organization_id}:{_micros(position.time)}:{position.id}"
    packed = base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")
    return _signer().sign(packed)


def cursor_for_entry(entry: AuditLog) -> str:
    return cursor_encode(organization_id=entry.organization_id, position=AuditLogPosition.of(entry))


def cursor_decode(cursor: str, *, organization_id: int) -> AuditLogPosition:
    """The position in ``cursor``; InvalidCursor unless it was issued, unchanged, for
    ``organization_id``."""
    if not cursor or len(cursor) > CURSOR_MAX_LENGTH:
        raise InvalidCursor
    try:
        packed = _signer().unsign(cursor)
        payload = base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4)).decode()
        version, org, micros, entry_id = payload.split(":")
        if version != _VERSION or int(org) != organization_id:
            raise InvalidCursor
        return AuditLogPosition(time=_EPOCH + timedelta(microseconds=int(micros)), id=int(entry_id))
    except (signing.BadSignature, ValueError, UnicodeDecodeError, OverflowError) as error:
        raise InvalidCursor from error
