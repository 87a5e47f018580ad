"""The actor-email directory never makes a writer wait: the unique constraint goes (two
transactions recording an address's first entries at once would wait on it), and the
trigger adds an address only when no committed row has it yet."""

from django.db import migrations, models

FORWARD = """
CREATE OR REPLACE FUNCTION audit_actor_email_collect() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_actor_email (organization_id, email)
    SELECT DISTINCT i.organization_id, i.actor_email FROM inserted i
    WHERE i.actor_email IS NOT NULL
      AND NOT EXISTS (
          SELECT 1 FROM audit_actor_email d
          WHERE d.organization_id = i.organization_id AND d.email = i.actor_email
      );
    RETURN NULL;
END;
$$;
"""

BACKWARD = """
CREATE OR REPLACE FUNCTION audit_actor_email_collect() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_actor_email (organization_id, email)
    SELECT DISTINCT organization_id, actor_email FROM inserted WHERE actor_email IS NOT NULL
    ON CONFLICT (organization_id, email) DO NOTHING;
    RETURN NULL;
END;
$$;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0004_rollups"),
        ("core", "0001_initial"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="auditactoremail",
            name="audit_actor_email_unique",
        ),
        migrations.AddIndex(
            model_name="auditactoremail",
            index=models.Index(fields=["organization", "email"], name="audit_actor_email_org"),
        ),
        migrations.RunSQL(FORWARD, BACKWARD),
    ]
