"""Tamper evidence: each organization's entries, sealed into a chain of signed checkpoints.

**Order.** An organization's entries are sealed in stream order: entries that predate the
stream (``stream_txid`` NULL) by id, then by ``(stream_txid, id)``; and only those of
transactions older than every running one (``pg_snapshot_xmin``). That is the live
stream's rule (audit/stream.py): no entry can later appear inside a range already sealed,
so the sealed order is final.

**Digest.** Each entry's digest is SHA-256 over a JSON array of what it records
(``DIGEST_SQL``), computed by PostgreSQL: id, organization, event, the actor's email and
name, IP, details, time, idempotency key and stream position. ``actor_id`` is left out:
it is cleared, legitimately, when a user's account is deleted.

**Checkpoints** (``AuditSeal``). Checkpoint *k* holds the next entries (at most
``AUDIT_SEAL_BLOCK_ENTRIES``), each as ``RECORD`` (id, time in microseconds, digest);
``head_k = SHA-256(head_{k-1} || records_k)``, with 32 zero bytes before the first; and an
HMAC-SHA256 signature of the organization, *k*, the count, the last position, ``head_k``
and the sealing time, by ``AUDIT_SEAL_KEY``, which is not in the database. Sealing takes
an advisory lock per organization (one sealer at a time, others skip) and one short
transaction per checkpoint; writers never wait for it.

**Verification** walks the checkpoints and the entries side by side and reports the first
problem: a checkpoint whose signature or head does not verify (someone with write access
to the database recomputed digests), a sealed entry that is missing (deleted, unless a
valid prune record holds it: then it counts as pruned), altered (its digest differs), out
of its sealed place (reordered), or an entry inside the sealed range that no checkpoint
holds (inserted). Entries after the last checkpoint are counted as not yet sealed.

**Rollback.** Checkpoints known from elsewhere (``Expected``) must still be there with the
same head: the last one an earlier verification checked (``audit_verification``, which
the server's role may only append to), and every one an external witness holds
(audit/witness.py). A newest checkpoint below one of them, or a different head at its
sequence, is a chain cut short or rewritten and resealed.

**Prune records** (``AuditPrune``) excuse a missing sealed entry only when the record is
as trustworthy as a checkpoint: signed with the seal key over the organization, the
cutoff, the period, the time and the exact ids removed (``prune_signature``); with a
period no shorter than ``AUDIT_RETENTION_MIN_DAYS`` and a cutoff at least that period
before the time it was pruned; and named by its ``AUDIT_LOG_PRUNED`` entry, which is in
the log with the same figures (or was itself removed by a later valid record). A signed
record that fails any of this is reported; an unsigned one (from before records were
signed) excuses nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from array import array
from bisect import bisect_left
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection

RECORD = struct.Struct("<qq32s")  # id, time (µs since the epoch), digest
ZERO_HEAD = bytes(32)

# What an entry's digest covers. Also in the verifier: one definition, so they agree.
DIGEST_SQL = (
    "sha256(convert_to(jsonb_build_array(a.id, a.organization_id, a.event, a.actor_email, "
    "a.actor_name, host(a.ip), a.details, (extract(epoch FROM a.time) * 1000000)::bigint, "
    "a.idempotency_key, a.stream_txid::text)::text, 'UTF8'))"
)
_COLUMNS = (
    f"a.id, a.stream_txid::text, (extract(epoch FROM a.time) * 1000000)::bigint, {DIGEST_SQL}"
)
_NEXT_LEGACY = (
    f"SELECT {_COLUMNS} FROM audit_log a WHERE a.organization_id = %s "  # noqa: S608
    "AND a.stream_txid IS NULL AND a.id > %s ORDER BY a.id LIMIT %s"
)
_NEXT_STREAM = (
    f"SELECT {_COLUMNS} FROM audit_log a WHERE a.organization_id = %s "  # noqa: S608
    "AND a.stream_txid IS NOT NULL AND (a.stream_txid, a.id) > (%s::xid8, %s) "
    "AND a.stream_txid < pg_snapshot_xmin(pg_current_snapshot()) "
    "ORDER BY a.stream_txid, a.id LIMIT %s"
)
_ALL_IN_ORDER = (
    f"SELECT {_COLUMNS} FROM audit_log a WHERE a.organization_id = %s "  # noqa: S608
    "ORDER BY a.stream_txid NULLS FIRST, a.id"
)


@dataclass(frozen=True)
class EntryRecord:
    id: int
    stream_txid: int | None
    time_us: int
    digest: bytes

    def packed(self) -> bytes:
        return RECORD.pack(self.id, self.time_us, self.digest)


def _record(row: tuple[int, str | None, int, bytes]) -> EntryRecord:
    return EntryRecord(row[0], None if row[1] is None else int(row[1]), row[2], bytes(row[3]))


def next_unsealed(
    organization_id: int, *, after_id: int, after_txid: int | None, limit: int
) -> list[EntryRecord]:
    """The next entries to seal after position ``(after_txid, after_id)`` (``after_id``
    0 and ``after_txid`` None: from the start), in sealing order."""
    rows: list[EntryRecord] = []
    with connection.cursor() as cursor:
        if after_txid is None:
            cursor.execute(_NEXT_LEGACY, [organization_id, after_id, limit])
            rows = [_record(row) for row in cursor.fetchall()]
            after_txid, after_id = 0, 0
        if len(rows) < limit:
            cursor.execute(
                _NEXT_STREAM, [organization_id, str(after_txid), after_id, limit - len(rows)]
            )
            rows += [_record(row) for row in cursor.fetchall()]
    return rows


def entries_in_order(
    organization_id: int, chunk: int = 10_000
) -> Generator[EntryRecord, None, None]:
    """Every entry of the organization in sealing order, read in chunks through a
    server-side cursor (constant memory; needs a transaction)."""
    with connection.chunked_cursor() as cursor:
        cursor.execute(_ALL_IN_ORDER, [organization_id])
        while rows := cursor.fetchmany(chunk):
            yield from (_record(row) for row in rows)


def unpack(records: bytes) -> Iterator[tuple[int, int, bytes]]:
    return RECORD.iter_unpack(records)


def next_head(previous: bytes, records: bytes) -> bytes:
    return hashlib.sha256(previous + records).digest()


# --- keys and signatures --------------------------------------------------------------------


def _keys() -> list[bytes]:
    """The signing key first, then every key that still verifies older checkpoints: the
    fallbacks, and keys derived from SECRET_KEY and its fallbacks (the default before
    AUDIT_SEAL_KEY was set). None of them is stored in the database."""
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    derived = [hmac.new(s.encode(), b"audit-seal", "sha256").digest() for s in secrets]
    configured = [settings.AUDIT_SEAL_KEY, *settings.AUDIT_SEAL_KEY_FALLBACKS]
    return [key.encode() for key in configured if key] + derived


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"audit-seal-key-id:" + key).hexdigest()[:16]


def signing_key() -> tuple[str, bytes]:
    key = _keys()[0]
    return key_id(key), key


def verifying_key(wanted: str) -> bytes | None:
    return next((key for key in _keys() if key_id(key) == wanted), None)


def signature(
    key: bytes,
    *,
    organization_id: int,
    sequence: int,
    entries: int,
    last_entry_id: int,
    last_stream_txid: int | None,
    head: bytes,
    sealed_at: datetime,
) -> bytes:
    message = (
        f"audit-seal:v1:{organization_id}:{sequence}:{entries}:{last_entry_id}:"
        f"{last_stream_txid if last_stream_txid is not None else '-'}:{head.hex()}:"
        f"{sealed_at.isoformat()}"
    )
    return hmac.new(key, message.encode(), "sha256").digest()


def prune_signature(
    key: bytes,
    *,
    organization_id: int,
    before: datetime,
    retention_days: int,
    pruned_at: datetime,
    entry_ids: bytes,
    log_entry_id: int,
) -> bytes:
    """The signature of a prune record: what was removed (the packed ids, by count and
    SHA-256), from which organization, under which cutoff and period, when, and which log
    entry says so."""
    message = (
        f"audit-prune:v1:{organization_id}:{before.astimezone(UTC).isoformat()}:"
        f"{retention_days}:{pruned_at.astimezone(UTC).isoformat()}:{len(entry_ids) // 8}:"
        f"{hashlib.sha256(entry_ids).hexdigest()}:{log_entry_id}"
    )
    return hmac.new(key, message.encode(), "sha256").digest()


def pack_ids(ids: list[int]) -> bytes:
    """Entry ids as a prune record holds them: ascending, little-endian int64."""
    return array("q", sorted(ids)).tobytes() if ids else b""


def _microseconds(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


# --- verification ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """A checkpoint known from outside the chain: it must still exist, with this head."""

    head: bytes
    source: str  # "verified at ...", "witnessed in FILE line N"


@dataclass
class _Pruned:
    """The ids that valid prune records removed (sorted), and the latest cutoff."""

    ids: array = field(default_factory=lambda: array("q"))
    before_us: int = -(2**63)

    def holds(self, entry_id: int, time_us: int) -> bool:
        at = bisect_left(self.ids, entry_id)
        return at < len(self.ids) and self.ids[at] == entry_id and time_us < self.before_us


@dataclass
class IntegrityReport:
    """What verifying one organization's chain found (``problem`` empty: all is well)."""

    organization_id: int
    checkpoints: int = 0
    last_sequence: int | None = None
    last_sealed_at: datetime | None = None
    entries: int = 0  # sealed entries checked
    pruned: int = 0  # sealed entries removed by retention
    unsealed: int = 0  # entries after the last checkpoint
    problem: str = ""
    problem_entry_id: int | None = None
    last_head: bytes | None = None

    @property
    def ok(self) -> bool:
        return not self.problem

    def fail(self, problem: str, entry_id: int | None = None) -> IntegrityReport:
        self.problem, self.problem_entry_id = problem, entry_id
        return self


def verify(organization_id: int, expected: Mapping[int, Expected] | None = None) -> IntegrityReport:
    """Check the organization's checkpoints, prune records and entries, and that every
    ``expected`` checkpoint (by sequence) is there unchanged (call inside one REPEATABLE
    READ transaction, so all are read from the same snapshot)."""
    report = IntegrityReport(organization_id)
    pruned = _pruned(report)
    if not report.ok:
        return report
    entries = entries_in_order(organization_id)
    try:
        return _verify(report, entries, pruned, expected or {})
    finally:
        entries.close()  # the server-side cursor


def _pruned(report: IntegrityReport) -> _Pruned:
    """What the organization's valid prune records removed; a signed record that does not
    hold up fails the report. Unsigned records count for nothing."""
    from django.conf import settings

    from audit.events import AuditEventType
    from audit.models import AuditLog, AuditPrune

    organization_id = report.organization_id
    records = list(
        AuditPrune.objects.filter(organization_id=organization_id, signature__isnull=False)
        .order_by("id")
        .values_list(
            "id",
            "before",
            "retention_days",
            "pruned_at",
            "entry_ids",
            "key_id",
            "signature",
            "log_entry_id",
            "entries",
        )
    )
    pruned = _Pruned()
    if not records:
        return pruned
    logged = dict(
        AuditLog.objects.filter(
            organization_id=organization_id, event=AuditEventType.AUDIT_LOG_PRUNED
        ).values_list("id", "details")
    )
    removed: list[int] = []
    unlogged: list[tuple[int, int]] = []  # (record, its log entry): looked for among removed
    for record_id, before, days, pruned_at, packed, key_id, signed, log_entry_id, count in records:
        where = f"prune record {record_id}"
        packed = bytes(packed or b"")
        key = verifying_key(key_id)
        if key is None:
            report.fail(f"{where} is signed with an unknown key ({key_id})")
            return pruned
        if (
            days is None
            or log_entry_id is None
            or not hmac.compare_digest(
                bytes(signed or b""),
                prune_signature(
                    key,
                    organization_id=organization_id,
                    before=before,
                    retention_days=days,
                    pruned_at=pruned_at,
                    entry_ids=packed,
                    log_entry_id=log_entry_id,
                ),
            )
            or count != len(packed) // 8
        ):
            report.fail(f"{where} does not match its signature: it was forged or rewritten")
            return pruned
        if days < settings.AUDIT_RETENTION_MIN_DAYS or before + timedelta(days=days) > pruned_at:
            report.fail(
                f"{where} removed entries before {before:%Y-%m-%d %H:%M:%S} UTC with a period "
                f"of {days} days at {pruned_at:%Y-%m-%d %H:%M:%S} UTC, which retention "
                f"(AUDIT_RETENTION_MIN_DAYS {settings.AUDIT_RETENTION_MIN_DAYS}) never does"
            )
            return pruned
        details = logged.get(log_entry_id)
        if details is None:
            unlogged.append((record_id, log_entry_id))
        elif (
            details.get("pruneRecordIdsSha256") != hashlib.sha256(packed).hexdigest()
            or details.get("entries") != count
            or details.get("retentionDays") != days
        ):
            report.fail(
                f"{where} does not agree with its AUDIT_LOG_PRUNED entry {log_entry_id}",
                log_entry_id,
            )
            return pruned
        removed.extend(array("q", packed))
        pruned.before_us = max(pruned.before_us, _microseconds(before))
    pruned.ids = array("q", sorted(removed))
    for record_id, log_entry_id in unlogged:
        # Its entry may have been removed by a later prune, as any old entry is.
        at = bisect_left(pruned.ids, log_entry_id)
        if at == len(pruned.ids) or pruned.ids[at] != log_entry_id:
            report.fail(
                f"prune record {record_id} is not in the log: its AUDIT_LOG_PRUNED entry "
                f"{log_entry_id} is missing",
                log_entry_id,
            )
            return pruned
    return pruned


def _verify(
    report: IntegrityReport,
    entries: Iterator[EntryRecord],
    pruned: _Pruned,
    expected: Mapping[int, Expected],
) -> IntegrityReport:
    from audit.models import AuditSeal

    organization_id = report.organization_id
    # A few checkpoints at a time (each holds up to 48 bytes per entry).
    seals = (
        AuditSeal.objects.filter(organization_id=organization_id)
        .order_by("sequence")
        .iterator(chunk_size=8)
    )
    head = ZERO_HEAD
    pending = next(entries, None)
    for number, seal in enumerate(seals, start=1):
        sequence = seal.sequence
        records = bytes(seal.records)
        where = f"checkpoint {sequence}"
        if sequence != number:
            return report.fail(f"checkpoint {number} is missing (the next one is {sequence})")
        key = verifying_key(seal.key_id)
        if key is None:
            return report.fail(f"{where} is signed with an unknown key ({seal.key_id})")
        signed = signature(
            key,
            organization_id=organization_id,
            sequence=sequence,
            entries=seal.entries,
            last_entry_id=seal.last_entry_id,
            last_stream_txid=seal.last_stream_txid,
            head=bytes(seal.head),
            sealed_at=seal.sealed_at,
        )
        if not hmac.compare_digest(signed, bytes(seal.signature)):
            return report.fail(f"{where} does not match its signature: it was rewritten")
        if next_head(head, records) != bytes(seal.head) or len(records) != (
            seal.entries * RECORD.size
        ):
            return report.fail(f"{where} does not follow from the one before: it was rewritten")
        head = bytes(seal.head)
        known = expected.get(sequence)
        if known is not None and not hmac.compare_digest(known.head, head):
            return report.fail(
                f"{where} differs from the one {known.source}: the chain was rewritten "
                "and sealed again"
            )
        for sealed_id, time_us, digest in unpack(records):
            if pending is None or pending.id != sealed_id:
                if pruned.holds(sealed_id, time_us):
                    report.pruned += 1
                    continue
                return _misplaced(report, organization_id, sealed_id, pending, where)
            if not hmac.compare_digest(pending.digest, digest):
                return report.fail(
                    f"entry {sealed_id} was altered after it was sealed ({where})", sealed_id
                )
            report.entries += 1
            pending = next(entries, None)
        report.checkpoints += 1
        report.last_sequence, report.last_sealed_at = sequence, seal.sealed_at
        report.last_head = head
    newest = max(expected, default=0)
    if newest > (report.last_sequence or 0):
        return report.fail(
            f"checkpoint {newest} ({expected[newest].source}) is missing: the newest "
            f"checkpoint is {report.last_sequence or 'none'}; the chain was cut short"
        )
    report.unsealed = (pending is not None) + sum(1 for _ in entries)
    return report


def _misplaced(
    report: IntegrityReport,
    organization_id: int,
    sealed_id: int,
    found: EntryRecord | None,
    where: str,
) -> IntegrityReport:
    """Explain why the entry found is not the sealed one expected at this place."""
    from audit.models import AuditLog, AuditSeal

    if not AuditLog.objects.filter(organization_id=organization_id, pk=sealed_id).exists():
        return report.fail(f"entry {sealed_id} is missing: it was deleted ({where})", sealed_id)
    assert found is not None  # the sealed entry exists, so the walk has not ended
    sealed_anywhere = any(
        entry_id == found.id
        for records in AuditSeal.objects.filter(organization_id=organization_id).values_list(
            "records", flat=True
        )
        for entry_id, _, _ in unpack(bytes(records))
    )
    if sealed_anywhere:
        return report.fail(
            f"entry {found.id} is out of its sealed place: entry {sealed_id} was expected "
            f"there ({where}); entries were reordered",
            found.id,
        )
    return report.fail(
        f"entry {found.id} was inserted among sealed entries ({where}): no checkpoint holds it",
        found.id,
    )
