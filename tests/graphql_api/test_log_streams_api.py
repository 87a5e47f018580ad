"""The log streams' GraphQL API: who may read and manage them (the permission matrix), each
organization seeing only its own, bad input refused with a code, the secret shown once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from audit.models import AuditLog
from core.models import ApiTokenScope, AuditLogStream, Organization, User
from core.services import api_token_create
from tests.graphql_api.conftest import GraphQLClient, data_of, error_codes

pytestmark = pytest.mark.django_db

STREAMS = """{ auditLogStreams { id name url format enabled state credentialHeader
  filter { eventTypes userEmail }
  deliveredCount lastDeliveredId lastDeliveredAt lagEvents lagSeconds failures lastError
  nextRetryAt pausedReason createdAt } }"""
CREATE = """mutation($input: AuditLogStreamInput!) {
  createAuditLogStream(input: $input) { secret stream { id name url format state
    filter { eventTypes userEmail } } } }"""
UPDATE = """mutation($id: ID!, $changes: AuditLogStreamChanges!) {
  updateAuditLogStream(id: $id, changes: $changes) { secret stream { id name enabled state } } }"""
DELETE = "mutation($id: ID!) { deleteAuditLogStream(id: $id) }"
TEST = "mutation($id: ID!) { testAuditLogStream(id: $id) { ok status error } }"
NEW = {
    "name": "splunk",
    "url": "https://siem.example.com/services/collector",
    "format": "SPLUNK_HEC",
    "filter": {"eventTypes": ["USER_LOGIN", "ROLE_CREATED"], "userEmail": "acme"},
    "credential": {"header": "Authorization", "value": "Splunk hec-token-123"},
}


def _client(user: User | None = None, *scopes: str, session: bool = False) -> GraphQLClient:
    if user is None:
        return GraphQLClient(Client())
    if session:
        browser = Client()
        browser.force_login(user)
        return GraphQLClient(browser)
    token = api_token_create(user=user, scopes=scopes or (ApiTokenScope.READ,))[1]
    return GraphQLClient(Client(), token=token)


@pytest.fixture
def callers(
    admin: User, make_user: Callable[..., User], make_org: Callable[..., Organization]
) -> dict[str, GraphQLClient]:
    assert admin.organization is not None
    return {
        "anonymous": _client(),
        "member": _client(make_user(admin.organization), ApiTokenScope.STREAMS_MANAGE),
        "free admin": _client(
            make_user(make_org("free"), admin=True), ApiTokenScope.STREAMS_MANAGE
        ),
        "read token": _client(admin),
        "write token": _client(admin, ApiTokenScope.AUDIT_WRITE),
        "manage token": _client(admin, ApiTokenScope.STREAMS_MANAGE),
        "session": _client(admin, session=True),
    }


MATRIX = {
    # caller: (reads auditLogStreams, manages streams)
    "anonymous": ("UNAUTHENTICATED", "UNAUTHENTICATED"),
    "member": ("FORBIDDEN", "FORBIDDEN"),
    "free admin": ("PAID_PLAN_REQUIRED", "PAID_PLAN_REQUIRED"),
    "read token": (None, "FORBIDDEN"),
    "write token": (None, "FORBIDDEN"),
    "manage token": (None, None),
    "session": (None, None),
}


@pytest.mark.parametrize("who", list(MATRIX))
def test_who_may_read_and_manage_streams(
    who: str, callers: dict[str, GraphQLClient], admin: User
) -> None:
    client = callers[who]
    reads, manages = MATRIX[who]
    body = client.post(STREAMS)
    assert error_codes(body) == ([reads] if reads else [])
    body = client.post(CREATE, {"input": NEW})
    assert error_codes(body) == ([manages] if manages else [])
    created = AuditLogStream.objects.filter(organization=admin.organization).count()
    assert created == (1 if manages is None else 0)
    if manages is None:
        stream_id = data_of(body)["createAuditLogStream"]["stream"]["id"]
        for document, variables in [
            (UPDATE, {"id": stream_id, "changes": {"enabled": False}}),
            (DELETE, {"id": stream_id}),
        ]:
            assert "errors" not in client.post(document, variables)


def test_create_shows_the_secret_once_and_the_list_never(
    callers: dict[str, GraphQLClient], admin: User
) -> None:
    client = callers["session"]
    created = data_of(client.post(CREATE, {"input": NEW}))["createAuditLogStream"]
    secret = created["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert created["stream"]["format"] == "SPLUNK_HEC" and created["stream"]["state"] == "ACTIVE"
    assert created["stream"]["filter"] == {
        "eventTypes": ["ROLE_CREATED", "USER_LOGIN"],
        "userEmail": "acme",
    }
    (listed,) = data_of(client.post(STREAMS))["auditLogStreams"]
    assert secret not in str(listed) and "hec-token-123" not in str(listed)
    assert listed["credentialHeader"] == "Authorization"
    assert (
        listed["lagEvents"] == 0 and listed["deliveredCount"] == 0 and listed["lastError"] is None
    )
    rotated = data_of(client.post(UPDATE, {"id": listed["id"], "changes": {"rotateSecret": True}}))[
        "updateAuditLogStream"
    ]
    assert rotated["secret"] not in (None, secret)
    renamed = data_of(client.post(UPDATE, {"id": listed["id"], "changes": {"name": "x"}}))
    assert renamed["updateAuditLogStream"]["secret"] is None
    entries = AuditLog.objects.filter(
        organization=admin.organization, event__startswith="AUDIT_LOG_STREAM"
    )
    logged = str(list(entries.values_list("details", flat=True)))
    assert secret not in logged and "hec-token-123" not in logged
    removed = client.post(UPDATE, {"id": listed["id"], "changes": {"removeCredential": True}})
    assert "errors" not in removed
    (listed,) = data_of(client.post(STREAMS))["auditLogStreams"]
    assert listed["credentialHeader"] is None
    both = {"removeCredential": True, "credential": {"value": "x"}}
    assert error_codes(client.post(UPDATE, {"id": listed["id"], "changes": both})) == [
        "BAD_USER_INPUT"
    ]


def test_lag_counts_what_the_destination_has_not_acknowledged(
    callers: dict[str, GraphQLClient], admin: User
) -> None:
    from audit.services import audit_log_record

    client = callers["session"]
    data_of(client.post(CREATE, {"input": {**NEW, "filter": {"eventType": "ROLE_CREATED"}}}))
    assert admin.organization is not None
    for _ in range(3):
        audit_log_record(
            organization=admin.organization, event="ROLE_CREATED", details={"role": {"name": "r"}}
        )
    audit_log_record(organization=admin.organization, event="USER_LOGIN", details={"method": "sso"})
    (listed,) = data_of(client.post(STREAMS))["auditLogStreams"]
    assert listed["lagEvents"] == 3 and listed["lagSeconds"] >= 0


def test_another_organizations_stream_is_not_found(
    callers: dict[str, GraphQLClient], other_paid_org: Organization, make_user: Callable[..., User]
) -> None:
    outsider = _client(make_user(other_paid_org, admin=True), session=True)
    stream_id = data_of(outsider.post(CREATE, {"input": NEW}))["createAuditLogStream"]["stream"][
        "id"
    ]
    client = callers["session"]
    assert data_of(client.post(STREAMS))["auditLogStreams"] == []
    for document, variables in [
        (UPDATE, {"id": stream_id, "changes": {"enabled": False}}),
        (DELETE, {"id": stream_id}),
        (TEST, {"id": stream_id}),
        (DELETE, {"id": "not-an-id"}),
    ]:
        assert error_codes(client.post(document, variables)) == ["BAD_USER_INPUT"]
    assert AuditLogStream.objects.get(organization=other_paid_org).enabled


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"url": "http://siem.example.com/"}, "must start with https://"),
        ({"url": "https://u:p@siem.example.com/"}, "must not hold credentials"),
        ({"name": " "}, "needs a name"),
        ({"name": "x" * 101}, "at most 100"),
        ({"url": "https://siem.example.com/\u0000"}, "NUL"),
        ({"filter": {"eventTypes": []}}, "at least one event type"),
    ],
)
def test_bad_input_is_refused_with_a_code(
    callers: dict[str, GraphQLClient], changes: dict[str, Any], message: str
) -> None:
    body = callers["session"].post(CREATE, {"input": {**NEW, **changes}})
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert message in body["errors"][0]["message"]
    assert AuditLogStream.objects.count() == 0
