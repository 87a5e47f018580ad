"""graphql_api/cursors.py's signing against the standard library's: the tag computed from
the precomputed pads is HMAC-SHA256 (``hmac.digest``) truncated to 128 bits, and its text
is unpadded URL-safe base64, for random secrets and payloads; a cursor encoded from an
entry is the cursor of its position; and a cursor signed with ``hmac.digest`` directly
decodes (so no cursor issued before stops working)."""

from __future__ import annotations

import base64
import hmac
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from audit.selectors import AuditLogPosition
from graphql_api import cursors
from graphql_api.cursors import InvalidCursor, cursor_decode, cursor_encode, cursor_encode_entry

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def reference_tag(secret: str, payload: bytes) -> str:
    digest = hmac.digest(cursors._key(secret), payload, "sha256")[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@given(secret=st.text(max_size=300), payload=st.binary(max_size=300))
def test_the_tag_is_hmac_sha256_truncated(secret: str, payload: bytes) -> None:
    assert cursors._tag(secret, payload) == reference_tag(secret, payload)


@given(data=st.binary(max_size=200))
def test_the_text_is_unpadded_urlsafe_base64(data: bytes) -> None:
    assert cursors._b64(data) == base64.urlsafe_b64encode(data).decode().rstrip("=")


moments = st.builds(
    lambda us: EPOCH + timedelta(microseconds=us),
    st.integers(min_value=-(10**16), max_value=2 * 10**17),
)


@given(org=st.integers(1, 2**63 - 1), time=moments, pk=st.integers(1, 2**63 - 1))
def test_an_entrys_cursor_is_its_positions(org: int, time: datetime, pk: int) -> None:
    position = AuditLogPosition(time=time, id=pk)
    encoded = cursor_encode_entry(org, SimpleNamespace(time=time, id=pk))
    assert encoded == cursor_encode(organization_id=org, position=position)
    assert cursor_decode(encoded, organization_id=org) == position


@override_settings(SECRET_KEY="the-current-key", SECRET_KEY_FALLBACKS=["an-older-key"])
@pytest.mark.parametrize("secret", ["the-current-key", "an-older-key"])
def test_a_cursor_signed_by_hmac_digest_decodes(secret: str) -> None:
    position = AuditLogPosition(time=datetime(2026, 6, 1, 8, 0, 0, 250, tzinfo=UTC), id=42)
    micros = (position.time - EPOCH) // timedelta(microseconds=1)
    payload = f"1:7:{micros}:42".encode()
    packed = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    cursor = f"{packed}.{reference_tag(secret, payload)}"
    assert cursor_decode(cursor, organization_id=7) == position
    with pytest.raises(InvalidCursor):
        cursor_decode(cursor, organization_id=8)
    with pytest.raises(InvalidCursor):
        cursor_decode(f"{packed}.{reference_tag('another-key', payload)}", organization_id=7)
