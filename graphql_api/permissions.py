"""Who may call what: Strawberry permission classes over the plain predicates of
core/predicates.py, each failing with its own ``extensions.code``.

``AUDIT_LOG_READERS`` is the rule of the product for reading audit data (administrators of
Paid-plan organizations); every field that exposes audit data lists it as its
``permission_classes``, checked in order so the first failure decides the code:

    no credentials, bad/expired/revoked token  -> UNAUTHENTICATED
    signed in, not an organization admin        -> FORBIDDEN
    admin of a Free-plan organization           -> PAID_PLAN_REQUIRED

The selectors then scope every read to the caller's organization as a second wall.

``AUDIT_LOG_WRITERS`` guards recordAuditEvents: an API token with the ``audit:write`` scope
whose user belongs to an organization (the events go into that organization):

    no credentials, bad/expired/revoked token             -> UNAUTHENTICATED
    a session, a token without audit:write, no organization -> FORBIDDEN

Scopes only narrow what a token may do: reading still needs a Paid-plan administrator,
whatever the token's scopes.
"""

from __future__ import annotations

from typing import Any

from strawberry.permission import BasePermission
from strawberry.types import Info

from core.models import ApiTokenScope
from core.predicates import organization_is_paid, user_is_org_admin
from graphql_api.context import Caller, context_of
from graphql_api.errors import ErrorCode, coded_error

SIGN_IN_MESSAGE = (
    "Authentication required: sign in at /accounts/login/ or send 'Authorization: Bearer <token>'."
)
PAID_ADMINS_ONLY_MESSAGE = (
    "Audit logs are only available to organization administrators on the Paid plan."
)


class IsAuthenticated(BasePermission):
    message = SIGN_IN_MESSAGE
    error_extensions = {"code": ErrorCode.UNAUTHENTICATED.value}

    async def has_permission(self, source: Any, info: Info[Any, Any], **kwargs: Any) -> bool:
        caller = await context_of(info).caller()
        if caller.rejected is not None:
            raise coded_error(ErrorCode.UNAUTHENTICATED, caller.rejected)
        return caller.user is not None


class IsOrganizationAdmin(BasePermission):
    message = PAID_ADMINS_ONLY_MESSAGE
    error_extensions = {"code": ErrorCode.FORBIDDEN.value}

    async def has_permission(self, source: Any, info: Info[Any, Any], **kwargs: Any) -> bool:
        user = (await context_of(info).caller()).user
        return user is not None and user_is_org_admin(user)


class IsOnPaidPlan(BasePermission):
    message = PAID_ADMINS_ONLY_MESSAGE
    error_extensions = {"code": ErrorCode.PAID_PLAN_REQUIRED.value}

    async def has_permission(self, source: Any, info: Info[Any, Any], **kwargs: Any) -> bool:
        user = (await context_of(info).caller()).user
        return user is not None and organization_is_paid(user.organization)


AUDIT_LOG_READERS: list[type[BasePermission]] = [
    IsAuthenticated,
    IsOrganizationAdmin,
    IsOnPaidPlan,
]


def audit_log_read_refusal(caller: Caller) -> tuple[ErrorCode, str] | None:
    """What ``AUDIT_LOG_READERS`` answers this caller (its code and message), or None when
    the caller may read: for the places that judge a caller outside a field (the export
    endpoint, a WebSocket connection)."""
    if caller.rejected is not None:
        return ErrorCode.UNAUTHENTICATED, caller.rejected
    user = caller.user
    if user is None:
        return ErrorCode.UNAUTHENTICATED, SIGN_IN_MESSAGE
    if not user_is_org_admin(user):
        return ErrorCode.FORBIDDEN, PAID_ADMINS_ONLY_MESSAGE
    if not organization_is_paid(user.organization):
        return ErrorCode.PAID_PLAN_REQUIRED, PAID_ADMINS_ONLY_MESSAGE
    return None


WRITE_SCOPE_MESSAGE = (
    "Recording events needs an API token with the audit:write scope "
    "(manage.py create_api_token EMAIL --scope audit:write), sent as "
    "'Authorization: Bearer <token>', whose user belongs to an organization."
)


class HasAuditWriteScope(BasePermission):
    message = WRITE_SCOPE_MESSAGE
    error_extensions = {"code": ErrorCode.FORBIDDEN.value}

    async def has_permission(self, source: Any, info: Info[Any, Any], **kwargs: Any) -> bool:
        caller = await context_of(info).caller()
        return (
            caller.token is not None
            and caller.token.has_scope(ApiTokenScope.AUDIT_WRITE)
            and caller.user is not None
            and caller.user.organization_id is not None
        )


AUDIT_LOG_WRITERS: list[type[BasePermission]] = [IsAuthenticated, HasAuditWriteScope]
