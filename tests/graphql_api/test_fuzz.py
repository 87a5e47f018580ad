"""Fuzzing: schemathesis generates GraphQL operations from the served schema (every query
and mutation field, with arguments valid and not) and sends them to a real uvicorn process
with a token that may read and write. No answer may be a 500, lack a code on an error, or
show a stack trace or SQL.

Bounded for CI: FUZZ_EXAMPLES examples per operation (default 60; about 5 seconds).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from audit.events import AuditEventType as E
from audit.services import audit_log_record
from core.models import ApiTokenScope, User
from core.services import api_token_create
from tests.graphql_api.conftest import serving_test_database
from tests.support import TRANSACTIONAL

pytestmark = TRANSACTIONAL

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
LEAKS = ("Traceback", 'File "', "psycopg", "django.", "SELECT ", "INSERT ", "audit_log_")


@pytest.fixture(scope="module")
def fuzz_server(django_db_setup: None) -> Iterator[str]:
    with serving_test_database() as url:
        yield url


@pytest.fixture
def token(admin: User) -> str:
    assert admin.organization is not None
    for n in range(30):
        audit_log_record(
            organization=admin.organization, event=E.ROLE_UPDATED, actor=admin, details={"n": n}
        )
    scopes = (ApiTokenScope.READ, ApiTokenScope.AUDIT_WRITE)
    return api_token_create(user=admin, name="fuzz", scopes=scopes)[1]


def test_no_input_breaks_the_api(fuzz_server: str, token: str) -> None:
    schema = schemathesis.graphql.from_url(fuzz_server + "/graphql/")
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    labels = sorted(operation.label for operation in operations)
    # Subscriptions are served over WebSocket and SSE, not by a plain POST.
    assert {"Query.auditLogs", "Mutation.recordAuditEvents"} <= set(labels), labels
    calls: dict[str, int] = {}
    for operation in operations:
        if not operation.label.startswith("Subscription."):
            fuzz(operation, token, calls)
    print(f"fuzzed: {calls}")
    assert all(count >= 1 for count in calls.values()) and len(calls) >= 3


def fuzz(operation: Any, token: str, calls: dict[str, int]) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        # No shrinking: each call is an HTTP request, and a failure must stay quick to
        # report (the failing case is printed as found).
        phases=[Phase.explicit, Phase.generate],
    )
    def run(case: Any) -> None:
        response = case.call(headers={"Authorization": f"Bearer {token}"}, timeout=30)
        calls[operation.label] = calls.get(operation.label, 0) + 1
        sent = response.request.body or b""
        check_response(
            response.status_code, response.text, sent if isinstance(sent, str) else sent.decode()
        )

    run()


def check_response(status: int, text: str, sent: str) -> None:
    # Every message names the request (schemathesis's case does not print its body).
    request = f"\nsent: {sent[:4000]}\ngot: {text[:4000]}"
    assert status < 500, request
    # What the client sent may come back in a message (a bad value is quoted); anything
    # else that looks like code, a trace or SQL came from the server.
    assert not any(leak in text and leak not in sent for leak in LEAKS), request
    body = json.loads(text)
    for error in body.get("errors") or []:
        assert error.get("extensions", {}).get("code"), request
        assert error["extensions"]["code"] != "INTERNAL_SERVER_ERROR", request
    if status != 200:
        assert body.get("errors"), request
