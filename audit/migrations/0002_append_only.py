"""Append-only audit_log, enforced by PostgreSQL itself.

A BEFORE UPDATE OR DELETE trigger rejects every change to an entry, with one exception:
clearing ``actor_id`` when the acting user's account is deleted (Django's SET_NULL), and
only when no other column changes. Removal of old entries by the retention job will get
its own explicit path; nothing else may delete.
"""

from django.db import migrations

FORWARD = """
CREATE FUNCTION audit_log_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND OLD.actor_id IS NOT NULL AND NEW.actor_id IS NULL
       AND (to_jsonb(NEW) - 'actor_id') = (to_jsonb(OLD) - 'actor_id') THEN
        -- The actor's account was deleted: drop the link, keep the entry as recorded.
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only: % of entry % is not allowed', TG_OP, OLD.id
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_reject_change();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log;
DROP FUNCTION IF EXISTS audit_log_reject_change();
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
