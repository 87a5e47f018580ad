"""Plain predicates that decide who may read audit logs (the product's permission rule).

The GraphQL permission classes and any future reader of audit data turn these into coded
errors; keeping them here, free of GraphQL, keeps one definition of the rule.
"""

from __future__ import annotations

from typing import Any

from core.models import Organization, User


def user_is_authenticated(user: Any) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False) and user.is_active)


def user_is_org_admin(user: User) -> bool:
    """An active member whose role is their organization's administrator role."""
    return bool(
        user_is_authenticated(user)
        and user.organization_id is not None
        and user.role is not None
        and user.role.is_admin
        and user.role.organization_id == user.organization_id
    )


def organization_is_paid(organization: Organization | None) -> bool:
    return organization is not None and organization.plan == Organization.Plan.PAID


def user_may_read_audit_logs(user: User) -> bool:
    """Only administrators of an organization on the Paid plan."""
    return user_is_org_admin(user) and organization_is_paid(user.organization)
