"""The actor-email directory (audit.models.AuditActorEmail), kept by the database.

An AFTER INSERT statement-level trigger with a transition table adds the distinct actor
emails of each inserted batch -- one statement per INSERT or COPY, not one per row -- in
the inserting transaction. Existing entries are backfilled.
"""

import django.db.models.deletion
from django.db import migrations, models

FORWARD = """
CREATE FUNCTION audit_actor_email_collect() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_actor_email (organization_id, email)
    SELECT DISTINCT organization_id, actor_email FROM inserted WHERE actor_email IS NOT NULL
    ON CONFLICT (organization_id, email) DO NOTHING;
    RETURN NULL;
END;
$$;

CREATE TRIGGER audit_log_collect_actor_emails
    AFTER INSERT ON audit_log
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION audit_actor_email_collect();

INSERT INTO audit_actor_email (organization_id, email)
SELECT DISTINCT organization_id, actor_email FROM audit_log WHERE actor_email IS NOT NULL
ON CONFLICT (organization_id, email) DO NOTHING;
"""

BACKWARD = """
DROP TRIGGER IF EXISTS audit_log_collect_actor_emails ON audit_log;
DROP FUNCTION IF EXISTS audit_actor_email_collect();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0002_append_only"),
        ("core", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditActorEmail",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("email", models.CharField(max_length=254)),
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
                "db_table": "audit_actor_email",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("organization", "email"), name="audit_actor_email_unique"
                    )
                ],
            },
        ),
        migrations.RunSQL(FORWARD, BACKWARD),
    ]
