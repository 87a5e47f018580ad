"""The recording triggers read only the rollup rows and addresses of what they record,
whatever the statistics said when their plans were made.

PL/pgSQL keeps, per session, the plan each statement of a trigger function got the first
time it ran. A session that first recorded while the rollups were empty (a new
installation, a scratch or test database, right after a restore) got the cheapest plans
for empty tables, and kept them after an import had filled the tables: a sequential scan
of each rollup, or a walk along its primary key to join it to the rows being counted.
Every later entry of that session then read every row of every rollup (a record took
25-26 ms instead of about 2 on the write benchmark's 100,000 entries), until an ANALYZE
replaced the plans (docs/PERFORMANCE.md, "Recording after an import").

So each statement is written so that, with sequential scans and nested-loop joins off
for these two functions, no plan can read more than its own keys:

* a rollup row is found by a lookup on its key (a subquery of one table, so an index
  scan on the key index), and the rows found are updated through their ids
  (``id = ANY(...)``, an index condition on the primary key that every plan of the table
  carries), joined to their counts by hash or merge, never row by row;
* an address is looked for by a lookup on (organization, email), kept a subquery
  (``OFFSET 0``) so that it is not turned into a join that reads the whole directory.

``CREATE OR REPLACE FUNCTION`` resets every property the command does not state, so the
SECURITY DEFINER and search_path of migration 0008 are set again here, and a later
replacement must set all of them again; tests/audit/test_recording.py fails if the
planner settings are lost.
"""

import importlib

from django.db import migrations

MONTHLY = importlib.import_module("audit.migrations.0006_monthly_rollups")
OWNER = importlib.import_module("audit.migrations.0008_triggers_run_as_owner")

PLANNER = "SET enable_seqscan = off SET enable_nestloop = off"


def _merge(table, columns, expressions, actors_only):
    keys = ["organization_id", *columns]
    select = ", ".join(
        ["organization_id", *(f"{e} AS {c}" for c, e in zip(columns, expressions, strict=True))]
    )
    where = "WHERE actor_email IS NOT NULL " if actors_only else ""
    match = " AND ".join(f"c.{k} = g.{k}" for k in keys)
    group = ", ".join(str(i + 1) for i in range(len(keys)))
    return f"""
    WITH g AS (
        SELECT {select}, count(*) AS n FROM inserted {where}GROUP BY {group}
    ), t AS MATERIALIZED (
        SELECT g.*, (SELECT c.id FROM {table} c WHERE {match} LIMIT 1 FOR UPDATE SKIP LOCKED) AS target
        FROM g
    ), added AS (
        UPDATE {table} c SET n = c.n + t.n FROM t
        WHERE c.id = ANY(ARRAY(SELECT target FROM t WHERE target IS NOT NULL)) AND c.id = t.target
        RETURNING c.id
    )
    INSERT INTO {table} ({", ".join(keys)}, n) SELECT {", ".join(keys)}, n FROM t WHERE target IS NULL;"""


def _count_function(merge, settings):
    body = "".join(merge(*r) for r in MONTHLY.ROLLUPS)
    return f"""
CREATE OR REPLACE FUNCTION audit_log_count_inserted() RETURNS trigger
LANGUAGE plpgsql {settings} AS $$
BEGIN{body}
    RETURN NULL;
END;
$$;
"""


def _collect_function(offset, settings):
    return f"""
CREATE OR REPLACE FUNCTION audit_actor_email_collect() RETURNS trigger
LANGUAGE plpgsql {settings} AS $$
BEGIN
    INSERT INTO audit_actor_email (organization_id, email)
    SELECT DISTINCT i.organization_id, i.actor_email FROM inserted i
    WHERE i.actor_email IS NOT NULL
      AND NOT EXISTS (
          SELECT 1 FROM audit_actor_email d
          WHERE d.organization_id = i.organization_id AND d.email = i.actor_email{offset}
      );
    RETURN NULL;
END;
$$;
"""


FORWARD = (
    _count_function(_merge, PLANNER)
    + _collect_function(" OFFSET 0", "SET enable_seqscan = off")
    + OWNER.FORWARD
)
# Back to the functions of migrations 0005 and 0006, as migration 0008 left them.
BACKWARD = _count_function(MONTHLY._merge, "") + _collect_function("", "") + OWNER.FORWARD


class Migration(migrations.Migration):
    dependencies = [("audit", "0012_covering_email_indexes")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
