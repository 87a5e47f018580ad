"""The Django admin shows audit entries but cannot add, change or delete them."""

from __future__ import annotations

import pytest
from django.test import Client

from audit.events import AuditEventType
from audit.models import AuditLog
from audit.services import audit_log_record
from core.models import Organization, User

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(db: None) -> User:
    return User.objects.create_superuser("ops@example.test", "an-operator-password")


@pytest.fixture
def entry(paid_org: Organization, admin: User) -> AuditLog:
    return audit_log_record(organization=paid_org, event=AuditEventType.USER_LOGIN, actor=admin)


def test_changelist_lists_filters_and_searches(
    client: Client, operator: User, entry: AuditLog
) -> None:
    client.force_login(operator)
    assert entry.actor_email is not None
    response = client.get("/admin/audit/auditlog/")
    assert response.status_code == 200 and entry.actor_email in response.content.decode()
    filtered = client.get("/admin/audit/auditlog/", {"event": "USER_LOGIN", "q": entry.actor_email})
    assert filtered.status_code == 200 and entry.actor_email in filtered.content.decode()
    empty = client.get("/admin/audit/auditlog/", {"event": "ROLE_DELETED"})
    assert entry.actor_email not in empty.content.decode()


def test_no_add_change_or_delete(client: Client, operator: User, entry: AuditLog) -> None:
    client.force_login(operator)
    assert client.get("/admin/audit/auditlog/add/").status_code == 403
    detail = client.get(f"/admin/audit/auditlog/{entry.pk}/change/")
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()  # read-only view
    post = client.post(f"/admin/audit/auditlog/{entry.pk}/change/", {"event": "USER_DELETED"})
    assert post.status_code == 403
    assert (
        client.post(f"/admin/audit/auditlog/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    )
    bulk = client.post(
        "/admin/audit/auditlog/",
        {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"},
    )
    assert bulk.status_code in (200, 302)
    entry.refresh_from_db()
    assert entry.event == AuditEventType.USER_LOGIN
    assert AuditLog.objects.filter(pk=entry.pk).exists()


def test_token_secrets_are_never_shown(client: Client, operator: User, admin: User) -> None:
    from core.services import api_token_create

    token, secret = api_token_create(user=admin, name="ci")
    client.force_login(operator)
    page = client.get(f"/admin/core/apitoken/{token.pk}/change/").content.decode()
    assert token.token_hash not in page and secret not in page and token.prefix in page


def test_admin_created_token_is_shown_once(client: Client, operator: User, admin: User) -> None:
    client.force_login(operator)
    response = client.post(
        "/admin/core/apitoken/add/", {"user": admin.pk, "name": "from admin"}, follow=True
    )
    assert response.status_code == 200
    assert "will not be shown again: alog_" in response.content.decode()
    assert admin.api_tokens.count() == 1


def test_user_changes_in_the_admin_are_audited(
    client: Client, operator: User, paid_org: Organization, admin: User
) -> None:
    client.force_login(operator)
    member_role = paid_org.roles.get(name="Member")
    response = client.post(
        "/admin/core/user/add/",
        {
            "email": "new@example.test",
            "name": "New",
            "organization": paid_org.pk,
            "role": member_role.pk,
            "usable_password": "true",
            "password1": "a-strong-password-42",
            "password2": "a-strong-password-42",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    user = User.objects.get(email="new@example.test")
    assert user.check_password("a-strong-password-42") and user.role == member_role
    created = AuditLog.objects.get(event=AuditEventType.USER_CREATED, details__user__id=user.pk)
    assert created.actor == operator and created.organization == paid_org

    page = client.get(f"/admin/core/user/{user.pk}/change/")
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {
        k: v
        for k, v in form.initial.items()
        if v is not None
        and k
        not in (
            "password",
            "groups",
            "user_permissions",
            "last_login",
            "date_joined",
            "organization",
        )
    }
    data.update({"name": "Renamed", "role": member_role.pk, "is_active": "on"})
    response = client.post(f"/admin/core/user/{user.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    updated = AuditLog.objects.get(event=AuditEventType.USER_UPDATED, details__user__id=user.pk)
    assert updated.details["changes"] == {"name": {"from": "New", "to": "Renamed"}}

    response = client.post(f"/admin/core/user/{user.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not User.objects.filter(pk=user.pk).exists()
    assert (
        AuditLog.objects.filter(
            event=AuditEventType.USER_DELETED, details__user__id=user.pk
        ).count()
        == 1
    )


def test_an_operator_sets_an_organizations_retention_in_the_admin(
    client: Client, operator: User
) -> None:
    client.force_login(operator)
    form = {"slug": "kept", "name": "Kept Ltd", "plan": "PAID", "created_at_0": "2026-01-01",
            "created_at_1": "00:00:00", "audit_retention_days": "730"}  # fmt: skip
    response = client.post("/admin/core/organization/add/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    created = Organization.objects.get(slug="kept")
    assert created.audit_retention_days == 730
    assert created.roles.count() == 2  # created through the service, with its roles
    form["audit_retention_days"] = "0"
    response = client.post(f"/admin/core/organization/{created.pk}/change/", form)
    assert response.status_code == 302
    created.refresh_from_db()
    assert created.audit_retention_days == 0


def test_log_streams_made_in_the_admin_go_through_the_services(
    client: Client, operator: User, paid_org: Organization
) -> None:
    from core.models import AuditLogStream

    client.force_login(operator)
    page = client.post(
        "/admin/core/auditlogstream/add/",
        {
            "organization": paid_org.pk,
            "name": "siem",
            "url": "https://siem.example.com/in",
            "format": "JSONL",
            "event_types": "USER_LOGIN",
            "enabled": "on",
        },
        follow=True,
    ).content.decode()
    stream = AuditLogStream.objects.get(organization=paid_org)
    assert "The stream&#x27;s signing secret (shown only now): whsec_" in page
    assert (stream.format, stream.event_types) == ("JSONL", ["USER_LOGIN"])
    assert stream.secret_salt not in page
    created = AuditLog.objects.get(organization=paid_org, event="AUDIT_LOG_STREAM_CREATED")
    assert created.details["stream"]["id"] == stream.pk
    refused = client.post(
        "/admin/core/auditlogstream/add/",
        {"organization": paid_org.pk, "name": "bad", "url": "http://x.example/", "format": "JSON"},
        follow=True,
    ).content.decode()
    assert "must start with https://" in refused
    assert not AuditLogStream.objects.filter(name="bad").exists()
