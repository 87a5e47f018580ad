"""The two database roles (README, "Database roles").

* The **owner** owns every table, function and trigger. Migrations, backups and restores
  connect as it, through the ``owner`` connection (``DATABASE_OWNER_URL``).
* The **application role** is what the server connects as (``DATABASE_URL``). It owns
  nothing, so it cannot alter a table, drop or disable a trigger, or truncate. On audit
  data it may only read and append: SELECT and INSERT on ``audit_log`` (plus UPDATE of
  ``actor_id`` alone, which the append-only trigger allows only when a user's account is
  deleted); SELECT and INSERT on the other append-only tables (checkpoints and
  verifications, audit/integrity.py); and SELECT on every other table of the ``audit``
  app, which the database's own triggers maintain (SECURITY DEFINER, as the owner).
  Everything else it may read and write.

After every ``migrate`` (and ``restore_db``), the owner grants exactly that to the
application role, table by table; new tables are covered by the rule, not by hand. With a
single role (no ``DATABASE_OWNER_URL``) nothing is granted, and ``check --deploy`` warns.

This module is imported by the settings: it must not import models at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

OWNER_ALIAS = "owner"
APP_ALIAS = "default"

# Besides the audit app's tables, what the application role may only read.
_READ_ONLY_TABLES = ("django_migrations",)
# Column-level: clearing the actor of entries when the account is deleted (SET_NULL).
_AUDIT_LOG_UPDATABLE_COLUMNS = ("actor_id",)


def app_role_name() -> str | None:
    """The application's role when it differs from the owner's; None with a single role."""
    from django.db import connections

    app = connections[APP_ALIAS].settings_dict
    owner = connections[OWNER_ALIAS].settings_dict
    if not app["USER"] or app["USER"] == owner["USER"]:
        return None
    return str(app["USER"])


def _audit_tables() -> tuple[str, list[str], list[str]]:
    """audit_log, the audit tables the application appends to, and all audit tables."""
    from django.apps import apps

    from audit.models import APPENDED_BY_THE_APPLICATION, AuditLog

    tables = sorted(model._meta.db_table for model in apps.get_app_config("audit").get_models())
    appended = sorted(model._meta.db_table for model in APPENDED_BY_THE_APPLICATION)
    return AuditLog._meta.db_table, appended, tables


def app_role_grants(role: str, schema: str) -> list[str]:
    """The statements that give ``role`` exactly its privileges on ``schema``'s tables."""
    from psycopg import sql

    audit_log, appended, audit_tables = _audit_tables()
    r, s = sql.Identifier(role), sql.Identifier(schema)
    read_only = sql.SQL(", ").join(
        sql.Identifier(schema, table) for table in [*audit_tables, *_READ_ONLY_TABLES]
    )
    log = sql.Identifier(schema, audit_log)
    insertable = sql.SQL(", ").join(sql.Identifier(schema, table) for table in appended)
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in _AUDIT_LOG_UPDATABLE_COLUMNS)
    statements = [
        sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(s, r),
        sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {} FROM {}").format(s, r),
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, r),
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {} TO {}").format(
            s, r
        ),
        sql.SQL("REVOKE INSERT, UPDATE, DELETE ON {} FROM {}").format(read_only, r),
        sql.SQL("GRANT INSERT ON {} TO {}").format(insertable, r),
        sql.SQL("GRANT UPDATE ({}) ON {} TO {}").format(columns, log, r),
        sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(s, r),
    ]
    return [statement.as_string() for statement in statements]


def grant_app_role(execute: Callable[[str], Any], fetch_schema: Callable[[], str]) -> None:
    """Run the grants through the owner's connection (``execute`` one statement), inside
    one transaction of the caller's."""
    role = app_role_name()
    if role is None:
        return
    for statement in app_role_grants(role, fetch_schema()):
        execute(statement)


def grant_app_role_after_migrate(**kwargs: Any) -> None:
    """A ``post_migrate`` receiver (sent once per app, after every migration has run)."""
    from django.db import connections, transaction

    if kwargs.get("app_config") is None or kwargs["app_config"].label != "audit":
        return
    using = kwargs.get("using", OWNER_ALIAS)
    # One transaction: a running server never sees its privileges revoked but not yet
    # granted again.
    with transaction.atomic(using=using), connections[using].cursor() as cursor:

        def schema() -> str:
            cursor.execute("SELECT current_schema()")
            return str(cursor.fetchone()[0])

        grant_app_role(cursor.execute, schema)
