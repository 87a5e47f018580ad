"""The rollups and the actor-email directory are written by the database's own triggers,
running as the tables' owner (SECURITY DEFINER), so the application's role needs no write
privilege on them: it may only read them (core/roles.py). Each function gets a fixed
search_path (this schema, then pg_temp last), so no object the caller creates can stand
in for one of the tables, and no one may call them except as triggers.
"""

from django.db import migrations

FUNCTIONS = ("audit_log_count_inserted()", "audit_actor_email_collect()")

FORWARD = "\n".join(
    f"""
DO $$ BEGIN
    EXECUTE format(
        'ALTER FUNCTION {function} SECURITY DEFINER SET search_path = %I, pg_temp',
        current_schema()
    );
END $$;
REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC;
"""
    for function in FUNCTIONS
)

BACKWARD = "\n".join(
    f"""
ALTER FUNCTION {function} SECURITY INVOKER RESET search_path;
GRANT EXECUTE ON FUNCTION {function} TO PUBLIC;
"""
    for function in FUNCTIONS
)


class Migration(migrations.Migration):
    dependencies = [("audit", "0007_idempotency_and_stream")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
