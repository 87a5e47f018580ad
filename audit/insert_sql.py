"""One audit entry inserted by a statement written directly, for ``audit_log_record``.

Recording an entry (audit/services.py) is one INSERT in the transaction of the action it
describes, and ``Model.save`` builds that INSERT anew every time: compiling the statement
and preparing each of its ten values was most of the CPU a recorded entry cost the caller
(a cProfile of ``audit_log_record``; ``python -m bench.profile`` measured 0.57 and 0.55
ms per entry with ``save``, 0.36 and 0.46 ms with this, docs/PERFORMANCE.md). The
statement never changes, so ``audit_log_insert`` sends it as fixed text with the same
values, adapted by Django's own adapters for the columns that need one (the address, the
details), and fills in what PostgreSQL returns (the id, and the transaction id that
places the entry in the live stream), as ``save(force_insert=True)`` does. No signal is
sent: nothing in the project listens to an entry's save, and entries are append-only.

Only audit/services.py calls it (the one writer of audit entries).
tests/audit/test_insert_sql.py is its licence: for random entries, the rows it writes
and the instances it returns equal those of ``save(force_insert=True)``.
"""

from __future__ import annotations

from django.db import connections, router

from audit.models import AuditLog

_INSERT = (
    'INSERT INTO "audit_log" ("organization_id", "event", "actor_id", "actor_email", '
    '"actor_name", "ip", "details", "time") VALUES (%s, %s, %s, %s, %s, %s, %s, %s) '
    'RETURNING "id", "stream_txid"'
)
_STREAM_TXID = AuditLog._meta.get_field("stream_txid")


def audit_log_insert(entry: AuditLog) -> None:
    """Insert ``entry`` (new, unsaved) as ``entry.save(force_insert=True)`` would: its id
    and stream transaction id are set from the row written."""
    alias = router.db_for_write(AuditLog, instance=entry)
    connection = connections[alias]
    ops = connection.ops
    with connection.cursor() as cursor:
        cursor.execute(
            _INSERT,
            [
                entry.organization_id,
                entry.event,
                entry.actor_id,
                entry.actor_email,
                entry.actor_name,
                ops.adapt_ipaddressfield_value(entry.ip),
                ops.adapt_json_value(entry.details, None),
                ops.adapt_datetimefield_value(entry.time),
            ],
        )
        row = cursor.fetchone()
    assert row is not None
    entry.id = row[0]
    entry.stream_txid = _STREAM_TXID.from_db_value(row[1], None, connection)
    entry._state.adding = False
    entry._state.db = alias
