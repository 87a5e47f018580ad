"""Log streams: every entry of an organization that matches a stream's filter is pushed to
its HTTPS destination (a SIEM: Splunk, Datadog, a generic collector), signed, in order, at
least once.

**Position.** A stream delivers in the live stream's order (audit/stream.py): by
``(stream_txid, id)``, reading only entries of transactions older than the horizon (the
oldest running transaction), so no entry can appear behind a position already passed. The
stream keeps the position of the last entry the destination acknowledged (HTTP 2xx); a
failure, a restart or a crash sends the same entries again from there (at least once:
receivers drop repeats by the entries' ids). A new stream starts at the horizon of its
creation: it delivers what is recorded from then on.

**One deliverer per stream.** Any number of processes deliver (server processes and
``manage.py deliver_audit_streams`` workers); a stream is delivered only by the holder of
its lease, a row-level claim in PostgreSQL (``lease_holder`` until ``lease_expires_at``)
taken and renewed by conditional UPDATEs. A position is only written by the lease's holder.
A deliverer that dies without releasing its leases holds them ``lease_seconds()`` more.

**Requests.** A batch is up to ``AUDIT_LOG_STREAM_BATCH`` entries; a partial batch waits
until its oldest entry is ``AUDIT_LOG_STREAM_BATCH_WAIT_MS`` old. The body is one of three
formats (``AuditLogStream.Format``). Each request carries ``X-Audit-Stream`` (the stream's
id), ``X-Audit-Timestamp`` (Unix seconds) and ``X-Audit-Signature``: ``v1=`` and the hex
HMAC-SHA256, keyed by the stream's secret, of the timestamp, a dot and the body.

**Failures.** Anything but a 2xx answer (a status, a timeout, a reset, a refused
connection, a redirect, which is never followed, or an answer over
``AUDIT_LOG_STREAM_RESPONSE_MAX_BYTES``) is retried after 1 s, 2 s, 4 s, ... up to
``AUDIT_LOG_STREAM_RETRY_MAX_SECONDS``, each with +-50% jitter. A stream failing for longer
than ``AUDIT_LOG_STREAM_PAUSE_AFTER_HOURS`` is paused with its reason and recorded
(AUDIT_LOG_STREAM_PAUSED); enabled again, it resumes from its position.

**Safety.** Destinations are ``https://`` URLs without credentials; every address their
host resolves to must be public (not private, loopback, link-local, multicast, reserved or
unspecified) unless it is in ``AUDIT_LOG_STREAM_ALLOWED_NETWORKS``, and the connection
goes to the address that was checked (a second lookup cannot point it elsewhere). The
secret is derived from the server's key and a random salt: the database alone does not
hold it, and it is shown once, when it is made.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import random
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import SplitResult, urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from strawberry.relay import to_base64

from audit.events import AuditEventType
from audit.filters import AuditLogFilter, filter_query
from audit.models import AuditLog
from audit.selectors import audit_log_stream
from audit.services import UNSET, Unset, audit_log_record
from audit.storable import text_problem
from core.models import AuditLogStream, Organization

logger = logging.getLogger("audit.log_streams")

STREAM_HEADER: Final = "X-Audit-Stream"
TIMESTAMP_HEADER: Final = "X-Audit-Timestamp"
SIGNATURE_HEADER: Final = "X-Audit-Signature"
USER_AGENT: Final = "auditlog-stream/1"
URL_MAX_LENGTH: Final = 2000
NAME_MAX_LENGTH: Final = 100
STREAMS_PER_ORGANIZATION: Final = 20
# The application_name of the deliverers' listening connections (pg_stat_activity).
LOG_STREAMS_APPLICATION: Final = "auditlog log streams"


class DestinationRefused(ValueError):
    """A destination this server will not send to, and why."""


class DeliveryFailed(Exception):
    """A request that did not end in a 2xx answer; the message says what happened."""


# --- the secret and the signature -----------------------------------------------------------


def _secret_key() -> bytes:
    return hashlib.sha256(b"audit-log-stream-secret:" + settings.SECRET_KEY.encode()).digest()


def stream_secret(stream: AuditLogStream) -> str:
    digest = hmac.new(
        _secret_key(), f"{stream.pk}:{stream.secret_salt}".encode(), hashlib.sha256
    ).digest()
    return "whsec_" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# --- a destination's own credential, sealed at rest -----------------------------------------

CREDENTIAL_MAX_LENGTH: Final = 4096
# Headers a credential may not be sent as: the request's own, and the signature's.
_RESERVED_HEADERS: Final = frozenset(
    {"host", "content-type", "content-length", "transfer-encoding", "connection", "user-agent"}
)


def _credential_keys() -> tuple[bytes, bytes]:
    base = hashlib.sha256(b"audit-log-stream-credential:" + settings.SECRET_KEY.encode()).digest()
    return (
        hmac.new(base, b"encrypt", hashlib.sha256).digest(),
        hmac.new(base, b"authenticate", hashlib.sha256).digest(),
    )


def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    blocks = (length + 31) // 32
    return b"".join(
        hmac.new(key, nonce + n.to_bytes(8, "big"), hashlib.sha256).digest() for n in range(blocks)
    )[:length]


def seal(value: str) -> str:
    """``value`` encrypted and authenticated (HMAC-SHA256 in counter mode, then an
    HMAC-SHA256 tag over nonce and ciphertext), with keys derived from SECRET_KEY."""
    encrypt, authenticate = _credential_keys()
    nonce = secrets.token_bytes(16)
    plain = value.encode()
    cipher = bytes(
        a ^ b for a, b in zip(plain, _keystream(encrypt, nonce, len(plain)), strict=True)
    )
    tag = hmac.new(authenticate, nonce + cipher, hashlib.sha256).digest()
    return base64.b64encode(nonce + cipher + tag).decode()


def unseal(sealed: str) -> str:
    """What ``seal`` sealed; ValueError when it was sealed with another SECRET_KEY or changed."""
    encrypt, authenticate = _credential_keys()
    raw = base64.b64decode(sealed)
    nonce, cipher, tag = raw[:16], raw[16:-32], raw[-32:]
    expected = hmac.new(authenticate, nonce + cipher, hashlib.sha256).digest()
    if len(raw) < 48 or not hmac.compare_digest(tag, expected):
        raise ValueError("the stored credential cannot be read with this SECRET_KEY")
    keystream = _keystream(encrypt, nonce, len(cipher))
    return bytes(a ^ b for a, b in zip(cipher, keystream, strict=True)).decode()


def checked_credential(name: str, value: str) -> tuple[str, str]:
    """A header name and value a stream may send, or ValidationError saying why not."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}", name or ""):
        raise ValidationError("the credential's header name must be letters, digits and '-'")
    if name.lower() in _RESERVED_HEADERS or name.lower().startswith("x-audit-"):
        raise ValidationError(f"{name} cannot carry a credential")
    if not value or len(value) > CREDENTIAL_MAX_LENGTH:
        raise ValidationError(f"the credential must be 1 to {CREDENTIAL_MAX_LENGTH} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in value) or text_problem(value) is not None:
        raise ValidationError("the credential must not contain control characters")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValidationError("the credential must be ASCII or Latin-1 text") from None
    return name, value


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


# --- destinations ---------------------------------------------------------------------------


def checked_url(url: str) -> SplitResult:
    """``url`` split, when it is an https URL this server may name as a destination (its
    addresses are checked when it is used: ``allowed_addresses``)."""
    if not isinstance(url, str) or not url:
        raise DestinationRefused("the URL must not be empty")
    if len(url) > URL_MAX_LENGTH:
        raise DestinationRefused(f"the URL must be at most {URL_MAX_LENGTH} characters")
    if (problem := text_problem(url)) is not None or any(c in url for c in " \t\r\n"):
        raise DestinationRefused(f"the URL {problem or 'must not contain spaces'}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise DestinationRefused(f"the URL is not valid ({error})") from None
    if parts.scheme != "https":
        raise DestinationRefused("the URL must start with https://")
    if not parts.hostname:
        raise DestinationRefused("the URL must name a host")
    if parts.username is not None or parts.password is not None:
        raise DestinationRefused("the URL must not hold credentials")
    if port == 0:
        raise DestinationRefused("the URL's port must not be 0")
    return parts


def _allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in settings.AUDIT_LOG_STREAM_ALLOWED_NETWORKS):
        return True
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def allowed_address(host: str, port: int) -> str:
    """The address to connect to for ``host``: every address it resolves to must be
    allowed (``_allowed``), so that a name with one public and one private address cannot
    be used to reach the private one."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise DestinationRefused(f"{host} does not resolve ({error})") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    refused = [a for a in addresses if not _allowed(a)]
    if refused or not addresses:
        raise DestinationRefused(
            f"{host} resolves to {refused[0] if refused else 'nothing'}, a private, loopback "
            "or otherwise internal address (allow it with AUDIT_LOG_STREAM_ALLOWED_NETWORKS)"
        )
    return str(addresses[0])


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to an address checked beforehand, with the certificate checked for the host."""

    def __init__(self, host: str, port: int, address: str, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        # As http.client's own connect: headers and body go out at once, not 40 ms apart
        # (Nagle's algorithm waiting on the receiver's delayed ACK).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def _ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=settings.AUDIT_LOG_STREAM_CA_FILE or None)


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST ``body``; the status of a 2xx answer, else DeliveryFailed (or
    DestinationRefused) saying what happened."""
    parts = checked_url(url)
    port = parts.port or 443
    assert parts.hostname is not None
    address = allowed_address(parts.hostname, port)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = _PinnedHTTPSConnection(
        parts.hostname,
        port,
        address,
        timeout=settings.AUDIT_LOG_STREAM_TIMEOUT_SECONDS,
        context=_ssl_context(),
    )
    limit = settings.AUDIT_LOG_STREAM_RESPONSE_MAX_BYTES
    try:
        conn.request("POST", target, body=body, headers={"User-Agent": USER_AGENT, **headers})
        response = conn.getresponse()
        answer = response.read(limit + 1)
    except TimeoutError:
        raise DeliveryFailed(
            f"no answer within {settings.AUDIT_LOG_STREAM_TIMEOUT_SECONDS} s"
        ) from None
    except ssl.SSLError as error:
        raise DeliveryFailed(f"TLS failed: {error.reason or error}") from None
    except (OSError, http.client.HTTPException) as error:
        raise DeliveryFailed(f"connection failed: {error.__class__.__name__}: {error}") from None
    finally:
        conn.close()
    status = response.status
    if 300 <= status < 400:
        raise DeliveryFailed(f"HTTP {status}: redirects are not followed")
    if not 200 <= status < 300:
        text = answer[:200].decode("utf-8", "replace").strip()
        raise DeliveryFailed(f"HTTP {status}" + (f": {text}" if text else ""))
    if len(answer) > limit:
        raise DeliveryFailed(f"the answer was larger than {limit} bytes")
    return status


# --- bodies --------------------------------------------------------------------------------


def entry_json(entry: AuditLog) -> dict[str, Any]:
    """An entry as this API's AuditLog reads (id, event, time, ip, details, user)."""
    user = None
    if entry.actor_email is not None:
        user = {
            "id": to_base64("User", entry.actor_id) if entry.actor_id is not None else None,
            "email": entry.actor_email,
            "name": entry.actor_name or None,
        }
    return {
        "id": to_base64("AuditLog", entry.pk),
        "event": entry.event,
        "time": entry.time.isoformat(),
        "ip": entry.ip,
        "details": entry.details,
        "user": user,
    }


def body_of(stream: AuditLogStream, entries: Sequence[AuditLog]) -> tuple[bytes, str]:
    """The request body of a batch, and its content type."""
    rows = [entry_json(entry) for entry in entries]
    if stream.format == AuditLogStream.Format.JSONL:
        text = "".join(json.dumps(row, cls=DjangoJSONEncoder) + "\n" for row in rows)
        return text.encode(), "application/x-ndjson"
    if stream.format == AuditLogStream.Format.SPLUNK_HEC:
        text = "".join(
            json.dumps(
                {
                    "time": entry.time.timestamp(),
                    "source": "auditlog",
                    "sourcetype": "auditlog:entry",
                    "event": row,
                },
                cls=DjangoJSONEncoder,
            )
            + "\n"
            for entry, row in zip(entries, rows, strict=True)
        )
        return text.encode(), "application/json; charset=utf-8"
    body = json.dumps({"stream": stream.pk, "events": rows}, cls=DjangoJSONEncoder)
    return body.encode(), "application/json"


def _headers(stream: AuditLogStream, body: bytes, content_type: str) -> dict[str, str]:
    timestamp = int(time.time())
    headers = {
        "Content-Type": content_type,
        STREAM_HEADER: str(stream.pk),
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(stream_secret(stream), timestamp, body),
    }
    if stream.credential_header:
        try:
            headers[stream.credential_header] = unseal(stream.credential_sealed)
        except ValueError as error:
            raise DeliveryFailed(f"{error}: set the stream's credential again") from None
    return headers


# --- managing streams -----------------------------------------------------------------------


def stream_filter(stream: AuditLogStream) -> AuditLogFilter:
    return AuditLogFilter.build(
        event_types=stream.event_types or None,
        user_email=stream.user_email or None,
        time_from=stream.time_from,
        time_to=stream.time_to,
        ip=stream.ip or None,
        search=stream.search or None,
        details=stream.details,
    )


def _destination(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _summary(stream: AuditLogStream) -> dict[str, Any]:
    return {
        "id": stream.pk,
        "name": stream.name,
        "destination": _destination(stream.url),
        "format": stream.format,
        "enabled": stream.enabled,
    }


def _horizon() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        return int(cursor.fetchone()[0])


def _checked_name(organization: Organization, name: str, exclude: int | None = None) -> str:
    name = name.strip() if isinstance(name, str) else ""
    if not name:
        raise ValidationError("a stream needs a name")
    if len(name) > NAME_MAX_LENGTH or (text_problem(name) is not None):
        raise ValidationError(f"the name must be at most {NAME_MAX_LENGTH} valid characters")
    others = AuditLogStream.objects.filter(organization=organization, name=name)
    if exclude is not None:
        others = others.exclude(pk=exclude)
    if others.exists():
        raise ValidationError(f"a stream named {name!r} already exists")
    return name


def _checked_destination(url: str) -> str:
    try:
        checked_url(url)
    except DestinationRefused as refused:
        raise ValidationError(str(refused)) from None
    return url


def _apply_filter(stream: AuditLogStream, filters: AuditLogFilter) -> None:
    stream.event_types = sorted(e.value for e in filters.event_types or ())
    stream.user_email = filters.user_email or ""
    stream.time_from = filters.time_from
    stream.time_to = filters.time_to
    stream.ip = str(filters.ip) if filters.ip is not None else ""
    stream.search = filters.search or ""
    stream.details = filters.details


@transaction.atomic
def audit_log_stream_create(
    *,
    organization: Organization,
    name: str,
    url: str,
    format: str = AuditLogStream.Format.JSON,
    filters: AuditLogFilter | None = None,
    enabled: bool = True,
    credential: tuple[str, str] | None = None,
) -> tuple[AuditLogStream, str]:
    """A new stream, delivering from now on, and its signing secret (shown once: it is not
    stored). ``credential`` is a header the destination requires, (name, value): sent with
    every request, sealed at rest, never shown. Records AUDIT_LOG_STREAM_CREATED."""
    if AuditLogStream.objects.filter(organization=organization).count() >= (
        STREAMS_PER_ORGANIZATION
    ):
        raise ValidationError(f"an organization has at most {STREAMS_PER_ORGANIZATION} streams")
    if format not in AuditLogStream.Format.values:
        raise ValidationError(f"format must be one of {', '.join(AuditLogStream.Format.values)}")
    stream = AuditLogStream(
        organization=organization,
        name=_checked_name(organization, name),
        url=_checked_destination(url),
        format=format,
        enabled=enabled,
        secret_salt=secrets.token_hex(32),
        position_txid=_horizon(),
    )
    _apply_filter(stream, filters or AuditLogFilter())
    if credential is not None:
        name, value = checked_credential(*credential)
        stream.credential_header, stream.credential_sealed = name, seal(value)
    stream.save(force_insert=True)
    audit_log_record(
        organization=organization,
        event=AuditEventType.AUDIT_LOG_STREAM_CREATED,
        details={"stream": _summary(stream)},
    )
    return stream, stream_secret(stream)


@transaction.atomic
def audit_log_stream_update(
    *,
    stream: AuditLogStream,
    name: str | Unset = UNSET,
    url: str | Unset = UNSET,
    format: str | Unset = UNSET,
    filters: AuditLogFilter | Unset = UNSET,
    enabled: bool | Unset = UNSET,
    rotate_secret: bool = False,
    credential: tuple[str, str] | Unset | None = UNSET,
) -> tuple[AuditLogStream, str | None]:
    """Change a stream; the new secret when ``rotate_secret``. Enabling a paused or
    disabled stream resumes it from its position at once. Records
    AUDIT_LOG_STREAM_UPDATED with what changed (nothing when nothing did)."""
    stream = AuditLogStream.objects.select_for_update().get(pk=stream.pk)
    changes: dict[str, dict[str, Any]] = {}

    def change(field: str, label: str, value: Any, shown: Any = None) -> None:
        if getattr(stream, field) != value:
            changes[label] = {
                "from": shown(getattr(stream, field)) if shown else getattr(stream, field),
                "to": shown(value) if shown else value,
            }
            setattr(stream, field, value)

    if not isinstance(name, Unset):
        change("name", "name", _checked_name(stream.organization, name, exclude=stream.pk))
    if not isinstance(url, Unset):
        change("url", "destination", _checked_destination(url), _destination)
    if not isinstance(format, Unset):
        if format not in AuditLogStream.Format.values:
            raise ValidationError(
                f"format must be one of {', '.join(AuditLogStream.Format.values)}"
            )
        change("format", "format", format)
    if not isinstance(filters, Unset):
        before = stream_filter(stream)
        _apply_filter(stream, filters)
        if stream_filter(stream) != before:
            changes["filter"] = {"from": filter_query(before), "to": filter_query(filters)}
    if not isinstance(enabled, Unset):
        resumed = enabled and (not stream.enabled or stream.paused_at is not None)
        change("enabled", "enabled", enabled)
        if resumed:
            if stream.paused_at is not None:
                changes.setdefault("paused", {"from": True, "to": False})
            stream.paused_at, stream.paused_reason = None, ""
            stream.failures, stream.failing_since, stream.next_attempt_at = 0, None, None
    if not isinstance(credential, Unset):
        name, sealed = "", ""
        if credential is not None:
            name, value = checked_credential(*credential)
            sealed = seal(value)
        changes["credential"] = {
            "from": stream.credential_header or None,
            "to": name or None,
        }  # header names only: a value is never recorded
        stream.credential_header, stream.credential_sealed = name, sealed
    new_secret = None
    if rotate_secret:
        stream.secret_salt = secrets.token_hex(32)
        changes["secret"] = {"from": "(hidden)", "to": "(rotated)"}
    if not changes:
        return stream, None
    stream.save()
    if rotate_secret:
        new_secret = stream_secret(stream)
    audit_log_record(
        organization=stream.organization,
        event=AuditEventType.AUDIT_LOG_STREAM_UPDATED,
        details={"stream": _summary(stream), "changes": changes},
    )
    return stream, new_secret


@transaction.atomic
def audit_log_stream_delete(*, stream: AuditLogStream) -> None:
    summary = _summary(stream)
    organization = stream.organization
    AuditLogStream.objects.filter(pk=stream.pk).delete()
    audit_log_record(
        organization=organization,
        event=AuditEventType.AUDIT_LOG_STREAM_DELETED,
        details={"stream": summary},
    )


@dataclass(frozen=True)
class TestOutcome:
    ok: bool
    status: int | None
    error: str | None


def audit_log_stream_test(*, stream: AuditLogStream) -> TestOutcome:
    """Send one signed request with no entries (``{"stream": id, "events": [],
    "test": true}`` in every format's content type), and say how the destination answered.
    Changes nothing."""
    body = json.dumps({"stream": stream.pk, "events": [], "test": True}).encode()
    content_type = body_of(stream, [])[1]
    try:
        status = post(stream.url, body, _headers(stream, body, content_type))
    except (DeliveryFailed, DestinationRefused) as failure:
        return TestOutcome(ok=False, status=None, error=str(failure))
    return TestOutcome(ok=True, status=status, error=None)


# --- status ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamLag:
    events: int
    seconds: float


def audit_log_stream_lag(stream: AuditLogStream, now: datetime | None = None) -> StreamLag:
    """How far behind the destination is: matching entries after its position, and the
    age of the oldest of them (0 when it is up to date). Counts every waiting entry (a
    range of the stream's index per filter)."""
    waiting = audit_log_stream(
        organization_ids=[stream.organization_id],
        filters=stream_filter(stream),
        after=(stream.position_txid, stream.position_id),
    )
    count = waiting.count()
    if not count:
        return StreamLag(0, 0.0)
    oldest = waiting.values_list("time", flat=True).first()
    age = ((now or timezone.now()) - oldest).total_seconds() if oldest else 0.0
    return StreamLag(count, max(age, 0.0))


def streams_of(organization: Organization) -> list[AuditLogStream]:
    return list(AuditLogStream.objects.filter(organization=organization).order_by("id"))


# --- delivery -------------------------------------------------------------------------------


def lease_seconds() -> int:
    """How long a claim on a stream lasts: a request's timeout twice, and 5 s, so that it
    outlives one attempt; a deliverer that dies gives its streams up after this."""
    return 2 * settings.AUDIT_LOG_STREAM_TIMEOUT_SECONDS + 5


def _claim(stream_id: int, holder: str) -> AuditLogStream | None:
    """The stream, when this holder has (or now takes) its lease and it is due."""
    now = timezone.now()
    free = Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now) | Q(lease_holder=holder)
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    taken = AuditLogStream.objects.filter(
        free, due, pk=stream_id, enabled=True, paused_at__isnull=True
    ).update(lease_holder=holder, lease_expires_at=now + timedelta(seconds=lease_seconds()))
    if not taken:
        return None
    return AuditLogStream.objects.select_related("organization").get(pk=stream_id)


def _backoff(failures: int) -> float:
    base = min(2.0 ** (failures - 1), float(settings.AUDIT_LOG_STREAM_RETRY_MAX_SECONDS))
    return base * random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not a secret


@dataclass(frozen=True)
class DeliveryOutcome:
    delivered: int = 0
    failed: str | None = None
    waiting: bool = False  # a partial batch waits to fill
    busy: bool = False  # another holder delivers it, or it is not due


def deliver_stream(stream_id: int, holder: str) -> DeliveryOutcome:
    """One batch of one stream, by ``holder``: claim the lease, read what follows the
    position, send it, and move the position on a 2xx (failure bookkeeping otherwise)."""
    stream = _claim(stream_id, holder)
    if stream is None:
        return DeliveryOutcome(busy=True)
    entries = list(
        audit_log_stream(
            organization_ids=[stream.organization_id],
            filters=stream_filter(stream),
            after=(stream.position_txid, stream.position_id),
            below=_horizon(),
        )[: settings.AUDIT_LOG_STREAM_BATCH]
    )
    if not entries:
        return DeliveryOutcome()
    wait = timedelta(milliseconds=settings.AUDIT_LOG_STREAM_BATCH_WAIT_MS)
    if len(entries) < settings.AUDIT_LOG_STREAM_BATCH and entries[0].time > timezone.now() - wait:
        return DeliveryOutcome(waiting=True)
    body, content_type = body_of(stream, entries)
    try:
        post(stream.url, body, _headers(stream, body, content_type))
    except (DeliveryFailed, DestinationRefused) as failure:
        _failed(stream, holder, str(failure))
        return DeliveryOutcome(failed=str(failure))
    last = entries[-1]
    now = timezone.now()
    AuditLogStream.objects.filter(pk=stream.pk, lease_holder=holder).update(
        position_txid=last.stream_txid,
        position_id=last.pk,
        delivered=stream.delivered + len(entries),
        last_delivered_at=now,
        last_delivered_entry=last.pk,
        failures=0,
        failing_since=None,
        next_attempt_at=None,
        lease_expires_at=now + timedelta(seconds=lease_seconds()),
    )
    return DeliveryOutcome(delivered=len(entries))


def _failed(stream: AuditLogStream, holder: str, error: str) -> None:
    now = timezone.now()
    failures = stream.failures + 1
    since = stream.failing_since or now
    pause_after = timedelta(hours=settings.AUDIT_LOG_STREAM_PAUSE_AFTER_HOURS)
    logger.warning("log stream %s: delivery failed (%s), failure %s", stream.pk, error, failures)
    with transaction.atomic():
        updates: dict[str, Any] = {
            "failures": failures,
            "failing_since": since,
            "last_error": error[:500],
            "last_error_at": now,
            "next_attempt_at": now + timedelta(seconds=_backoff(failures)),
        }
        pausing = now - since > pause_after
        if pausing:
            reason = f"failing since {since.isoformat(timespec='seconds')}: {error}"[:600]
            updates.update(paused_at=now, paused_reason=reason)
        written = AuditLogStream.objects.filter(pk=stream.pk, lease_holder=holder).update(**updates)
        if written and pausing:
            audit_log_record(
                organization=stream.organization,
                event=AuditEventType.AUDIT_LOG_STREAM_PAUSED,
                details={"stream": _summary(stream), "reason": updates["paused_reason"]},
            )


def due_streams(holder: str) -> list[int]:
    """Streams to try now: enabled, not paused, due, and free or already ``holder``'s."""
    now = timezone.now()
    return list(
        AuditLogStream.objects.filter(enabled=True, paused_at__isnull=True)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .filter(
            Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now) | Q(lease_holder=holder)
        )
        .order_by("id")
        .values_list("pk", flat=True)
    )


def release_leases(holder: str) -> None:
    AuditLogStream.objects.filter(lease_holder=holder).update(
        lease_holder="", lease_expires_at=None
    )


class Deliverer:
    """Delivers every due stream until ``stop`` is set, each stream by one thread of one
    process at a time (its lease), each as a task of its own on ``threads`` threads, so a
    destination that keeps its requests waiting holds up only its own stream: woken by the
    live stream's NOTIFY (audit_log_created), by a finished task, and at least every
    ``poll`` seconds. Releases its leases, and closes its threads' database connections,
    when it stops."""

    def __init__(self, holder: str, threads: int = 4, poll: float = 1.0) -> None:
        self.holder = holder
        self.threads = threads
        self.poll = poll
        self.stop = threading.Event()
        self.delivered = 0
        self._wake = threading.Event()  # a notification, or a task that ended
        self._notified = threading.Event()  # new entries were committed

    def run(self) -> None:
        from concurrent.futures import Future, ThreadPoolExecutor

        listener = threading.Thread(target=self._listen, name="log-stream-listen", daemon=True)
        listener.start()
        # Each stream is a task of its own: a destination that keeps its request waiting
        # until the timeout holds up its own stream only, never the others.
        running: dict[int, Future[DeliveryOutcome]] = {}
        # A stream that delivered is tried again as soon as its task ends, one with a
        # partial batch after a moment (``later``); the others on the next notification of
        # new entries or poll, when the database is asked which streams are due.
        later: dict[int, float] = {}
        next_poll = time.monotonic()  # ask for the due streams at once
        # The worker threads' database connections, closed here when the deliverer stops.
        adopted: list[Any] = []

        def adopt() -> None:
            from django.db import connections

            wrapper = connections["default"]
            wrapper.inc_thread_sharing()
            adopted.append(wrapper)

        try:
            with ThreadPoolExecutor(
                self.threads, thread_name_prefix="log-stream", initializer=adopt
            ) as pool:
                while not self.stop.is_set():
                    self._wake.clear()
                    now = time.monotonic()
                    ready: list[int] = []  # streams to try again without asking the database
                    for stream_id, task in list(running.items()):
                        if task.done():
                            del running[stream_id]
                            outcome = task.result()
                            if outcome.waiting:
                                later[stream_id] = now + 0.05
                            elif outcome.delivered:
                                ready.append(stream_id)
                    for stream_id, at in list(later.items()):
                        if at <= now:
                            del later[stream_id]
                            ready.append(stream_id)
                    if self._notified.is_set() or now >= next_poll:
                        self._notified.clear()
                        next_poll = now + self.poll
                        try:
                            ready += due_streams(self.holder)
                        except (InterfaceError, OperationalError) as error:
                            # The database restarting or unreachable: one line, retried.
                            logger.warning("log streams: the database is unavailable (%s)", error)
                            _close_connection()
                        except Exception:
                            logger.exception("log streams: could not list the due streams")
                            _close_connection()
                    for stream_id in dict.fromkeys(ready):
                        if stream_id in running or stream_id in later:
                            continue
                        task = pool.submit(self._one, stream_id)
                        task.add_done_callback(lambda _: self._wake.set())
                        running[stream_id] = task
                    soonest = min([next_poll, *later.values()])
                    self._wake.wait(max(0.0, soonest - time.monotonic()))
        finally:
            try:
                release_leases(self.holder)
            except Exception:
                logger.warning("log streams: leases not released; they expire by themselves")
            _close_connection()
            for wrapper in adopted:
                with contextlib.suppress(Exception):
                    wrapper.close()
                wrapper.dec_thread_sharing()

    # Full batches one task sends in a row before its stream goes back in the queue (a
    # backlog keeps its thread busy without starving the other streams).
    BATCHES_PER_TASK = 10

    def _one(self, stream_id: int) -> DeliveryOutcome:
        delivered = 0
        try:
            for _ in range(self.BATCHES_PER_TASK):
                outcome = deliver_stream(stream_id, self.holder)
                delivered += outcome.delivered
                if outcome.delivered < settings.AUDIT_LOG_STREAM_BATCH or self.stop.is_set():
                    break
        except (InterfaceError, OperationalError) as error:
            logger.warning("log stream %s: the database is unavailable (%s)", stream_id, error)
            _close_connection()
            outcome = DeliveryOutcome(failed=str(error))
        except Exception as error:
            logger.exception("log stream %s: delivery stopped by an error", stream_id)
            _close_connection()
            outcome = DeliveryOutcome(failed=str(error))
        self.delivered += delivered
        return DeliveryOutcome(
            delivered=delivered, failed=outcome.failed, waiting=outcome.waiting, busy=outcome.busy
        )

    def _listen(self) -> None:
        import psycopg

        from audit.stream import CHANNEL, _connection_kwargs

        while not self.stop.is_set():
            try:
                kwargs = {**_connection_kwargs(), "application_name": LOG_STREAMS_APPLICATION}
                with psycopg.connect(**kwargs, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self.stop.is_set():
                        for _ in conn.notifies(timeout=0.5, stop_after=1):
                            self._notified.set()
                            self._wake.set()
            except Exception:
                self.stop.wait(1.0)


def _close_connection() -> None:
    """Drop this thread's database connection (the next query opens a new one): after an
    error it may be broken or inside a failed transaction."""
    from django.db import connection as thread_connection

    with contextlib.suppress(Exception):
        thread_connection.close()


def new_holder() -> str:
    """A name for this process's leases: host, process id and a random part."""
    import os

    return f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"


def deliver_pending(holder: str) -> int:
    """Deliver every due stream until none has anything ready (for tests and cron):
    the number of entries delivered. Failures are recorded, not raised."""
    delivered = 0
    try:
        while True:
            outcomes = [deliver_stream(stream_id, holder) for stream_id in due_streams(holder)]
            delivered += sum(o.delivered for o in outcomes)
            if not any(o.delivered for o in outcomes):
                if any(o.waiting for o in outcomes):
                    time.sleep(0.05)
                    continue
                return delivered
    finally:
        release_leases(holder)


def start_in_thread(holder: str) -> Deliverer:
    """A Deliverer running in a daemon thread of this process (manage.py serve)."""
    deliverer = Deliverer(holder)
    threading.Thread(target=deliverer.run, name="log-streams", daemon=True).start()
    return deliverer
