"""The audit log entry.

Entries are append-only, enforced by the database (migration 0002): a trigger rejects
UPDATE and DELETE, with a single exception: when the acting user is deleted, the link
``actor_id`` is cleared (``SET_NULL``) while every other column stays as it was -- the
email and name snapshots keep the entry readable.

Indexes serve the filters of the auditLogs API together with its order, newest first
(``time`` DESC, ``id`` DESC), always within one organization:

* ``audit_log_org_time``       -- no filter, a from/to window, keyset pages at any depth
* ``audit_log_org_event_time`` -- one event type (or several, one index range each)
* ``audit_log_org_email_covering`` -- exact actor emails (a user-email search resolves
  the matching addresses first, then reads each one's range), carrying the event type so
  that a search with an event type reads no entry it does not show
* ``audit_log_actor``          -- clearing the actor link when a user is deleted
* ``audit_log_org_stream``     -- the live stream: an organization's entries in stream
  order ``(stream_txid, id)`` (graphql_api/stream.py)
* ``audit_log_org_idempotency_key`` (unique) -- an integration's key, once per organization
* ``audit_log_org_ip_time``     -- an ip filter: an address or CIDR range is one range
* ``audit_log_details_words``  -- a search: GIN on the details' words (an expression index
  of migration 0015, not declared here)
* ``audit_log_details_contains`` -- a details filter: GIN (jsonb_path_ops) containment (an
  expression index of migration 0015 too)

``AuditActorEmail`` is the directory of every actor email an organization's entries
carry, kept by the database itself (migration 0003): a user-email search first finds the
few matching addresses there, then reads their ranges of ``audit_log_org_email_covering``,
instead of testing the email of every entry.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from django.db import models
from django.db.models import F, Func, Q, Value
from django.db.models.lookups import Exact
from django.utils import timezone

from audit.events import EVENT_MAX_LENGTH, AuditEventType

IDEMPOTENCY_KEY_MAX_LENGTH = 200
# The times an entry may carry (recordAuditEvents and imports check them). PostgreSQL and
# Python both end at years 1 and 9999, and arithmetic near those ends (UTC offsets, hour
# and day buckets) overflows; an audit event from before 1900 is a mistake anyway.
ENTRY_TIME_MIN = datetime(1900, 1, 1, tzinfo=UTC)
ENTRY_TIME_MAX = datetime(9000, 1, 1, tzinfo=UTC)


class TransactionIdField(models.Field):  # type: ignore[type-arg]
    """A PostgreSQL ``xid8``: a 64-bit transaction id that never wraps around, read as int."""

    description = "PostgreSQL transaction id (xid8)"

    def db_type(self, connection: Any) -> str:
        return "xid8"

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> int | None:
        return None if value is None else int(value)

    def get_prep_value(self, value: Any) -> Any:
        return None if value is None else str(int(value))


class AuditLog(models.Model):
    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(
        "core.Organization", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    event = models.CharField(max_length=EVENT_MAX_LENGTH, choices=AuditEventType.choices)
    actor = models.ForeignKey(
        "core.User",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
        help_text="The acting user; cleared if the account is deleted (the snapshot stays).",
    )
    # NULL (not "") means "no user": system events have no actor.
    actor_email = models.CharField(  # noqa: DJ001
        max_length=254, null=True, blank=True, help_text="The actor's email when it acted."
    )
    actor_name = models.CharField(  # noqa: DJ001
        max_length=150, null=True, blank=True, help_text="The actor's name when it acted."
    )
    ip = models.GenericIPAddressField(null=True, blank=True, help_text="The client's address.")
    details = models.JSONField(default=dict, help_text="A JSON object with the event's context.")
    time = models.DateTimeField(default=timezone.now, help_text="When it happened (UTC).")
    # NULL (not "") for entries recorded by the platform itself or imported.
    idempotency_key = models.CharField(  # noqa: DJ001
        max_length=IDEMPOTENCY_KEY_MAX_LENGTH,
        null=True,
        blank=True,
        editable=False,
        help_text="The key an integration sent it with (recordAuditEvents); unique per organization.",
    )
    stream_txid = TransactionIdField(
        null=True,
        editable=False,
        db_default=Func(function="pg_current_xact_id", output_field=TransactionIdField()),
        help_text="The inserting transaction's id: the entry's place in the live stream.",
    )

    class Meta:
        db_table = "audit_log"
        ordering = ("-time", "-id")
        indexes: ClassVar = [
            models.Index(fields=["organization", "-time", "-id"], name="audit_log_org_time"),
            models.Index(
                fields=["organization", "event", "-time", "-id"], name="audit_log_org_event_time"
            ),
            # The event rides along, so that an email search with an event type finds
            # its page's ids in the index alone.
            models.Index(
                fields=["organization", "actor_email", "-time", "-id"],
                include=["event"],
                name="audit_log_org_email_covering",
            ),
            models.Index(
                fields=["actor"], condition=Q(actor__isnull=False), name="audit_log_actor"
            ),
            # The ip filter (migration 0015, which also builds the GIN indexes of the
            # search and details filters: expression indexes, not declared here).
            models.Index(
                fields=["organization", "ip", "-time", "-id"], name="audit_log_org_ip_time"
            ),
            models.Index(
                fields=["organization", "stream_txid", "id"],
                condition=Q(stream_txid__isnull=False),
                name="audit_log_org_stream",
            ),
        ]
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["organization", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="audit_log_org_idempotency_key",
            ),
            models.CheckConstraint(
                condition=Q(event__in=AuditEventType.values), name="audit_log_event_known"
            ),
            models.CheckConstraint(
                condition=Exact(
                    Func(F("details"), function="jsonb_typeof", output_field=models.TextField()),
                    Value("object"),
                ),
                name="audit_log_details_object",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} by {self.actor_email or 'system'} at {self.time.isoformat()}"


class AuditActorEmail(models.Model):
    """One actor email (as recorded) that appears in an organization's audit entries.

    Derived data: a statement-level trigger on ``audit_log`` adds the emails of every
    inserted batch (single inserts and COPY alike), in the inserting transaction, so it is
    complete whoever writes, and never waits for another writer. An address whose entries were all removed by retention stays
    listed and simply matches nothing.
    """

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(
        "core.Organization", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    email = models.CharField(max_length=254)

    class Meta:
        db_table = "audit_actor_email"
        # Not unique on purpose: a unique index would make two transactions that record
        # an address's first entries at the same time wait for each other. The trigger
        # adds an address only when no committed row has it, so a duplicate needs that
        # exact race, and duplicates are harmless to the searches (IN semantics).
        indexes: ClassVar = [
            models.Index(fields=["organization", "email"], name="audit_actor_email_org")
        ]

    def __str__(self) -> str:
        return self.email


# --- rollups: exact totals without counting entries -----------------------------------------
#
# How many entries an organization has per UTC month, day and hour and event type, and per
# actor email, UTC month and day and event type. Kept by the database (migrations 0004, 0006):
# an AFTER INSERT statement-level trigger adds each inserted batch's counts in the
# inserting transaction, so a total read in the same snapshot as a page always agrees with
# it. A key may have several rows: a writer adds to a row no other transaction holds (FOR
# UPDATE SKIP LOCKED) or starts a new one, so concurrent writers to one organization and
# day never wait for each other. Totals are sums over rows (audit/totals.py).


class AuditCount(models.Model):
    """What every rollup row holds: an organization, an event type and a count; each
    rollup adds its time bucket (and, per actor, the actor email) as the rest of its key."""

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(
        "core.Organization", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    event = models.CharField(max_length=EVENT_MAX_LENGTH)
    n = models.BigIntegerField()

    class Meta:
        abstract = True


class AuditCountDay(AuditCount):
    day = models.DateField()

    class Meta:
        db_table = "audit_count_day"
        indexes: ClassVar = [
            models.Index(fields=["organization", "day", "event"], name="audit_count_day_key")
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.event}: {self.n}"


class AuditCountHour(AuditCount):
    hour = models.DateTimeField()

    class Meta:
        db_table = "audit_count_hour"
        indexes: ClassVar = [
            models.Index(fields=["organization", "hour", "event"], name="audit_count_hour_key")
        ]

    def __str__(self) -> str:
        return f"{self.hour.isoformat()} {self.event}: {self.n}"


class AuditCountActorDay(AuditCount):
    """Entries per actor email, UTC day and event type. Its index carries the count (as
    the monthly one does), so that an email search's total is read from the index alone."""

    actor_email = models.CharField(max_length=254)
    day = models.DateField()

    class Meta:
        db_table = "audit_count_actor_day"
        indexes: ClassVar = [
            models.Index(
                fields=["organization", "actor_email", "day", "event"],
                include=["n"],
                name="audit_count_actor_day_cover",
            )
        ]

    def __str__(self) -> str:
        return f"{self.actor_email} {self.day} {self.event}: {self.n}"


class AuditCountMonth(AuditCount):
    """Entries per UTC calendar month (``month`` is its first day) and event type."""

    month = models.DateField()

    class Meta:
        db_table = "audit_count_month"
        indexes: ClassVar = [
            models.Index(fields=["organization", "month", "event"], name="audit_count_month_key")
        ]

    def __str__(self) -> str:
        return f"{self.month:%Y-%m} {self.event}: {self.n}"


class AuditCountActorMonth(AuditCount):
    """Entries per actor email, UTC calendar month and event type."""

    actor_email = models.CharField(max_length=254)
    month = models.DateField()

    class Meta:
        db_table = "audit_count_actor_month"
        indexes: ClassVar = [
            models.Index(
                fields=["organization", "actor_email", "month", "event"],
                include=["n"],
                name="audit_count_actor_month_cover",
            )
        ]

    def __str__(self) -> str:
        return f"{self.actor_email} {self.month:%Y-%m} {self.event}: {self.n}"


# --- tamper evidence: sealed checkpoints (audit/integrity.py) -------------------------------


class AuditSeal(models.Model):
    """One signed checkpoint of an organization's chain: the next entries in stream order
    (at most ``AUDIT_SEAL_BLOCK_ENTRIES``), each as its id, time and digest, chained to the
    previous checkpoint's head and signed with a key that is not in the database.

    Append-only like the entries (a trigger refuses UPDATE and DELETE).
    """

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(
        "core.Organization", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    sequence = models.IntegerField(help_text="1, 2, ... per organization.")
    entries = models.IntegerField(help_text="How many entries this checkpoint seals.")
    last_entry_id = models.BigIntegerField(help_text="The last sealed entry (stream order).")
    last_stream_txid = TransactionIdField(
        null=True, help_text="Its stream_txid; NULL for entries that predate the stream."
    )
    records = models.BinaryField(help_text="Per entry: id, time (µs), SHA-256 digest.")
    head = models.BinaryField(help_text="SHA-256 of the previous head and these records.")
    signature = models.BinaryField(help_text="HMAC-SHA256 of the checkpoint, by key_id.")
    key_id = models.CharField(max_length=16, help_text="Which key signed it (a fingerprint).")
    sealed_at = models.DateTimeField()

    class Meta:
        db_table = "audit_seal"
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["organization", "sequence"], name="audit_seal_org_seq")
        ]

    def __str__(self) -> str:
        return f"checkpoint {self.sequence} of organization {self.organization_id}"


class AuditVerification(models.Model):
    """The outcome of one verification of an organization's chain (verify_audit_log)."""

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(
        "core.Organization", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    verified_at = models.DateTimeField()
    ok = models.BooleanField()
    checkpoints = models.IntegerField(help_text="Checkpoints checked.")
    last_sequence = models.IntegerField(null=True, help_text="The last checkpoint checked.")
    last_sealed_at = models.DateTimeField(null=True)
    entries = models.BigIntegerField(help_text="Sealed entries checked.")
    pruned = models.BigIntegerField(default=0, help_text="Sealed entries removed by retention.")
    unsealed = models.BigIntegerField(help_text="Entries after the last checkpoint.")
    problem = models.TextField(blank=True, help_text="The first problem found.")
    problem_entry_id = models.BigIntegerField(null=True)
    last_head = models.BinaryField(
        null=True, help_text="The head of the last checkpoint checked (rollback detection)."
    )

    class Meta:
        db_table = "audit_verification"
        indexes: ClassVar = [
            models.Index(fields=["organization", "-verified_at"], name="audit_verification_org")
        ]

    def __str__(self) -> str:
        return f"verification of organization {self.organization_id} at {self.verified_at}"


class AuditPrune(models.Model):
    """One batch of entries removed by the retention policy (prune_audit_logs): exactly
    which (their ids, packed as little-endian int64 in ascending order), of which
    organization, all older than ``before``, under which period, when; signed with the
    seal key (audit/integrity.py, ``prune_signature``) and named by the ``AUDIT_LOG_PRUNED``
    entry written in the same transaction. Verification counts a missing sealed entry as
    pruned only when a record like this, signed and consistent, holds its id. Records
    from before signed prune records (no signature) excuse nothing. Append-only."""

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(
        "core.Organization", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    before = models.DateTimeField(help_text="Every removed entry was older than this.")
    entries = models.BigIntegerField()
    pruned_at = models.DateTimeField()
    retention_days = models.IntegerField(null=True, help_text="The period that was applied.")
    entry_ids = models.BinaryField(null=True, help_text="The removed entries' ids.")
    key_id = models.CharField(max_length=16, blank=True, default="", db_default="")
    signature = models.BinaryField(null=True, help_text="HMAC-SHA256 of the record, by key_id.")
    log_entry_id = models.BigIntegerField(
        null=True, help_text="The AUDIT_LOG_PRUNED entry that records this removal."
    )

    class Meta:
        db_table = "audit_prune"
        indexes: ClassVar = [
            models.Index(fields=["organization", "-before"], name="audit_prune_org_before")
        ]

    def __str__(self) -> str:
        return f"{self.entries} entries of organization {self.organization_id} before {self.before}"


# What the application's database role may insert into (and otherwise only read, like every
# table of this app): core/roles.py.
APPENDED_BY_THE_APPLICATION: tuple[type[models.Model], ...] = (
    AuditLog,
    AuditSeal,
    AuditVerification,
)
