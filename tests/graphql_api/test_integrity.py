"""auditLogIntegrity: what the latest verification found, for paid administrators of the
organization only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from audit.events import AuditEventType as E
from audit.services import audit_log_record, audit_log_seal, audit_log_verify
from core.models import Organization, User
from tests.graphql_api.conftest import GraphQLClient, data_of, error_codes
from tests.support import TRANSACTIONAL, as_database_owner

pytestmark = TRANSACTIONAL

QUERY = """{ auditLogIntegrity {
  status verifiedAt entriesVerified entriesNotYetSealed problem
  lastVerifiedCheckpoint { sequence sealedAt entries }
  newestCheckpoint { sequence entries }
} }"""


def _integrity(gql: GraphQLClient, token: str) -> dict[str, Any]:
    result: dict[str, Any] = data_of(gql.post(QUERY, token=token))["auditLogIntegrity"]
    return result


def test_it_reports_never_verified_then_verified_then_failed(
    gql: GraphQLClient, admin: User, token_for: Callable[[User], str]
) -> None:
    org = admin.organization
    assert org is not None
    token = token_for(admin)
    assert _integrity(gql, token) == {
        "status": "NOT_VERIFIED",
        "verifiedAt": None,
        "entriesVerified": 0,
        "entriesNotYetSealed": 0,
        "problem": None,
        "lastVerifiedCheckpoint": None,
        "newestCheckpoint": None,
    }
    entries = [audit_log_record(organization=org, event=E.ROLE_UPDATED) for _ in range(5)]
    audit_log_seal(organization=org, block=3)
    total = audit_log_verify(organization=org).entries
    found = _integrity(gql, token)
    assert found["status"] == "VERIFIED" and found["problem"] is None
    assert found["entriesVerified"] == total and found["entriesNotYetSealed"] == 0
    checkpoint = found["lastVerifiedCheckpoint"]
    assert checkpoint["sequence"] == found["newestCheckpoint"]["sequence"] == -(-total // 3)
    assert checkpoint["entries"] == total - 3 * (checkpoint["sequence"] - 1)

    as_database_owner(("DELETE FROM audit_log WHERE id = %s", [entries[-1].pk]))
    audit_log_verify(organization=org)
    found = _integrity(gql, token)
    assert found["status"] == "FAILED"
    assert f"entry {entries[-1].pk} is missing" in str(found["problem"])
    assert found["lastVerifiedCheckpoint"]["sequence"] < found["newestCheckpoint"]["sequence"]


@pytest.mark.parametrize(
    ("who", "code"),
    [
        ("member", "FORBIDDEN"),
        ("free admin", "PAID_PLAN_REQUIRED"),
        ("anonymous", "UNAUTHENTICATED"),
    ],
)
def test_only_paid_administrators_may_read_it(
    gql: GraphQLClient,
    make_org: Callable[..., Organization],
    make_user: Callable[..., User],
    token_for: Callable[[User], str],
    who: str,
    code: str,
) -> None:
    paid, free = make_org("paid"), make_org("free")
    caller = {
        "member": lambda: make_user(paid),
        "free admin": lambda: make_user(free, admin=True),
        "anonymous": lambda: None,
    }[who]()
    body = gql.post(QUERY, token=token_for(caller) if caller else None)
    assert error_codes(body) == [code] and body["data"] is None


def test_another_organizations_verification_is_not_seen(
    gql: GraphQLClient,
    admin: User,
    make_org: Callable[..., Organization],
    token_for: Callable[[User], str],
) -> None:
    other = make_org("paid")
    audit_log_seal(organization=other)
    audit_log_verify(organization=other)
    assert _integrity(gql, token_for(admin))["status"] == "NOT_VERIFIED"
