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
key of each secret, and SHA-256 with the key's inner and outer pads already absorbed, are
computed once per secret, not per cursor. A tag is then HMAC-SHA256 as RFC 2104 defines it
(``H(K ^ opad || H(K ^ ipad || m))``) from copies of those two states: the same tag as
``hmac.digest``, in a third of its time (which sets up both pads on every call).
tests/graphql_api/test_cursors.py checks the two against each other.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

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


_BLOCK = 64  # SHA-256's block size; every derived key (32 bytes) is shorter
_INNER = bytes.maketrans(bytes(range(256)), bytes(b ^ 0x36 for b in range(256)))
_OUTER = bytes.maketrans(bytes(range(256)), bytes(b ^ 0x5C for b in range(256)))


@functools.lru_cache(maxsize=8)
def _pads(secret: str) -> tuple[Any, Any]:
    """SHA-256 after the inner and the outer padded key of ``secret``'s derived key."""
    block = _key(secret).ljust(_BLOCK, b"\x00")
    return hashlib.sha256(block.translate(_INNER)), hashlib.sha256(block.translate(_OUTER))


def _tag(secret: str, payload: bytes) -> str:
    inner, outer = _pads(secret)
    inner = inner.copy()
    inner.update(payload)
    outer = outer.copy()
    outer.update(inner.digest())
    return _b64(outer.digest()[:_TAG_BYTES])


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode()


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
    return _signed(payload)


def cursor_encode_entry(organization_id: int, entry: Any) -> str:
    """``cursor_encode`` of the position of ``entry`` (an AuditLog, or a row with its
    ``time`` and ``id``), without making the position: every edge of a page needs one."""
    return _signed(f"{_VERSION}:{organization_id}:{_micros(entry.time)}:{entry.id}".encode())


def _signed(payload: bytes) -> str:
    return f"{_b64(payload)}.{_tag(settings.SECRET_KEY, payload)}"


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
        if not any(hmac.compare_digest(tag, _tag(s, payload)) for s in secrets):
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
