"""Operator commands: happy paths and the errors an operator will meet."""

from __future__ import annotations

from collections.abc import Callable
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from audit.events import AuditEventType
from audit.models import AuditLog
from core.models import ApiToken, ApiTokenScope, Organization, User
from core.services import api_token_hash

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_create_org_records_registration() -> None:
    assert "Created organization acme" in run(
        "create_org", "acme", "--name", "Acme", "--plan", "paid"
    )
    org = Organization.objects.get(slug="acme")
    assert org.plan == "PAID" and org.name == "Acme"
    assert (
        AuditLog.objects.filter(organization=org, event=AuditEventType.USER_REGISTERED).count() == 1
    )


def test_create_org_refuses_a_duplicate_slug() -> None:
    run("create_org", "acme", "--name", "Acme", "--plan", "free")
    with pytest.raises(CommandError, match="already exists"):
        run("create_org", "acme", "--name", "Other", "--plan", "free")
    assert Organization.objects.count() == 1


def test_create_org_rejects_a_bad_slug() -> None:
    with pytest.raises(CommandError):
        run("create_org", "not a slug", "--name", "X", "--plan", "free")


def test_create_user_admin_and_member(paid_org: Organization) -> None:
    run(
        "create_user",
        "Boss@Example.test",
        "--org",
        paid_org.slug,
        "--admin",
        "--password",
        "pw-long-enough-1",
    )
    run("create_user", "member@example.test", "--org", paid_org.slug)
    boss = User.objects.get(email="boss@example.test")
    assert boss.role is not None and boss.role.is_admin
    assert boss.check_password("pw-long-enough-1")
    member = User.objects.get(email="member@example.test")
    assert member.role is not None and not member.role.is_admin
    assert not member.has_usable_password()
    assert (
        AuditLog.objects.filter(event=AuditEventType.USER_CREATED, organization=paid_org).count()
        == 2
    )


def test_create_user_unknown_org() -> None:
    with pytest.raises(CommandError, match="no organization with slug 'nope'"):
        run("create_user", "a@b.test", "--org", "nope")


def test_create_user_duplicate_email_case_insensitive(paid_org: Organization) -> None:
    run("create_user", "dup@example.test", "--org", paid_org.slug)
    with pytest.raises(CommandError, match="already exists"):
        run("create_user", "DUP@example.test", "--org", paid_org.slug)
    assert User.objects.filter(email__iexact="dup@example.test").count() == 1


def test_create_user_invalid_email(paid_org: Organization) -> None:
    with pytest.raises(CommandError, match="valid email"):
        run("create_user", "not-an-email", "--org", paid_org.slug)


def test_create_api_token_prints_only_the_token_and_stores_its_hash(admin: User) -> None:
    out = run("create_api_token", admin.email, "--name", "ci")
    secret = out.strip()
    assert out == secret + "\n" and secret.startswith("alog_") and len(secret) > 40
    token = ApiToken.objects.get(user=admin)
    assert token.token_hash == api_token_hash(secret)
    assert secret not in (token.token_hash, token.prefix) and secret.startswith(token.prefix)
    assert token.expires_at is None and token.is_usable()


def test_create_api_token_with_expiry(admin: User) -> None:
    run("create_api_token", admin.email, "--expires-in-days", "7")
    assert ApiToken.objects.get(user=admin).expires_at is not None


def test_create_api_token_is_read_only_by_default(admin: User) -> None:
    run("create_api_token", admin.email)
    token = ApiToken.objects.get(user=admin)
    assert token.scopes == ["read"]
    assert token.has_scope(ApiTokenScope.READ) and not token.has_scope(ApiTokenScope.AUDIT_WRITE)


def test_create_api_token_with_scopes(admin: User) -> None:
    run("create_api_token", admin.email, "--scope", "audit:write")
    run(
        "create_api_token",
        admin.email,
        "--scope",
        "audit:write",
        "--scope",
        "read",
        "--scope",
        "read",
    )
    only_write, both = ApiToken.objects.filter(user=admin).order_by("pk")
    assert only_write.scopes == ["audit:write"] and not only_write.has_scope(ApiTokenScope.READ)
    assert both.scopes == ["audit:write", "read"]


def test_create_api_token_unknown_scope(admin: User) -> None:
    with pytest.raises(CommandError, match="invalid choice: 'admin'"):
        run("create_api_token", admin.email, "--scope", "admin")
    assert not ApiToken.objects.filter(user=admin).exists()


def test_create_api_token_unknown_user(db: None) -> None:
    with pytest.raises(CommandError, match="no user with email"):
        run("create_api_token", "ghost@example.test")


def test_seed_demo_is_idempotent() -> None:
    out = run("seed_demo", "--events", "500")
    assert "API token for admin@acme.test" in out
    acme = Organization.objects.get(slug="acme")
    assert acme.plan == "PAID"
    assert Organization.objects.get(slug="tinyco").plan == "FREE"
    count = AuditLog.objects.count()
    assert AuditLog.objects.filter(organization=acme).count() >= 500
    assert AuditLog.objects.filter(
        organization=acme, actor__isnull=True, event="SESSION_EXPIRED"
    ).exists()
    users = User.objects.count()
    again = run("seed_demo", "--events", "500")
    assert "already there" in again
    assert AuditLog.objects.count() == count and User.objects.count() == users


def test_seed_demo_if_empty_leaves_other_data_alone(make_org: Callable[..., Organization]) -> None:
    make_org("paid", slug="customer")
    assert "no demo data added" in run("seed_demo", "--if-empty", "--events", "10")
    assert not Organization.objects.filter(slug="acme").exists()
