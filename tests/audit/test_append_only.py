"""audit_log is append-only in the database: UPDATE and DELETE fail whatever the path."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import IntegrityError, connection, transaction

from audit.events import AuditEventType
from audit.models import AuditLog
from audit.services import audit_log_record
from core.models import Organization, User
from core.services import user_delete

pytestmark = pytest.mark.django_db


@pytest.fixture
def entry(paid_org: Organization, admin: User) -> AuditLog:
    return audit_log_record(
        organization=paid_org, event=AuditEventType.USER_LOGIN, actor=admin, ip="203.0.113.1"
    )


def _fails(action: Callable[[], object]) -> None:
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        action()


def test_orm_save_of_a_changed_entry_fails(entry: AuditLog) -> None:
    entry.event = AuditEventType.USER_DELETED
    _fails(entry.save)


def test_orm_queryset_update_fails(entry: AuditLog) -> None:
    _fails(lambda: AuditLog.objects.filter(pk=entry.pk).update(details={"forged": True}))


def test_orm_delete_fails(entry: AuditLog) -> None:
    _fails(entry.delete)
    _fails(lambda: AuditLog.objects.filter(pk=entry.pk).delete())
    assert AuditLog.objects.filter(pk=entry.pk).exists()


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_log SET ip = '10.0.0.1' WHERE id = %s",
        "UPDATE audit_log SET time = now() WHERE id = %s",
        "DELETE FROM audit_log WHERE id = %s",
    ],
)
def test_raw_sql_update_and_delete_fail(entry: AuditLog, sql: str) -> None:
    def run() -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql, [entry.pk])

    _fails(run)
    entry_after = AuditLog.objects.get(pk=entry.pk)
    assert entry_after.ip == "203.0.113.1" and entry_after.time == entry.time


def test_raw_sql_cannot_point_an_entry_at_another_user(
    entry: AuditLog, paid_org: Organization, make_user: Callable[..., User]
) -> None:
    other = make_user(paid_org)

    def run() -> None:
        with connection.cursor() as cursor:
            cursor.execute("UPDATE audit_log SET actor_id = %s WHERE id = %s", [other.pk, entry.pk])

    _fails(run)


def test_clearing_the_actor_cannot_smuggle_other_changes(entry: AuditLog) -> None:
    def run() -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE audit_log SET actor_id = NULL, actor_email = 'x@evil.test' WHERE id = %s",
                [entry.pk],
            )

    _fails(run)


def test_deleting_the_actor_keeps_the_entry_with_its_snapshot(entry: AuditLog, admin: User) -> None:
    email = admin.email
    user_delete(user=admin)
    entry.refresh_from_db()
    assert entry.actor_id is None
    assert entry.actor_email == email
    assert entry.actor_name == "Ada Admin"
    assert entry.event == AuditEventType.USER_LOGIN
