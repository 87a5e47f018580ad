"""The recording triggers find their rollup rows (and known addresses) by index, always.

PL/pgSQL keeps, per session, the plan each statement of a trigger function got the first
time it ran. A session that first recorded while the rollups were empty (a new
installation, right after an import's first statement, a test database) got plans that
scan the rollup tables in full, the cheapest plan for an empty table, and kept them after
an import had filled the tables: every later entry then read every rollup row, until an
ANALYZE replaced the plans (docs/PERFORMANCE.md, "Profiling notes"). Every lookup these
functions make has an index that serves it, so the functions plan with sequential scans
off: they never choose one, whatever the statistics said when they were planned.

A later ``CREATE OR REPLACE FUNCTION`` of either function resets every property it does
not state (this setting, and the SECURITY DEFINER and search_path of migration 0008), so
it must state them again; the test in tests/audit/test_recording.py that records after a
bulk load fails if it does not.
"""

from django.db import migrations

FUNCTIONS = ("audit_log_count_inserted()", "audit_actor_email_collect()")

FORWARD = "\n".join(f"ALTER FUNCTION {f} SET enable_seqscan = off;" for f in FUNCTIONS)
BACKWARD = "\n".join(f"ALTER FUNCTION {f} RESET enable_seqscan;" for f in FUNCTIONS)


class Migration(migrations.Migration):
    dependencies = [("audit", "0012_covering_email_indexes")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
