"""An action and its audit entry commit or roll back together (real transactions)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from audit.context import audit_context
from audit.events import AuditEventType
from audit.models import AuditLog
from audit.services import audit_log_record
from core.models import Organization, Role, User
from core.services import role_create, role_delete, role_update, user_delete, user_update
from tests.support import TRANSACTIONAL

pytestmark = TRANSACTIONAL


class Boom(Exception):
    pass


def test_rolled_back_action_leaves_no_entry(paid_org: Organization, admin: User) -> None:
    before = AuditLog.objects.count()
    with pytest.raises(Boom), audit_context(actor=admin, ip="203.0.113.7"), transaction.atomic():
        role_create(organization=paid_org, name="Auditor")
        raise Boom
    assert not Role.objects.filter(name="Auditor").exists()
    assert AuditLog.objects.count() == before


def test_committed_action_has_exactly_one_entry_with_actor_ip_details(
    paid_org: Organization, admin: User
) -> None:
    with audit_context(actor=admin, ip="203.0.113.7"):
        role = role_create(organization=paid_org, name="Auditor", description="reads")
    entries = AuditLog.objects.filter(event=AuditEventType.ROLE_CREATED, organization=paid_org)
    assert entries.count() == 1
    entry = entries.get()
    assert entry.actor == admin
    assert entry.actor_email == admin.email
    assert entry.actor_name == "Ada Admin"
    assert entry.ip is not None
    assert ipaddress.ip_address(entry.ip) == ipaddress.ip_address("203.0.113.7")
    assert entry.details == {"role": {"id": role.pk, "name": "Auditor", "is_admin": False}}


def test_failed_service_validation_writes_nothing(paid_org: Organization, admin: User) -> None:
    before = AuditLog.objects.count()
    admin_role = Role.objects.get(organization=paid_org, is_admin=True)
    with pytest.raises(ValidationError):
        role_delete(role=admin_role)
    assert AuditLog.objects.count() == before


@pytest.mark.parametrize(
    ("action", "event"),
    [
        ("update", AuditEventType.USER_UPDATED),
        ("delete", AuditEventType.USER_DELETED),
        ("role_update", AuditEventType.ROLE_UPDATED),
        ("role_delete", AuditEventType.ROLE_DELETED),
    ],
)
def test_each_account_action_records_its_event(
    paid_org: Organization, admin: User, make_user: Callable[..., User], action: str, event: str
) -> None:
    member = make_user(paid_org, name="Mia")
    role = role_create(organization=paid_org, name="Temp")
    with audit_context(actor=admin, ip="2001:db8::1"):
        if action == "update":
            user_update(user=member, name="Mia Updated", is_active=False)
        elif action == "delete":
            user_delete(user=member)
        elif action == "role_update":
            role_update(role=role, name="Renamed")
        else:
            role_delete(role=role)
    entry = AuditLog.objects.filter(event=event).get()
    assert entry.actor == admin
    assert entry.ip == "2001:db8::1"
    if action == "update":
        assert entry.details["changes"] == {
            "name": {"from": "Mia", "to": "Mia Updated"},
            "is_active": {"from": True, "to": False},
        }


def test_update_without_change_records_nothing(paid_org: Organization, admin: User) -> None:
    before = AuditLog.objects.count()
    user_update(user=admin, name=admin.name)
    assert AuditLog.objects.count() == before


def test_organization_registration_and_user_creation_are_recorded(
    make_org: Callable[..., Organization], make_user: Callable[..., User]
) -> None:
    org = make_org("free", slug="newco")
    user = make_user(org, email="new@newco.test")
    registered = AuditLog.objects.get(organization=org, event=AuditEventType.USER_REGISTERED)
    assert registered.details["organization"]["slug"] == "newco"
    assert registered.actor is None  # operator command: no acting user
    created = AuditLog.objects.get(organization=org, event=AuditEventType.USER_CREATED)
    assert created.details["user"]["email"] == user.email


def test_explicit_arguments_win_over_the_context(paid_org: Organization, admin: User) -> None:
    with audit_context(actor=admin, ip="203.0.113.7"):
        entry = audit_log_record(
            organization=paid_org, event=AuditEventType.SESSION_EXPIRED, actor=None, ip=None
        )
    assert entry.actor is None and entry.actor_email is None and entry.ip is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"event": "NOT_AN_EVENT"}, "unknown event type"),
        ({"event": "USER_LOGIN", "ip": "999.1.1.1"}, "not an IP address"),
        ({"event": "USER_LOGIN", "details": ["a"]}, "JSON object"),
    ],
)
def test_record_rejects_bad_input(paid_org: Organization, kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        audit_log_record(organization=paid_org, **kwargs)


def test_login_records_user_login_and_last_login_with_client_ip(
    client: object, admin: User
) -> None:
    from django.test import Client

    assert isinstance(client, Client)
    admin.is_staff = True
    admin.save(update_fields=["is_staff"])
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": admin.email, "password": "a-long-test-password"},
        REMOTE_ADDR="198.51.100.23",
    )
    assert response.status_code == 302
    entry = AuditLog.objects.get(event=AuditEventType.USER_LOGIN)
    assert entry.actor == admin and entry.ip == "198.51.100.23"
    admin.refresh_from_db()
    assert admin.last_login is not None


def test_a_batch_racing_an_uncommitted_copy_of_itself_returns_its_entries(
    paid_org: Organization,
) -> None:
    """The second call waits for the first call's transaction on the idempotency index,
    then returns the entries the first one committed, creating nothing."""
    import threading

    from django.db import connection, transaction

    from audit.services import AuditEventSubmission, audit_log_record_batch

    batch = [
        AuditEventSubmission(idempotency_key=f"race-{n}", event="ROLE_CREATED") for n in range(50)
    ]
    first_inserted = threading.Event()
    release_first = threading.Event()
    results: dict[str, Any] = {}

    def first() -> None:
        try:
            with transaction.atomic():
                results["first"] = audit_log_record_batch(organization=paid_org, submissions=batch)
                first_inserted.set()
                assert release_first.wait(10)
        finally:
            connection.close()

    def second() -> None:
        try:
            results["second"] = audit_log_record_batch(organization=paid_org, submissions=batch)
        finally:
            connection.close()

    a = threading.Thread(target=first)
    a.start()
    assert first_inserted.wait(10)
    b = threading.Thread(target=second)
    b.start()
    b.join(0.5)
    assert b.is_alive(), "the second call must wait for the first transaction"
    release_first.set()
    a.join(10)
    b.join(10)
    assert [r.entry_id for r in results["second"]] == [r.entry_id for r in results["first"]]
    assert all(r.created for r in results["first"]) and not any(
        r.created for r in results["second"]
    )
    assert (
        AuditLog.objects.filter(organization=paid_org, idempotency_key__startswith="race-").count()
        == 50
    )
