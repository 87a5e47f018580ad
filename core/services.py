"""Account actions: every change to organizations, users and roles goes through here and
records its audit event in the same transaction (an action that rolls back leaves no
entry; a committed one always has exactly one).

Errors a caller can fix are raised as ``django.core.exceptions.ValidationError`` with a
message meant for the person who asked.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email, validate_slug
from django.db import IntegrityError, connection, transaction
from django.db.models import ProtectedError, Q
from django.utils import timezone

from audit.events import AuditEventType
from audit.services import UNSET, Unset, audit_log_record
from core.models import (
    ApiToken,
    ApiTokenScope,
    Organization,
    Role,
    StreamLease,
    User,
    normalize_email,
)

TOKEN_PREFIX = "alog_"  # noqa: S105 - a marker, not a secret


# --- organizations ----------------------------------------------------------------------


@transaction.atomic
def organization_create(
    *, slug: str, name: str, plan: str, audit_retention_days: int | None = None
) -> Organization:
    """Register an organization with its Administrator and Member roles."""
    validate_slug(slug)
    plan = plan.upper()
    if plan not in Organization.Plan.values:
        raise ValidationError(f"plan must be one of {', '.join(Organization.Plan.values)}")
    if Organization.objects.filter(slug=slug).exists():
        raise ValidationError(f"an organization with slug {slug!r} already exists")
    try:
        with transaction.atomic():
            organization = Organization.objects.create(
                slug=slug,
                name=name or slug,
                plan=plan,
                audit_retention_days=audit_retention_days,
            )
    except IntegrityError:  # created concurrently
        raise ValidationError(f"an organization with slug {slug!r} already exists") from None
    Role.objects.create(
        organization=organization,
        name=Role.ADMIN_NAME,
        is_admin=True,
        description="Manages users and roles; reads audit logs on the Paid plan.",
    )
    Role.objects.create(organization=organization, name=Role.MEMBER_NAME)
    audit_log_record(
        organization=organization,
        event=AuditEventType.USER_REGISTERED,
        details={
            "organization": {
                "id": organization.pk,
                "slug": slug,
                "name": organization.name,
                "plan": plan,
            }
        },
    )
    return organization


# --- users --------------------------------------------------------------------------------


def _user_summary(user: User) -> dict[str, Any]:
    return {"id": user.pk, "email": user.email, "name": user.name}


@transaction.atomic
def user_create(
    *,
    organization: Organization,
    email: str,
    name: str = "",
    password: str | None = None,
    role: Role | None = None,
    is_admin: bool = False,
    is_staff: bool = False,
) -> User:
    """Create a member of ``organization``. ``is_admin`` gives the Administrator role;
    otherwise ``role`` (default: Member). Without a password the user cannot sign in
    with one (API tokens still work)."""
    email = normalize_email(email)
    validate_email(email)
    if is_admin:
        role = Role.objects.get(organization=organization, is_admin=True)
    elif role is None:
        role = Role.objects.filter(organization=organization, name=Role.MEMBER_NAME).first()
    if role is not None and role.organization_id != organization.pk:
        raise ValidationError("the role belongs to another organization")
    if User.objects.filter(email__iexact=email).exists():
        raise ValidationError(f"a user with email {email!r} already exists")
    try:
        with transaction.atomic():
            user = User.objects.create_user(
                email, password, name=name, organization=organization, role=role, is_staff=is_staff
            )
    except IntegrityError:
        raise ValidationError(f"a user with email {email!r} already exists") from None
    audit_log_record(
        organization=organization,
        event=AuditEventType.USER_CREATED,
        details={"user": _user_summary(user), "role": role.name if role else None},
    )
    return user


@transaction.atomic
def user_update(
    *,
    user: User,
    name: str | Unset = UNSET,
    role: Role | Unset | None = UNSET,
    is_active: bool | Unset = UNSET,
) -> User:
    """Change a user's profile or status; records USER_UPDATED with what changed."""
    changes: dict[str, dict[str, Any]] = {}
    if not isinstance(name, Unset) and name != user.name:
        changes["name"] = {"from": user.name, "to": name}
        user.name = name
    if not isinstance(role, Unset) and role != user.role:
        if role is not None and role.organization_id != user.organization_id:
            raise ValidationError("the role belongs to another organization")
        changes["role"] = {
            "from": user.role.name if user.role else None,
            "to": role.name if role else None,
        }
        user.role = role
    if not isinstance(is_active, Unset) and is_active != user.is_active:
        changes["is_active"] = {"from": user.is_active, "to": is_active}
        user.is_active = is_active
    if not changes:
        return user
    user.save(update_fields=list(changes))
    if user.organization is not None:
        audit_log_record(
            organization=user.organization,
            event=AuditEventType.USER_UPDATED,
            details={"user": _user_summary(user), "changes": changes},
        )
    return user


@transaction.atomic
def user_delete(*, user: User) -> None:
    """Remove a user. Their audit entries stay, with the email and name snapshots."""
    if user.organization is not None:
        audit_log_record(
            organization=user.organization,
            event=AuditEventType.USER_DELETED,
            details={"user": _user_summary(user)},
        )
    user.delete()


# A User-Agent header is recorded up to this many characters.
USER_AGENT_MAX_LENGTH = 512


@transaction.atomic
def user_record_login(*, user: User, method: str = "password", user_agent: str = "") -> None:
    """Sign-in bookkeeping: last_login and the USER_LOGIN entry, in one transaction.
    ``method`` is how the user proved who they are; ``user_agent`` their browser's
    header, if any."""
    user.last_login = timezone.now()
    user.save(update_fields=["last_login"])
    if user.organization is not None:
        details: dict[str, Any] = {"method": method}
        if user_agent:
            details["user_agent"] = user_agent[:USER_AGENT_MAX_LENGTH]
        audit_log_record(
            organization=user.organization,
            event=AuditEventType.USER_LOGIN,
            actor=user,
            details=details,
        )


# --- roles --------------------------------------------------------------------------------


def _role_summary(role: Role) -> dict[str, Any]:
    return {"id": role.pk, "name": role.name, "is_admin": role.is_admin}


@transaction.atomic
def role_create(*, organization: Organization, name: str, description: str = "") -> Role:
    """Create a custom role (never an administrator role: each organization has one)."""
    name = name.strip()
    if not name:
        raise ValidationError("a role needs a name")
    if Role.objects.filter(organization=organization, name=name).exists():
        raise ValidationError(f"a role named {name!r} already exists")
    role = Role.objects.create(organization=organization, name=name, description=description)
    audit_log_record(
        organization=organization,
        event=AuditEventType.ROLE_CREATED,
        details={"role": _role_summary(role)},
    )
    return role


@transaction.atomic
def role_update(*, role: Role, name: str | Unset = UNSET, description: str | Unset = UNSET) -> Role:
    changes: dict[str, dict[str, Any]] = {}
    if not isinstance(name, Unset) and name.strip() != role.name:
        name = name.strip()
        if not name:
            raise ValidationError("a role needs a name")
        if Role.objects.filter(organization_id=role.organization_id, name=name).exists():
            raise ValidationError(f"a role named {name!r} already exists")
        changes["name"] = {"from": role.name, "to": name}
        role.name = name
    if not isinstance(description, Unset) and description != role.description:
        changes["description"] = {"from": role.description, "to": description}
        role.description = description
    if not changes:
        return role
    role.save(update_fields=list(changes))
    audit_log_record(
        organization=role.organization,
        event=AuditEventType.ROLE_UPDATED,
        details={"role": _role_summary(role), "changes": changes},
    )
    return role


@transaction.atomic
def role_delete(*, role: Role) -> None:
    if role.is_admin:
        raise ValidationError("the administrator role cannot be deleted")
    summary = _role_summary(role)
    organization = role.organization
    try:
        with transaction.atomic():
            role.delete()
    except ProtectedError:
        raise ValidationError(
            f"role {role.name!r} is assigned to users; give them another role first"
        ) from None
    audit_log_record(
        organization=organization, event=AuditEventType.ROLE_DELETED, details={"role": summary}
    )


# --- API tokens ---------------------------------------------------------------------------


def api_token_hash(secret: str) -> str:
    """Tokens are 256-bit random secrets, so a fast hash is enough: a stolen hash cannot be
    reversed, and lookups stay one indexed equality match."""
    return hashlib.sha256(secret.encode()).hexdigest()


def api_token_create(
    *,
    user: User,
    name: str = "",
    expires_at: datetime | None = None,
    scopes: Iterable[str] = (ApiTokenScope.READ,),
) -> tuple[ApiToken, str]:
    """Create a token; returns it with its secret, which is not stored and cannot be shown
    again. ``scopes`` (ApiTokenScope values) default to read only."""
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError("the expiry must be in the future")
    wanted = list(dict.fromkeys(str(scope) for scope in scopes))
    unknown = [scope for scope in wanted if scope not in ApiTokenScope.values]
    if unknown:
        raise ValidationError(
            f"unknown scope(s): {', '.join(unknown)} (known: {', '.join(ApiTokenScope.values)})"
        )
    if not wanted:
        raise ValidationError("a token needs at least one scope")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=secret[: len(TOKEN_PREFIX) + 6],
        token_hash=api_token_hash(secret),
        expires_at=expires_at,
        scopes=wanted,
    )
    return token, secret


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


# How often a token's last use is written: at most once per interval, so that a busy
# integration does not turn every read into a write.
API_TOKEN_LAST_USED_RESOLUTION = timedelta(minutes=5)


def api_token_record_use(*, token: ApiToken, now: datetime | None = None) -> bool:
    """Note that ``token`` was just used, unless that was already noted within
    API_TOKEN_LAST_USED_RESOLUTION. One conditional UPDATE, so concurrent requests write at
    most once per interval. Returns whether it wrote."""
    now = now or timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < API_TOKEN_LAST_USED_RESOLUTION:
        return False
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - API_TOKEN_LAST_USED_RESOLUTION)
    written = ApiToken.objects.filter(stale, pk=token.pk).update(last_used_at=now)
    if written:
        token.last_used_at = now
    return bool(written)


# --- live-stream leases --------------------------------------------------------------------


def stream_lease_acquire(*, holder: str, limit: int, ttl: timedelta) -> int | None:
    """A lease for one more open stream of ``holder``, or None when it already holds
    ``limit`` unexpired leases. Holders are serialized by an advisory lock for the length
    of this transaction, so two servers cannot both grant the last lease."""
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [holder])
        StreamLease.objects.filter(holder=holder, expires_at__lte=now).delete()
        if StreamLease.objects.filter(holder=holder).count() >= limit:
            return None
        return StreamLease.objects.create(holder=holder, expires_at=now + ttl).pk


def stream_lease_renew(*, lease_id: int, ttl: timedelta) -> None:
    StreamLease.objects.filter(pk=lease_id).update(expires_at=timezone.now() + ttl)


def stream_lease_release(*, lease_id: int) -> None:
    StreamLease.objects.filter(pk=lease_id).delete()
