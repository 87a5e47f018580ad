"""Batch ingestion and the live stream.

* ``idempotency_key``: the key an integration sends with each event (recordAuditEvents),
  unique per organization, so that a retried batch creates nothing new.
* ``stream_txid``: the id of the transaction that inserted the entry (``xid8``, which
  never wraps around). The live stream delivers entries in ``(stream_txid, id)`` order, and
  only those of transactions older than every transaction still running, so an entry is
  never delivered before one that precedes it (audit/stream.py explains why).
* A statement-level trigger sends ``NOTIFY audit_log_created`` with the ids of the
  organizations that got entries; PostgreSQL delivers it at commit, and never for a
  transaction that rolled back.

Both columns are added without a default for existing rows, so no table rewrite: entries
recorded before this migration have neither (they precede the stream). The indexes are
built CONCURRENTLY, so writers are not blocked on a large table; that is why the migration
is not atomic.
"""

from django.db import migrations, models

import audit.models

COLUMNS = """
ALTER TABLE audit_log ADD COLUMN IF NOT EXISTS idempotency_key varchar(200) NULL;
ALTER TABLE audit_log ADD COLUMN IF NOT EXISTS stream_txid xid8 NULL;
ALTER TABLE audit_log ALTER COLUMN stream_txid SET DEFAULT pg_current_xact_id();
"""
COLUMNS_BACKWARD = """
ALTER TABLE audit_log DROP COLUMN IF EXISTS stream_txid;
ALTER TABLE audit_log DROP COLUMN IF EXISTS idempotency_key;
"""

STREAM_INDEX = """
CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_log_org_stream
    ON audit_log (organization_id, stream_txid, id) WHERE stream_txid IS NOT NULL;
"""
KEY_INDEX = """
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS audit_log_org_idempotency_key
    ON audit_log (organization_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
"""

NOTIFY = """
CREATE OR REPLACE FUNCTION audit_log_notify_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    organizations text;
BEGIN
    SELECT string_agg(DISTINCT organization_id::text, ',') INTO organizations FROM inserted;
    IF organizations IS NOT NULL THEN
        -- A payload holds at most 8000 bytes; an empty one means "any organization".
        PERFORM pg_notify(
            'audit_log_created',
            CASE WHEN length(organizations) > 7000 THEN '' ELSE organizations END
        );
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER audit_log_notify
    AFTER INSERT ON audit_log REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_notify_inserted();
"""
NOTIFY_BACKWARD = """
DROP TRIGGER IF EXISTS audit_log_notify ON audit_log;
DROP FUNCTION IF EXISTS audit_log_notify_inserted();
"""


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("audit", "0006_monthly_rollups")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(COLUMNS, COLUMNS_BACKWARD)],
            state_operations=[
                migrations.AddField(
                    model_name="auditlog",
                    name="idempotency_key",
                    field=models.CharField(
                        blank=True,
                        editable=False,
                        help_text="The key an integration sent it with (recordAuditEvents); unique per organization.",
                        max_length=200,
                        null=True,
                    ),
                ),
                migrations.AddField(
                    model_name="auditlog",
                    name="stream_txid",
                    field=audit.models.TransactionIdField(
                        db_default=models.Func(
                            function="pg_current_xact_id",
                            output_field=audit.models.TransactionIdField(),
                        ),
                        editable=False,
                        help_text="The inserting transaction's id: the entry's place in the live stream.",
                        null=True,
                    ),
                ),
            ],
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(STREAM_INDEX, "DROP INDEX IF EXISTS audit_log_org_stream;"),
                migrations.RunSQL(KEY_INDEX, "DROP INDEX IF EXISTS audit_log_org_idempotency_key;"),
            ],
            state_operations=[
                migrations.AddIndex(
                    model_name="auditlog",
                    index=models.Index(
                        condition=models.Q(("stream_txid__isnull", False)),
                        fields=["organization", "stream_txid", "id"],
                        name="audit_log_org_stream",
                    ),
                ),
                migrations.AddConstraint(
                    model_name="auditlog",
                    constraint=models.UniqueConstraint(
                        condition=models.Q(("idempotency_key__isnull", False)),
                        fields=("organization", "idempotency_key"),
                        name="audit_log_org_idempotency_key",
                    ),
                ),
            ],
        ),
        migrations.RunSQL(NOTIFY, NOTIFY_BACKWARD),
    ]
