"""Opaque, signed cursors for audit entries.

A cursor names a position in the newest-first order, ``(time, id)``, and the organization it
was issued for, with an HMAC-SHA256 tag (truncated to 128 bits) under a key derived from
``SECRET_KEY``; cursors signed with a key in ``SECRET_KEY_FALLBACKS`` are still accepted, so
rotating the key does not break a client in the middle of paging. A cursor that was
altered, truncated, made up, or issued to another organization fails to decode, all with
the same message, so a foreign cursor reveals nothing about the entry it points at.

Cursors of the live stream (auditLogCreated) and of recordAuditEvents also carry the
entry's place in the stream, the id of the transaction that inserted it, so that a client
resuming the stream with one gets exactly what follows that entry (graphql_api/stream.py).
They are valid wherever an auditLogs cursor is.

Every edge of every page carries a cursor, so signing is on the hot path: the derived
keys are computed once per secret, not per cursor.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from django.conf import settings

from audit.selectors import AuditLogPosition

_SALT = b"graphql_api.cursors.audit-log"
_VERSION = "1"
_STREAM_VERSION = "2"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TAG_BYTES = 16
# Far more than any real cursor; bounds the work spent on garbage.
CURSOR_MAX_LENGTH = 200


class InvalidCursor(ValueError):
    def __init__(self) -> None:
        super().__init__(
            "invalid cursor: use a cursor returned by auditLogs for your organization, unchanged"
        )


@functools.lru_cache(maxsize=8)
def _key(secret: str) -> bytes:
    return hashlib.sha256(_SALT + b"\x00" + secret.encode()).digest()


def _tag(key: bytes, payload: bytes) -> str:
    digest = hmac.digest(key, payload, "sha256")[:_TAG_BYTES]  # one call, in C
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def cursor_encode(
    *, organization_id: int, position: AuditLogPosition, stream_txid: int | None = None
) -> str:
    head = f"{organization_id}:{_micros(position.time)}:{position.id}"
    payload = (
        f"{_VERSION}:{head}" if stream_txid is None else f"{_STREAM_VERSION}:{head}:{stream_txid}"
    ).encode()
    return f"{_b64(payload)}.{_tag(_key(settings.SECRET_KEY), payload)}"


def cursor_decode(cursor: str, *, organization_id: int) -> AuditLogPosition:
    """The position in ``cursor``; InvalidCursor unless it was issued, unchanged, for
    ``organization_id``."""
    return cursor_decode_stream(cursor, organization_id=organization_id)[0]


def cursor_decode_stream(
    cursor: str, *, organization_id: int
) -> tuple[AuditLogPosition, int | None]:
    """The position in ``cursor`` and, for a cursor of the stream or of recordAuditEvents,
    the entry's stream transaction id (None for an auditLogs cursor)."""
    if not cursor or len(cursor) > CURSOR_MAX_LENGTH or not cursor.isascii():
        raise InvalidCursor
    packed, _, tag = cursor.partition(".")
    try:
        payload = base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4))
        secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
        if not any(hmac.compare_digest(tag, _tag(_key(s), payload)) for s in secrets):
            raise InvalidCursor
        version, org, micros, entry_id, *rest = payload.decode().split(":")
        if int(org) != organization_id:
            raise InvalidCursor
        if version == _VERSION and not rest:
            stream_txid = None
        elif version == _STREAM_VERSION and len(rest) == 1:
            stream_txid = int(rest[0])
        else:
            raise InvalidCursor
        position = AuditLogPosition(
            time=_EPOCH + timedelta(microseconds=int(micros)), id=int(entry_id)
        )
        return position, stream_txid
    except (ValueError, UnicodeDecodeError, OverflowError) as error:
        raise InvalidCursor from error
