"""Recording audit entries: the only code that writes the audit_log table.

* ``audit_log_record`` -- one entry, inside the caller's transaction, so the entry exists
  exactly when the change it describes was committed. Actor and IP default to the audit
  context of the request or job (audit/context.py); explicit arguments win.
* ``audit_log_bulk_create`` -- many entries through COPY, in one transaction, in the
  order given (ids increase in that order). For imports and demo data.
* ``audit_log_record_batch`` -- events sent by an integration (recordAuditEvents), each with
  an idempotency key: all of them or none, and a retried batch records nothing twice.

Other parts of the platform (sessions, cloud resources, credentials) record their events
by calling ``audit_log_record`` with the event type and details of their action.

Tamper evidence (audit/integrity.py): ``audit_log_seal`` adds signed checkpoints of an
organization's new entries; ``audit_log_verify`` checks them and records the outcome.

Retention (audit/retention.py): ``audit_log_prune`` removes entries past the period through
the database's one narrow path (migration 0010), as the owner, and records that it did.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import OperationalError, connection, connections, transaction
from django.utils import timezone

from audit import integrity, witness
from audit.context import audit_context_get
from audit.details import details_problems
from audit.events import FAMILY_OF, RECORDED_BY_THE_AUDIT_LOG, AuditEventType
from audit.insert_sql import audit_log_insert
from audit.models import (
    ENTRY_TIME_MIN,
    IDEMPOTENCY_KEY_MAX_LENGTH,
    AuditLog,
    AuditPrune,
    AuditSeal,
    AuditVerification,
)
from audit.storable import as_utc, json_problem, text_problem
from core.client_ip import normalized_ip, parse_ip
from core.database import is_transaction_conflict
from core.models import Organization, User
from core.roles import OWNER_ALIAS


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
    audit_log_insert(entry)  # entry.save(force_insert=True), its statement written once
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


# --- batches from integrations ---------------------------------------------------------------

BATCH_MAX_EVENTS: Final = 1_000
# How far ahead of the server's clock an event's time may be (clock skew between systems).
FUTURE_TOLERANCE: Final = timedelta(minutes=5)
# The encoded details of one event; a batch as a whole is bounded by the request size limit.
DETAILS_MAX_BYTES: Final = 65_536
USER_EMAIL_MAX_LENGTH: Final = 254


@dataclass(frozen=True, slots=True)
class AuditEventSubmission:
    """One event as an integration sends it. A naive ``time`` is taken as UTC; None is now."""

    idempotency_key: str
    event: str
    user_email: str | None = None
    ip: str | None = None
    # As decoded from the client's JSON; anything but a mapping (or None) is a problem.
    details: object = None
    time: datetime | None = None


@dataclass(frozen=True, slots=True)
class SubmissionProblem:
    """What is wrong with one event of a batch: its index, the field and why."""

    index: int
    field: str
    message: str


class InvalidSubmissions(ValueError):
    """A batch was refused, and nothing written, because of these problems."""

    def __init__(self, problems: Sequence[SubmissionProblem]) -> None:
        super().__init__(f"{len(problems)} invalid event(s)")
        self.problems = list(problems)


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """The entry of one submitted event; ``created`` is False when an earlier call with the
    same idempotency key recorded it (that entry is returned, as it was recorded)."""

    entry_id: int
    time: datetime
    stream_txid: int | None
    created: bool


# Ids are drawn in the order given (a materialized scan of the arrays, in array order),
# then the rows go into the table, and so into the idempotency index, in key order: two
# batches that share keys wait on each other's uncommitted keys in one order, so neither
# can hold a key the other waits for while it waits itself (no deadlock), whatever order
# each integration sent them in.
_BATCH_INSERT = """
WITH i AS MATERIALIZED (
    SELECT nextval(pg_get_serial_sequence('audit_log', 'id')) AS id, i.*
    FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[], %s::text[], %s::inet[],
                %s::jsonb[], %s::timestamptz[])
         AS i(key, event, actor_id, actor_email, actor_name, ip, details, time)
)
INSERT INTO audit_log (id, organization_id, idempotency_key, event, actor_id, actor_email,
                       actor_name, ip, details, time)
SELECT i.id, %s, i.key, i.event, i.actor_id, i.actor_email, i.actor_name, i.ip, i.details,
       i.time
FROM i
ORDER BY i.key COLLATE "C"
ON CONFLICT (organization_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING idempotency_key, id, time, stream_txid::text
"""
# A deadlock or serialization failure that still happens (say, with a transaction of the
# caller's that holds other locks) is retried this many times in all before it is raised.
BATCH_ATTEMPTS: Final = 3
_BATCH_EXISTING = """
SELECT idempotency_key, id, time, stream_txid::text FROM audit_log
WHERE organization_id = %s AND idempotency_key = ANY(%s::text[]) AND idempotency_key IS NOT NULL
"""


def audit_log_record_batch(
    *, organization: Organization, submissions: Sequence[AuditEventSubmission]
) -> list[RecordedEvent]:
    """Record a batch from an integration, in the order given; one result per submission.

    Every submission is checked first: any problem refuses the whole batch with
    ``InvalidSubmissions`` (listing every problem) and writes nothing. Keys already
    recorded for the organization, by an earlier call or by a concurrent one that
    committed first, are not recorded again: their existing entries are returned. A user
    email that belongs to a member of the organization links the entry to that member.
    """
    if len(submissions) > BATCH_MAX_EVENTS:
        raise InvalidSubmissions(
            [
                SubmissionProblem(
                    BATCH_MAX_EVENTS,
                    "events",
                    f"at most {BATCH_MAX_EVENTS} events per call; got {len(submissions)}",
                )
            ]
        )
    if not submissions:
        return []
    now = timezone.now()
    problems: list[SubmissionProblem] = []
    first_index: dict[str, int] = {}
    rows: list[tuple[Any, ...]] = []
    for index, submission in enumerate(submissions):
        row, found = _checked(index, submission, now, first_index)
        problems += found
        rows.append(row)
    if problems:
        raise InvalidSubmissions(problems)

    emails = {row[3].lower() for row in rows if row[3] is not None}
    members = {
        email: (pk, name)
        for pk, email, name in User.objects.filter(
            organization=organization, email__in=emails
        ).values_list("pk", "email", "name")
    }
    columns: list[list[Any]] = [[] for _ in range(8)]
    for key, event, email, ip, details, moment in (
        (r[0], r[1], r[3], r[4], r[5], r[6]) for r in rows
    ):
        member = members.get(email.lower()) if email is not None else None
        values = (
            key,
            event,
            member[0] if member else None,
            email.lower() if member else email,
            (member[1] or None) if member else None,
            ip,
            details,
            moment,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    keys = columns[0]
    created, existing = _batch_insert(organization, columns)
    results = []
    for key in keys:
        row = created.get(key) or existing[key]
        results.append(
            RecordedEvent(
                entry_id=row[1],
                time=row[2],
                stream_txid=int(row[3]) if row[3] is not None else None,
                created=key in created,
            )
        )
    return results


def _batch_insert(
    organization: Organization, columns: list[list[Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Insert the rows (as columns) in one transaction: the rows it created, and those whose
    key was recorded before, each by key. A transaction-rollback error (deadlock,
    serialization failure) is retried from the start, up to ``BATCH_ATTEMPTS`` in all,
    unless the caller's own transaction is open (then it is the caller's to retry)."""
    keys = columns[0]
    for attempt in range(1, BATCH_ATTEMPTS + 1):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(_BATCH_INSERT, [*columns, organization.pk])
                created = {row[0]: row for row in cursor.fetchall()}
                existing: dict[str, Any] = {}
                if len(created) < len(keys):
                    missing = [k for k in keys if k not in created]
                    cursor.execute(_BATCH_EXISTING, [organization.pk, missing])
                    existing = {row[0]: row for row in cursor.fetchall()}
                return created, existing
        except OperationalError as error:
            retry = attempt < BATCH_ATTEMPTS and not connection.in_atomic_block
            if not (retry and is_transaction_conflict(error)):
                raise
    raise AssertionError("unreachable")


def _checked(
    index: int, submission: AuditEventSubmission, now: datetime, first_index: dict[str, int]
) -> tuple[tuple[Any, ...], list[SubmissionProblem]]:
    """One submission as a row (key, event, None, email, ip, details JSON, time) and its
    problems. Every value is checked against what PostgreSQL can store (audit/storable.py)
    before the batch reaches it."""
    problems: list[SubmissionProblem] = []

    def problem(field_name: str, message: str) -> None:
        problems.append(SubmissionProblem(index, field_name, message))

    key = submission.idempotency_key
    if (unstorable := text_problem(key)) is not None:
        problem("idempotencyKey", unstorable)
    elif not key or not key.strip():
        problem("idempotencyKey", "must not be blank")
    elif len(key) > IDEMPOTENCY_KEY_MAX_LENGTH:
        problem("idempotencyKey", f"must be at most {IDEMPOTENCY_KEY_MAX_LENGTH} characters")
    elif key in first_index:
        problem("idempotencyKey", f"repeats the key of event {first_index[key]} of this batch")
    else:
        first_index[key] = index
    event = submission.event
    if event not in AuditEventType.values:
        problem("event", f"unknown event type {event!r}")
    elif event in RECORDED_BY_THE_AUDIT_LOG:
        problem("event", f"{event} is recorded by the audit log itself, not by integrations")
    email = submission.user_email.strip() if submission.user_email is not None else None
    if email is not None and len(email) > USER_EMAIL_MAX_LENGTH:
        problem("userEmail", f"must be at most {USER_EMAIL_MAX_LENGTH} characters")
    elif email is not None and (unstorable := text_problem(email)) is not None:
        problem("userEmail", unstorable)
    ip: str | None = None
    if submission.ip is not None and submission.ip != "":
        try:
            ip = normalized_ip(submission.ip)
        except ValueError:
            problem("ip", f"{submission.ip[:60]!r} is not an IPv4 or IPv6 address")
    details_json = "{}"
    details: Mapping[str, Any] | None = {}
    if submission.details is not None:
        details = None
        if not isinstance(submission.details, Mapping):
            problem("details", "must be a JSON object")
        elif (unstorable := json_problem(submission.details)) is not None:
            problem("details", unstorable)
        else:
            details_json = json.dumps(dict(submission.details), cls=DjangoJSONEncoder)
            if len(details_json.encode()) > DETAILS_MAX_BYTES:
                problem("details", f"must encode to at most {DETAILS_MAX_BYTES} bytes of JSON")
            else:
                details = submission.details
    if details is not None and event in FAMILY_OF and event not in RECORDED_BY_THE_AUDIT_LOG:
        for path, message in details_problems(event, details):
            problem(path, message)
    moment = now
    if submission.time is not None:
        moment = submission.time if submission.time.tzinfo else submission.time.replace(tzinfo=UTC)
        if moment < ENTRY_TIME_MIN:
            problem("time", f"must not be before {ENTRY_TIME_MIN.isoformat()}")
        elif moment > now + FUTURE_TOLERANCE:
            problem(
                "time",
                f"is more than {int(FUTURE_TOLERANCE.total_seconds() // 60)} minutes in the "
                "future (the server's clock is "
                f"{now.isoformat(timespec='seconds')})",
            )
        else:
            moment = as_utc(moment)
    return (key, event, None, email or None, ip, details_json, moment), problems


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
    if (unstorable := json_problem(details)) is not None:
        raise ValidationError(f"details {unstorable}")
    # Round-trip so that dates, UUIDs and decimals are stored as their JSON text.
    result: dict[str, Any] = json.loads(json.dumps(dict(details), cls=DjangoJSONEncoder))
    return result


def _aware(value: datetime) -> datetime:
    if timezone.is_naive(value):
        raise ValidationError("time must be timezone-aware")
    return as_utc(value)


# --- tamper evidence (audit/integrity.py) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class SealOutcome:
    checkpoints: int  # added by this call
    entries: int  # sealed by this call
    busy: bool  # another sealer was at work on the organization; this one stopped


class ChainBehind(ValueError):
    """Sealing refused: the organization's chain is behind a checkpoint that was verified
    or witnessed (it was cut short or rewritten); continuing would seal over that."""


def _expected_checkpoints(
    organization: Organization, witnessed: witness.Witness | None
) -> dict[int, integrity.Expected]:
    """The checkpoints the chain must still hold: the last one a verification checked,
    and every one the witness holds (when given)."""
    expected = witnessed.expected(organization.pk) if witnessed is not None else {}
    verified = (
        AuditVerification.objects.filter(
            organization=organization, last_head__isnull=False, last_sequence__isnull=False
        )
        .order_by("-last_sequence", "-verified_at")
        .first()
    )
    if (
        verified is not None
        and verified.last_sequence is not None
        and verified.last_head is not None
        # Where both know a checkpoint, the witness, kept outside the database, decides.
        and verified.last_sequence not in expected
    ):
        at = f"verified at {verified.verified_at:%Y-%m-%d %H:%M:%S} UTC"
        expected[verified.last_sequence] = integrity.Expected(bytes(verified.last_head), at)
    return expected


def _chain_behind(
    organization: Organization, expected: dict[int, integrity.Expected]
) -> str | None:
    if not expected:
        return None
    newest = max(expected)
    seal = AuditSeal.objects.filter(organization=organization, sequence=newest).first()
    if seal is None:
        return (
            f"checkpoint {newest} ({expected[newest].source}) is missing: the chain was cut "
            "short; run verify_audit_log"
        )
    if bytes(seal.head) != expected[newest].head:  # type: ignore[arg-type]
        return (
            f"checkpoint {newest} differs from the one {expected[newest].source}: the chain "
            "was rewritten; run verify_audit_log"
        )
    return None


def audit_log_seal(
    *,
    organization: Organization,
    block: int | None = None,
    progress: Callable[[int], None] | None = None,
    witnessed: witness.Witness | None = None,
) -> SealOutcome:
    """Seal the organization's entries that are final and not yet sealed, one checkpoint
    (at most ``block`` entries, ``AUDIT_SEAL_BLOCK_ENTRIES`` by default) per short
    transaction. Safe to run anywhere at once: a second sealer of the same organization
    finds its advisory lock taken and stops. ``progress`` gets each checkpoint's count.

    Refuses (``ChainBehind``) to continue a chain that lacks, or differs at, a checkpoint
    that was verified or witnessed (``AUDIT_WITNESS_FILE``). With a witness file, each
    checkpoint's line is appended to it once the checkpoint is committed. ``witnessed``
    is that file as read already (a caller sealing many organizations reads it once);
    without it, the file is read here."""
    block = block or settings.AUDIT_SEAL_BLOCK_ENTRIES
    witness_file = settings.AUDIT_WITNESS_FILE or None
    if witnessed is None and witness_file and os.path.exists(witness_file):
        witnessed = witness.Witness.read(witness_file)
    behind = _chain_behind(organization, _expected_checkpoints(organization, witnessed))
    if behind is not None:
        raise ChainBehind(f"{organization.slug}: sealing refused: {behind}")
    checkpoints = entries = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_try_advisory_xact_lock(hashtextextended('audit_seal', %s))",
                [organization.pk],
            )
            if not cursor.fetchone()[0]:
                return SealOutcome(checkpoints, entries, busy=True)
            last = AuditSeal.objects.filter(organization=organization).order_by("-sequence").first()
            records = integrity.next_unsealed(
                organization.pk,
                after_id=last.last_entry_id if last else 0,
                after_txid=last.last_stream_txid if last else None,
                limit=block,
            )
            if not records:
                return SealOutcome(checkpoints, entries, busy=False)
            packed = b"".join(record.packed() for record in records)
            head = integrity.next_head(bytes(last.head) if last else integrity.ZERO_HEAD, packed)
            key_id, key = integrity.signing_key()
            seal = AuditSeal(
                organization=organization,
                sequence=(last.sequence if last else 0) + 1,
                entries=len(records),
                last_entry_id=records[-1].id,
                last_stream_txid=records[-1].stream_txid,
                records=packed,
                head=head,
                key_id=key_id,
                # Stored with microseconds, as signed.
                sealed_at=timezone.now(),
            )
            seal.signature = integrity.signature(
                key,
                organization_id=organization.pk,
                sequence=seal.sequence,
                entries=seal.entries,
                last_entry_id=seal.last_entry_id,
                last_stream_txid=seal.last_stream_txid,
                head=head,
                sealed_at=seal.sealed_at,
            )
            seal.save(force_insert=True)
        if witness_file:
            witness.witness_append(witness_file, [witness.witness_line(seal, organization.slug)])
        checkpoints, entries = checkpoints + 1, entries + len(records)
        if progress is not None:
            progress(len(records))


def audit_log_verify(
    *, organization: Organization, witnessed: witness.Witness | None = None
) -> AuditVerification:
    """Verify the organization's chain (audit/integrity.py) from one snapshot, and record
    the outcome, which ``auditLogIntegrity`` reports. The chain must still hold the last
    checkpoint an earlier verification checked, and every checkpoint ``witnessed`` holds
    (audit/witness.py)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        expected = _expected_checkpoints(organization, witnessed)
        report = integrity.verify(organization.pk, expected)
    return AuditVerification.objects.create(
        organization=organization,
        verified_at=timezone.now(),
        ok=report.ok,
        checkpoints=report.checkpoints,
        last_sequence=report.last_sequence,
        last_sealed_at=report.last_sealed_at,
        entries=report.entries,
        pruned=report.pruned,
        unsealed=report.unsealed,
        problem=report.problem,
        problem_entry_id=report.problem_entry_id,
        last_head=report.last_head,
    )


# --- retention (audit/retention.py) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PruneOutcome:
    entries: int  # removed by this call
    busy: bool  # another run was pruning the organization; this one left it alone


def audit_log_prune(
    *,
    organization: Organization,
    before: datetime,
    retention_days: int,
    batch: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> PruneOutcome:
    """Remove the organization's entries older than ``before``, oldest first, ``batch``
    (``AUDIT_PRUNE_BATCH``) per transaction, through ``audit_log_prune()`` in the database,
    which subtracts them from the rollups and returns their ids. Runs on the owner's
    connection (only the owner may call that function), under an advisory lock: a second
    run at the same time leaves the organization alone.

    In the same transaction as each batch, an ``AUDIT_LOG_PRUNED`` entry says how many
    entries went, from before when, under which period, with the SHA-256 of their ids; and
    a prune record (``audit_prune``) holds the ids, signed with the seal key and naming that
    entry: what verification needs to count the missing sealed entries as pruned."""
    batch = batch or settings.AUDIT_PRUNE_BATCH
    owner = connections[OWNER_ALIAS]
    lock: list[str | int] = ["audit_prune", organization.pk]
    removed = 0
    with owner.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, %s))", lock)
        if not cursor.fetchone()[0]:
            return PruneOutcome(0, busy=True)
        try:
            while True:
                with transaction.atomic(using=OWNER_ALIAS):
                    cursor.execute(
                        "SELECT audit_log_prune(%s, %s, %s)", [organization.pk, before, batch]
                    )
                    ids: list[int] = cursor.fetchone()[0]
                    if ids:
                        _prune_record(organization, before, retention_days, ids)
                count = len(ids)
                removed += count
                if count and progress is not None:
                    progress(count)
                if count < batch:
                    break
        finally:
            cursor.execute("SELECT pg_advisory_unlock(hashtextextended(%s, %s))", lock)
    return PruneOutcome(removed, busy=False)


def _prune_record(
    organization: Organization, before: datetime, retention_days: int, ids: list[int]
) -> None:
    """The entry and the signed record of one batch, on the owner's connection, inside
    the batch's transaction."""
    packed = integrity.pack_ids(ids)
    entry = AuditLog(
        organization=organization,
        event=AuditEventType.AUDIT_LOG_PRUNED,
        details={
            "entries": len(ids),
            "before": before.astimezone(UTC).isoformat(),
            "retentionDays": retention_days,
            "pruneRecordIdsSha256": hashlib.sha256(packed).hexdigest(),
        },
        time=timezone.now(),
    )
    entry.save(force_insert=True, using=OWNER_ALIAS)
    key_id, key = integrity.signing_key()
    pruned_at = timezone.now()
    AuditPrune(
        organization=organization,
        before=before,
        entries=len(ids),
        pruned_at=pruned_at,
        retention_days=retention_days,
        entry_ids=packed,
        log_entry_id=entry.pk,
        key_id=key_id,
        signature=integrity.prune_signature(
            key,
            organization_id=organization.pk,
            before=before,
            retention_days=retention_days,
            pruned_at=pruned_at,
            entry_ids=packed,
            log_entry_id=entry.pk,
        ),
    ).save(force_insert=True, using=OWNER_ALIAS)
