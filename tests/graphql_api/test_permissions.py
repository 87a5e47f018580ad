"""Who may read audit logs: the permission matrix of PRODUCT.md, each caller with its exact
code and no data; and what tokens and sessions authenticate."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from audit.events import AuditEventType as E
from audit.services import audit_log_record
from core.models import ApiToken, Organization, User
from core.services import api_token_create, api_token_revoke, user_update
from tests.graphql_api.conftest import GraphQLClient, data_of, error_codes

pytestmark = pytest.mark.django_db

PAGE = "{ auditLogs(first: 5) { totalCount edges { node { event user { email } } } } }"
PAID_ADMINS_ONLY = "Audit logs are only available to organization administrators on the Paid plan."


def assert_refused(body: dict[str, object], code: str) -> None:
    assert error_codes(body) == [code]
    assert body["data"] is None  # no partial data: auditLogs is non-null


def test_anonymous_is_unauthenticated(gql: GraphQLClient) -> None:
    body = gql.post(PAGE)
    assert_refused(body, "UNAUTHENTICATED")
    assert "/accounts/login/" in body["errors"][0]["message"]  # type: ignore[index]


@pytest.mark.parametrize(
    "header",
    ["Bearer alog_not-a-real-token", "Bearer ", "Basic dXNlcjpwYXNz", "alog_abc", "Bearer a b"],
)
def test_bad_credentials_are_unauthenticated(gql: GraphQLClient, header: str) -> None:
    assert_refused(gql.post(PAGE, headers={"Authorization": header}), "UNAUTHENTICATED")


def test_expired_token_is_unauthenticated(
    gql: GraphQLClient, admin: User, token_for: Callable[[User], str]
) -> None:
    secret = token_for(admin)
    ApiToken.objects.filter(user=admin).update(expires_at=timezone.now() - timedelta(seconds=1))
    body = gql.post(PAGE, token=secret)
    assert_refused(body, "UNAUTHENTICATED")
    assert "expired" in body["errors"][0]["message"]  # type: ignore[index]


def test_revoked_token_is_unauthenticated(gql: GraphQLClient, admin: User) -> None:
    token, secret = api_token_create(user=admin)
    assert data_of(gql.post(PAGE, token=secret))["auditLogs"]["totalCount"] >= 1
    api_token_revoke(token=token)
    assert_refused(gql.post(PAGE, token=secret), "UNAUTHENTICATED")


def test_token_of_a_deactivated_user_is_unauthenticated(
    gql: GraphQLClient, admin: User, token_for: Callable[[User], str]
) -> None:
    secret = token_for(admin)
    user_update(user=admin, is_active=False)
    assert_refused(gql.post(PAGE, token=secret), "UNAUTHENTICATED")


def test_a_bad_token_does_not_fall_back_to_the_session(gql: GraphQLClient, admin: User) -> None:
    gql.client.force_login(admin)
    assert data_of(gql.post(PAGE))["auditLogs"]["totalCount"] >= 1
    assert_refused(gql.post(PAGE, token="alog_wrong"), "UNAUTHENTICATED")


def test_member_is_forbidden(
    gql: GraphQLClient,
    paid_org: Organization,
    make_user: Callable[..., User],
    token_for: Callable[[User], str],
) -> None:
    member = make_user(paid_org)
    body = gql.post(PAGE, token=token_for(member))
    assert_refused(body, "FORBIDDEN")
    assert body["errors"][0]["message"] == PAID_ADMINS_ONLY  # type: ignore[index]


def test_free_plan_admin_needs_the_paid_plan(
    gql: GraphQLClient,
    make_org: Callable[..., Organization],
    make_user: Callable[..., User],
    token_for: Callable[[User], str],
) -> None:
    free_admin = make_user(make_org("free"), admin=True)
    body = gql.post(PAGE, token=token_for(free_admin))
    assert_refused(body, "PAID_PLAN_REQUIRED")
    assert body["errors"][0]["message"] == PAID_ADMINS_ONLY  # type: ignore[index]


def test_free_plan_member_is_forbidden_not_told_about_plans(
    gql: GraphQLClient,
    make_org: Callable[..., Organization],
    make_user: Callable[..., User],
    token_for: Callable[[User], str],
) -> None:
    member = make_user(make_org("free"))
    assert_refused(gql.post(PAGE, token=token_for(member)), "FORBIDDEN")


def test_paid_plan_admin_reads_only_their_organization(
    admin_gql: GraphQLClient,
    admin: User,
    other_paid_org: Organization,
    make_user: Callable[..., User],
) -> None:
    outsider = make_user(other_paid_org, email="someone@elsewhere.test")
    audit_log_record(organization=other_paid_org, event=E.USER_LOGIN, actor=outsider)
    audit_log_record(organization=admin.organization, event=E.USER_LOGIN, actor=admin)  # type: ignore[arg-type]
    data = data_of(admin_gql.post(PAGE))["auditLogs"]
    emails = {e["node"]["user"]["email"] for e in data["edges"] if e["node"]["user"]}
    assert admin.email in emails
    assert "someone@elsewhere.test" not in emails


def test_paid_plan_admin_by_session(admin: User) -> None:
    client = Client()
    assert client.login(username=admin.email, password="a-long-test-password")
    body = GraphQLClient(client).post(PAGE)
    assert data_of(body)["auditLogs"]["totalCount"] >= 1


def test_demoted_admin_loses_access_at_once(admin_gql: GraphQLClient, admin: User) -> None:
    assert "errors" not in admin_gql.post(PAGE)
    member_role = admin.organization.roles.get(is_admin=False, name="Member")  # type: ignore[union-attr]
    user_update(user=admin, role=member_role)
    assert_refused(admin_gql.post(PAGE), "FORBIDDEN")


def test_event_types_are_public(gql: GraphQLClient) -> None:
    data = data_of(gql.post("{ auditEventTypes { value description } }"))
    assert [t["value"] for t in data["auditEventTypes"]] == E.values
    assert all(t["description"] for t in data["auditEventTypes"])


def test_token_use_is_recorded_at_most_once_per_interval(
    admin_gql: GraphQLClient, admin: User
) -> None:
    token = ApiToken.objects.get(user=admin)
    assert token.last_used_at is None
    admin_gql.post(PAGE)
    first_use = ApiToken.objects.get(pk=token.pk).last_used_at
    assert first_use is not None
    admin_gql.post(PAGE)
    assert ApiToken.objects.get(pk=token.pk).last_used_at == first_use
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first_use - timedelta(minutes=6))
    admin_gql.post(PAGE)
    assert ApiToken.objects.get(pk=token.pk).last_used_at > first_use  # type: ignore[operator]
