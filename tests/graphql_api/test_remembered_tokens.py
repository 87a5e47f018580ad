"""Remembered tokens (core/authentication.py): a process that authenticated a token reads
its next pages without looking the token up again, and yet any change to the token, its
user, role or organization is seen by the very next request, in this process or another,
with the same code as before."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.models import ApiToken, Organization, Role, User
from core.services import api_token_create, api_token_revoke
from tests.graphql_api.conftest import GraphQLClient, error_codes, serving_test_database
from tests.support import TRANSACTIONAL

PAGE = "{ auditLogs(first: 2) { edges { node { id event } } } }"


@pytest.fixture(autouse=True)
def _compiled_reads_on() -> Iterator[None]:
    with override_settings(GRAPHQL_COMPILED_READS=True):
        yield


def remembered(gql: GraphQLClient) -> None:
    """Two page requests: the first looks the token up, the second reads it from memory."""
    for _ in range(2):
        assert error_codes(gql.post(PAGE)) == []
    with CaptureQueriesContext(connection) as captured:
        assert error_codes(gql.post(PAGE)) == []
    lookups = [q for q in captured.captured_queries if "core_apitoken" in q["sql"]]
    assert len(lookups) == 1 and '"audit_log"' in lookups[0]["sql"]  # inside the page's


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "code"),
    [
        ("revoke", "UNAUTHENTICATED"),
        ("expire", "UNAUTHENTICATED"),
        ("deactivate", "UNAUTHENTICATED"),
        ("demote", "FORBIDDEN"),
        ("free plan", "PAID_PLAN_REQUIRED"),
    ],
)
def test_a_change_to_a_remembered_caller_is_seen_by_the_next_request(
    admin: User, admin_gql: GraphQLClient, change: str, code: str
) -> None:
    remembered(admin_gql)
    token = ApiToken.objects.get(user=admin)
    org = admin.organization
    assert org is not None
    if change == "revoke":
        api_token_revoke(token=token)
    elif change == "expire":
        ApiToken.objects.filter(pk=token.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
    elif change == "deactivate":
        User.objects.filter(pk=admin.pk).update(is_active=False)
    elif change == "demote":
        member = Role.objects.get(organization=org, is_admin=False, name="Member")
        User.objects.filter(pk=admin.pk).update(role=member)
    else:
        Organization.objects.filter(pk=org.pk).update(plan="free")
    assert error_codes(admin_gql.post(PAGE)) == [code]
    assert error_codes(admin_gql.post(PAGE)) == [code]


@pytest.mark.django_db
def test_an_unchanged_caller_keeps_reading_and_its_use_is_still_recorded(
    admin: User, admin_gql: GraphQLClient
) -> None:
    remembered(admin_gql)
    token = ApiToken.objects.get(user=admin)
    first_use = token.last_used_at
    assert first_use is not None
    # As if the last use had been written long ago: the next request writes it again.
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first_use - timedelta(minutes=6))
    assert error_codes(admin_gql.post(PAGE)) == []
    assert ApiToken.objects.get(pk=token.pk).last_used_at > first_use  # type: ignore[operator]
    remembered(admin_gql)


@TRANSACTIONAL
def test_a_token_revoked_elsewhere_is_refused_by_the_next_request_of_a_server(
    admin: User, make_user: Callable[..., User]
) -> None:
    token, secret = api_token_create(user=admin, name="remembered")

    def post(url: str) -> dict[str, Any]:
        request = urllib.request.Request(
            url + "/graphql/",
            data=json.dumps({"query": PAGE}).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {secret}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body: dict[str, Any] = json.loads(response.read())
        return body

    # One worker: every request reaches the process that remembers the token.
    with serving_test_database(GRAPHQL_COMPILED_READS="1", WEB_CONCURRENCY="1") as url:
        for _ in range(3):
            assert error_codes(post(url)) == []
        api_token_revoke(token=token)  # committed, by another process
        assert error_codes(post(url)) == ["UNAUTHENTICATED"]


@pytest.mark.django_db
def test_a_remembered_caller_is_never_trusted_when_the_compiled_path_gives_up_early(
    admin: User, admin_gql: GraphQLClient
) -> None:
    # The first field's bad argument makes the compiled path hand the operation over
    # before any statement checked the remembered token: Strawberry must look it up.
    remembered(admin_gql)
    api_token_revoke(token=ApiToken.objects.get(user=admin))
    body = admin_gql.post(
        "{ a: auditLogs(first: 101) { edges { cursor } } b: auditLogs(first: 1) { edges { node { id } } } }"
    )
    assert body["data"] is None
    assert set(error_codes(body)) == {"UNAUTHENTICATED"}
