"""The permission rule: only admins of Paid-plan organizations read audit logs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import AnonymousUser

from core.models import Organization, User
from core.predicates import organization_is_paid, user_is_org_admin, user_may_read_audit_logs
from core.services import role_create, user_update

pytestmark = pytest.mark.django_db


def test_matrix(make_org: Callable[..., Organization], make_user: Callable[..., User]) -> None:
    paid, free = make_org("paid"), make_org("free")
    cases = {
        "paid admin": (make_user(paid, admin=True), True, True),
        "paid member": (make_user(paid), False, False),
        "free admin": (make_user(free, admin=True), True, False),
        "free member": (make_user(free), False, False),
    }
    for name, (user, is_admin, may_read) in cases.items():
        assert user_is_org_admin(user) is is_admin, name
        assert user_may_read_audit_logs(user) is may_read, name
    assert organization_is_paid(paid) and not organization_is_paid(free)
    assert not user_may_read_audit_logs(AnonymousUser())  # type: ignore[arg-type]


def test_custom_role_and_deactivated_admin_cannot_read(
    paid_org: Organization, admin: User, make_user: Callable[..., User]
) -> None:
    auditor = make_user(paid_org, role=role_create(organization=paid_org, name="Auditor"))
    assert not user_may_read_audit_logs(auditor)
    user_update(user=admin, is_active=False)
    assert not user_may_read_audit_logs(admin)


def test_operator_without_organization_cannot_read(db: None) -> None:
    operator = User.objects.create_superuser("ops@example.test", "x")
    assert not user_may_read_audit_logs(operator)
