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
to the database recomputed digests), a sealed entry that is missing (deleted, unless
retention removed entries of that age: then it counts as pruned), altered
(its digest differs), out of its sealed place (reordered), or an entry inside the sealed
range that no checkpoint holds (inserted). Entries after the last checkpoint are counted
as not yet sealed.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

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


# --- verification ---------------------------------------------------------------------------


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

    @property
    def ok(self) -> bool:
        return not self.problem

    def fail(self, problem: str, entry_id: int | None = None) -> IntegrityReport:
        self.problem, self.problem_entry_id = problem, entry_id
        return self


def verify(organization_id: int) -> IntegrityReport:
    """Check the organization's checkpoints and entries (call inside one REPEATABLE READ
    transaction, so both are read from the same snapshot)."""
    entries = entries_in_order(organization_id)
    try:
        return _verify(IntegrityReport(organization_id), entries)
    finally:
        entries.close()  # the server-side cursor


def _verify(report: IntegrityReport, entries: Iterator[EntryRecord]) -> IntegrityReport:
    from audit.models import AuditSeal

    organization_id = report.organization_id
    # A few checkpoints at a time (each holds up to 48 bytes per entry).
    seals = (
        AuditSeal.objects.filter(organization_id=organization_id)
        .order_by("sequence")
        .iterator(chunk_size=8)
    )
    # Sealed entries older than this may be missing: retention removed them (audit_prune).
    pruned_before = _pruned_before_us(organization_id)
    head = ZERO_HEAD
    pending = next(entries, None)
    for expected, seal in enumerate(seals, start=1):
        sequence = seal.sequence
        records = bytes(seal.records)
        where = f"checkpoint {sequence}"
        if sequence != expected:
            return report.fail(f"checkpoint {expected} is missing (the next one is {sequence})")
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
        for sealed_id, time_us, digest in unpack(records):
            if pending is None or pending.id != sealed_id:
                if time_us < pruned_before:
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
    report.unsealed = (pending is not None) + sum(1 for _ in entries)
    return report


def _pruned_before_us(organization_id: int) -> int:
    """The latest time before which retention removed the organization's entries, in
    microseconds since the epoch (the smallest integer when never)."""
    from django.db.models import Max

    from audit.models import AuditPrune

    before = AuditPrune.objects.filter(organization_id=organization_id).aggregate(
        latest=Max("before")
    )["latest"]
    if before is None:
        return -(2**63)
    delta = before - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


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
