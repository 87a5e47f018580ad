"""audit_log is append-only in the database, twice over: the application's role has no
privilege to change or remove entries, nor to touch the trigger; and the trigger refuses
UPDATE and DELETE whoever runs them, the owner included."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import IntegrityError, ProgrammingError, connection, connections, transaction

from audit.events import AuditEventType
from audit.models import AuditActorEmail, AuditCountActorMonth, AuditCountDay, AuditLog
from audit.services import audit_log_record
from core.models import Organization, User
from core.roles import OWNER_ALIAS, app_role_name
from core.services import user_delete
from tests.support import TRANSACTIONAL

pytestmark = pytest.mark.django_db
TWO_ROLES = pytest.mark.skipif(
    app_role_name() is None, reason="DATABASE_URL without DATABASE_OWNER_URL: one role"
)


@pytest.fixture
def entry(paid_org: Organization, admin: User) -> AuditLog:
    return audit_log_record(
        organization=paid_org, event=AuditEventType.USER_LOGIN, actor=admin, ip="203.0.113.1"
    )


def _fails(action: Callable[[], object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match), transaction.atomic():
        action()


def _run_sql(sql: str, params: list[int] | None = None, *, using: str = "default") -> None:
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)


# --- the application's role: it may not change entries at all -----------------------------


@TWO_ROLES
def test_orm_save_of_a_changed_entry_is_refused(entry: AuditLog) -> None:
    entry.event = AuditEventType.USER_DELETED
    _fails(entry.save, ProgrammingError, "permission denied for table audit_log")


@TWO_ROLES
def test_orm_queryset_update_and_delete_are_refused(entry: AuditLog) -> None:
    forge = AuditLog.objects.filter(pk=entry.pk)
    _fails(lambda: forge.update(details={"forged": True}), ProgrammingError, "permission denied")
    _fails(entry.delete, ProgrammingError, "permission denied")
    _fails(forge.delete, ProgrammingError, "permission denied")
    assert AuditLog.objects.get(pk=entry.pk).details == entry.details


@TWO_ROLES
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_log SET ip = '10.0.0.1' WHERE id = %s",
        "UPDATE audit_log SET time = now() WHERE id = %s",
        "UPDATE audit_log SET actor_id = NULL, actor_email = 'x@evil.test' WHERE id = %s",
        "DELETE FROM audit_log WHERE id = %s",
    ],
)
def test_raw_sql_changes_are_refused(entry: AuditLog, sql: str) -> None:
    _fails(lambda: _run_sql(sql, [entry.pk]), ProgrammingError, "permission denied")
    entry_after = AuditLog.objects.get(pk=entry.pk)
    assert entry_after.ip == "203.0.113.1" and entry_after.time == entry.time


@TWO_ROLES
def test_the_one_column_it_may_update_is_still_guarded_by_the_trigger(
    entry: AuditLog, paid_org: Organization, make_user: Callable[..., User]
) -> None:
    other = make_user(paid_org)
    sql = "UPDATE audit_log SET actor_id = %s WHERE id = %s"
    _fails(lambda: _run_sql(sql, [other.pk, entry.pk]), IntegrityError, "append-only")


@TWO_ROLES
@pytest.mark.parametrize(
    "sql",
    [
        "TRUNCATE audit_log",
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
        "ALTER TABLE audit_log DISABLE TRIGGER ALL",
        "DROP TRIGGER audit_log_append_only ON audit_log",
        "DROP FUNCTION audit_log_reject_change()",
        "CREATE OR REPLACE FUNCTION audit_log_reject_change() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
        "ALTER TABLE audit_log RENAME TO audit_log_old",
        "SET session_replication_role = replica",
        "CREATE TABLE forged (id int)",
    ],
)
def test_it_cannot_bypass_or_remove_the_trigger(entry: AuditLog, sql: str) -> None:
    _fails(lambda: _run_sql(sql), ProgrammingError, "permission denied|must be owner")
    _fails(
        lambda: _run_sql("DELETE FROM audit_log WHERE id = %s", [entry.pk]),
        ProgrammingError,
        "permission denied",
    )
    assert AuditLog.objects.filter(pk=entry.pk).exists()


@TWO_ROLES
@pytest.mark.parametrize("model", [AuditActorEmail, AuditCountDay, AuditCountActorMonth])
def test_rollups_and_the_directory_are_read_only_to_it(entry: AuditLog, model: type) -> None:
    rows = model.objects.all()  # type: ignore[attr-defined]
    assert rows.exists()  # kept by the triggers, as the owner
    _fails(lambda: rows.update(organization_id=entry.organization_id), ProgrammingError, "denied")
    _fails(rows.delete, ProgrammingError, "permission denied")


@TWO_ROLES
def test_it_owns_nothing_and_holds_no_special_attribute() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls "
            "FROM pg_roles WHERE rolname = current_user"
        )
        assert cursor.fetchone() == (False, False, False, False, False)
        cursor.execute(
            "SELECT count(*) FROM pg_class WHERE relowner = "
            "(SELECT oid FROM pg_roles WHERE rolname = current_user)"
        )
        assert cursor.fetchone() == (0,)
        cursor.execute("SELECT current_user = %s", [app_role_name()])
        assert cursor.fetchone() == (True,)


# --- the trigger itself, as the owner (who may write, but not change entries either) ------


@TRANSACTIONAL
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_log SET ip = '10.0.0.1' WHERE id = %s",
        "UPDATE audit_log SET time = now() WHERE id = %s",
        "UPDATE audit_log SET actor_id = NULL, actor_email = 'x@evil.test' WHERE id = %s",
        "DELETE FROM audit_log WHERE id = %s",
    ],
)
def test_the_trigger_refuses_the_owner_too(entry: AuditLog, sql: str) -> None:
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic(using=OWNER_ALIAS):
        _run_sql(sql, [entry.pk], using=OWNER_ALIAS)
    entry_after = AuditLog.objects.get(pk=entry.pk)
    assert entry_after.ip == "203.0.113.1" and entry_after.time == entry.time


def test_deleting_the_actor_keeps_the_entry_with_its_snapshot(entry: AuditLog, admin: User) -> None:
    email = admin.email
    user_delete(user=admin)
    entry.refresh_from_db()
    assert entry.actor_id is None
    assert entry.actor_email == email
    assert entry.actor_name == "Ada Admin"
    assert entry.event == AuditEventType.USER_LOGIN
