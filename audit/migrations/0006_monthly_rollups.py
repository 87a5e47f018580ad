"""Monthly rollups (audit.models.AuditCountMonth / ActorMonth), so that a total over a
year sums about 12 rows per event type instead of 365: the trigger of migration 0004 is
replaced by one that keeps all five rollups, the same way (grouped per statement, added to
a row no other transaction holds, or a new row). Existing entries are backfilled.
"""

import django.db.models.deletion
from django.db import migrations, models

DAY = "(time AT TIME ZONE 'UTC')::date"
MONTH = "date_trunc('month', time AT TIME ZONE 'UTC')::date"
HOUR = "date_trunc('hour', time, 'UTC')"

# (table, key columns, key expressions over the inserted rows, only rows with an actor)
ROLLUPS = [
    ("audit_count_month", ["month", "event"], [MONTH, "event"], False),
    ("audit_count_day", ["day", "event"], [DAY, "event"], False),
    ("audit_count_hour", ["hour", "event"], [HOUR, "event"], False),
    (
        "audit_count_actor_month",
        ["actor_email", "month", "event"],
        ["actor_email", MONTH, "event"],
        True,
    ),
    ("audit_count_actor_day", ["actor_email", "day", "event"], ["actor_email", DAY, "event"], True),
]


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
        UPDATE {table} c SET n = c.n + t.n FROM t WHERE c.id = t.target RETURNING c.id
    )
    INSERT INTO {table} ({", ".join(keys)}, n) SELECT {", ".join(keys)}, n FROM t WHERE target IS NULL;"""


def _backfill(table, columns, expressions, actors_only):
    keys = ["organization_id", *columns]
    where = " WHERE actor_email IS NOT NULL" if actors_only else ""
    group = ", ".join(str(i + 1) for i in range(len(keys)))
    return f"""
INSERT INTO {table} ({", ".join(keys)}, n)
SELECT organization_id, {", ".join(expressions)}, count(*) FROM audit_log{where} GROUP BY {group};"""


def _function(rollups):
    body = "".join(_merge(*r) for r in rollups)
    return f"""
CREATE OR REPLACE FUNCTION audit_log_count_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN{body}
    RETURN NULL;
END;
$$;
"""


FORWARD = (
    _function(ROLLUPS)
    + "ALTER TABLE audit_count_month SET (fillfactor = 70);\n"
    + "ALTER TABLE audit_count_actor_month SET (fillfactor = 70);\n"
    + "".join(_backfill(*r) for r in ROLLUPS if "month" in r[1])
)
# Back to the three rollups of migration 0004.
BACKWARD = _function([r for r in ROLLUPS if "month" not in r[1]])


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0005_actor_email_without_waits"),
        ("core", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditCountActorMonth",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("actor_email", models.CharField(max_length=254)),
                ("month", models.DateField()),
                ("event", models.CharField(max_length=32)),
                ("n", models.BigIntegerField()),
                (
                    "organization",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="core.organization",
                    ),
                ),
            ],
            options={
                "db_table": "audit_count_actor_month",
                "indexes": [
                    models.Index(
                        fields=["organization", "actor_email", "month", "event"],
                        name="audit_count_actor_month_key",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="AuditCountMonth",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("month", models.DateField()),
                ("event", models.CharField(max_length=32)),
                ("n", models.BigIntegerField()),
                (
                    "organization",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="core.organization",
                    ),
                ),
            ],
            options={
                "db_table": "audit_count_month",
                "indexes": [
                    models.Index(
                        fields=["organization", "month", "event"], name="audit_count_month_key"
                    )
                ],
            },
        ),
        migrations.RunSQL(FORWARD, BACKWARD),
    ]
