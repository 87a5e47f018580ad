"""Rollups of entry counts (audit.models.AuditCountDay / Hour / ActorDay), kept by the
database.

One AFTER INSERT statement-level trigger with a transition table: for each rollup, the
batch's counts are grouped by key, added to an existing row of that key that no other
transaction holds (FOR UPDATE SKIP LOCKED), or inserted as a new row when every row of the
key is busy or none exists. One statement per rollup per INSERT or COPY, whatever its size;
writers never wait for each other. Days and hours are UTC. Existing entries are
backfilled.
"""

import django.db.models.deletion
from django.db import migrations, models

FORWARD = """
CREATE FUNCTION audit_log_count_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH g AS (
        SELECT organization_id, (time AT TIME ZONE 'UTC')::date AS day, event, count(*) AS n FROM inserted GROUP BY 1, 2, 3
    ), t AS MATERIALIZED (
        SELECT g.*, (SELECT c.id FROM audit_count_day c WHERE c.organization_id = g.organization_id AND c.day = g.day AND c.event = g.event LIMIT 1 FOR UPDATE SKIP LOCKED) AS target
        FROM g
    ), added AS (
        UPDATE audit_count_day c SET n = c.n + t.n FROM t WHERE c.id = t.target RETURNING c.id
    )
    INSERT INTO audit_count_day (organization_id, day, event, n) SELECT organization_id, day, event, n FROM t WHERE target IS NULL;

    WITH g AS (
        SELECT organization_id, date_trunc('hour', time, 'UTC') AS hour, event, count(*) AS n FROM inserted GROUP BY 1, 2, 3
    ), t AS MATERIALIZED (
        SELECT g.*, (SELECT c.id FROM audit_count_hour c WHERE c.organization_id = g.organization_id AND c.hour = g.hour AND c.event = g.event LIMIT 1 FOR UPDATE SKIP LOCKED) AS target
        FROM g
    ), added AS (
        UPDATE audit_count_hour c SET n = c.n + t.n FROM t WHERE c.id = t.target RETURNING c.id
    )
    INSERT INTO audit_count_hour (organization_id, hour, event, n) SELECT organization_id, hour, event, n FROM t WHERE target IS NULL;

    WITH g AS (
        SELECT organization_id, actor_email, (time AT TIME ZONE 'UTC')::date AS day, event, count(*) AS n FROM inserted WHERE actor_email IS NOT NULL GROUP BY 1, 2, 3, 4
    ), t AS MATERIALIZED (
        SELECT g.*, (SELECT c.id FROM audit_count_actor_day c WHERE c.organization_id = g.organization_id AND c.actor_email = g.actor_email AND c.day = g.day AND c.event = g.event LIMIT 1 FOR UPDATE SKIP LOCKED) AS target
        FROM g
    ), added AS (
        UPDATE audit_count_actor_day c SET n = c.n + t.n FROM t WHERE c.id = t.target RETURNING c.id
    )
    INSERT INTO audit_count_actor_day (organization_id, actor_email, day, event, n) SELECT organization_id, actor_email, day, event, n FROM t WHERE target IS NULL;
    RETURN NULL;
END;
$$;

CREATE TRIGGER audit_log_count_inserted
    AFTER INSERT ON audit_log
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_count_inserted();

ALTER TABLE audit_count_day SET (fillfactor = 70);
ALTER TABLE audit_count_hour SET (fillfactor = 70);
ALTER TABLE audit_count_actor_day SET (fillfactor = 70);

INSERT INTO audit_count_day (organization_id, day, event, n)
SELECT organization_id, (time AT TIME ZONE 'UTC')::date, event, count(*) FROM audit_log GROUP BY 1, 2, 3;

INSERT INTO audit_count_hour (organization_id, hour, event, n)
SELECT organization_id, date_trunc('hour', time, 'UTC'), event, count(*) FROM audit_log GROUP BY 1, 2, 3;

INSERT INTO audit_count_actor_day (organization_id, actor_email, day, event, n)
SELECT organization_id, actor_email, (time AT TIME ZONE 'UTC')::date, event, count(*) FROM audit_log WHERE actor_email IS NOT NULL GROUP BY 1, 2, 3, 4;
"""

BACKWARD = """
DROP TRIGGER IF EXISTS audit_log_count_inserted ON audit_log;
DROP FUNCTION IF EXISTS audit_log_count_inserted();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0003_actor_email_directory"),
        ("core", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditCountActorDay",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("actor_email", models.CharField(max_length=254)),
                ("day", models.DateField()),
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
                "db_table": "audit_count_actor_day",
                "indexes": [
                    models.Index(
                        fields=["organization", "actor_email", "day", "event"],
                        name="audit_count_actor_day_key",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="AuditCountDay",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("day", models.DateField()),
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
                "db_table": "audit_count_day",
                "indexes": [
                    models.Index(
                        fields=["organization", "day", "event"], name="audit_count_day_key"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="AuditCountHour",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("hour", models.DateTimeField()),
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
                "db_table": "audit_count_hour",
                "indexes": [
                    models.Index(
                        fields=["organization", "hour", "event"], name="audit_count_hour_key"
                    )
                ],
            },
        ),
        migrations.RunSQL(FORWARD, BACKWARD),
    ]
