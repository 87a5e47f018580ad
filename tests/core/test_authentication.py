"""Session users and API tokens come with their role and organization, in one query."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from core.authentication import (
    BearerCredentials,
    MalformedAuthorization,
    api_token_authenticate,
    bearer_credentials,
)
from core.backends import UserBackend
from core.models import ApiToken, ApiTokenScope, User
from core.predicates import user_may_read_audit_logs
from core.services import api_token_create

pytestmark = pytest.mark.django_db


def test_session_user_is_loaded_with_role_and_organization(admin: User) -> None:
    with CaptureQueriesContext(connection) as captured:
        user = UserBackend().get_user(admin.pk)
        assert user is not None and user_may_read_audit_logs(user)
    assert len(captured) == 1


def test_async_session_user_is_loaded_with_role_and_organization(admin: User) -> None:
    user = async_to_sync(UserBackend().aget_user)(admin.pk)
    with CaptureQueriesContext(connection) as captured:
        assert user is not None and user_may_read_audit_logs(user)
    assert len(captured) == 0


def test_token_user_is_loaded_with_role_and_organization(admin: User) -> None:
    _, secret = api_token_create(user=admin)
    token = api_token_authenticate(BearerCredentials(secret))
    assert token is not None
    with CaptureQueriesContext(connection) as captured:
        assert user_may_read_audit_logs(token.user)
    assert len(captured) == 0


def test_an_authenticated_token_carries_its_scopes(admin: User) -> None:
    _, secret = api_token_create(user=admin, scopes=[ApiTokenScope.AUDIT_WRITE])
    token = api_token_authenticate(BearerCredentials(secret))
    assert token is not None and token.scopes == ["audit:write"]
    assert token.has_scope(ApiTokenScope.AUDIT_WRITE) and not token.has_scope(ApiTokenScope.READ)


@pytest.mark.parametrize("scopes", [[], ["admin"], ["read", "audit:delete"]])
def test_a_token_needs_known_scopes(admin: User, scopes: list[str]) -> None:
    with pytest.raises(ValidationError):
        api_token_create(user=admin, scopes=scopes)
    assert not ApiToken.objects.filter(user=admin).exists()


@pytest.mark.parametrize("scopes", [[], ["admin"]])
def test_the_database_refuses_unknown_scopes(admin: User, scopes: list[str]) -> None:
    token, _ = api_token_create(user=admin)
    with pytest.raises(IntegrityError), transaction.atomic():
        ApiToken.objects.filter(pk=token.pk).update(scopes=scopes)


@pytest.mark.parametrize(
    ("header", "secret"),
    [(None, None), ("Bearer abc", "abc"), ("bearer   abc ", "abc"), ("BEARER abc", "abc")],
)
def test_bearer_header_parsing(header: str | None, secret: str | None) -> None:
    parsed = bearer_credentials(header)
    assert (parsed.secret if parsed else None) == secret


@pytest.mark.parametrize("header", ["", "Bearer", "Token abc", "Bearer a b", "Bearer " + "x" * 129])
def test_malformed_bearer_headers(header: str) -> None:
    with pytest.raises(MalformedAuthorization):
        bearer_credentials(header)
