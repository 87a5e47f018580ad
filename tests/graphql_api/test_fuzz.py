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
# No shrinking: each call is an HTTP request, and a failure must stay quick to report (the
# failing case is printed as found).
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)
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
    @FUZZ_SETTINGS
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


# --- beyond schema-valid documents: whatever a socket can carry --------------------------------

RECORD = (
    "mutation($e: [AuditEventInput!]!) { recordAuditEvents(events: $e) { events { id created } } }"
)
PAGE = (
    "query($f: AuditLogFilter) { auditLogs(first: 3, filter: $f) { totalCount edges { cursor } } }"
)


def _hostile_strategies() -> dict[str, Any]:
    from hypothesis import strategies as st

    # Every code point, lone surrogates and non-characters included, with NUL favoured.
    text = st.text(st.characters(blacklist_categories=()), max_size=40) | st.sampled_from(
        ["\x00", "a\x00b", "\ud800", "x\udfffy", "\ufffe", "\uffff", "\U0010ffff", "+23:59"]
    )
    numbers = (
        st.integers(min_value=-(10**30), max_value=10**30)
        | st.floats()
        | st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, 2**63, -(2**63) - 1])
    )
    scalars = st.none() | st.booleans() | numbers | text
    json_values = st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4)
        ),
        max_leaves=12,
    )
    times = text | st.sampled_from(
        [
            "2026-01-01T00:00:00+23:59",
            "2026-01-01T00:00:00-16:00",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59.999999-23:59",
            "2026-01-01T00:00:00\x00",
        ]
    )
    event = st.fixed_dictionaries(
        {"idempotencyKey": text, "event": st.sampled_from(["RESOURCE_CREATED", "USER_LOGIN"])},
        optional={"userEmail": text, "ip": text, "details": json_values, "time": times},
    )
    record = st.builds(
        lambda events: {"query": RECORD, "variables": {"e": events}},
        st.lists(event, min_size=1, max_size=3),
    )
    page = st.builds(
        lambda f: {"query": PAGE, "variables": {"f": f}},
        st.fixed_dictionaries(
            {}, optional={"userEmail": text, "from": times, "to": times, "eventType": text}
        ),
    )
    documents = st.builds(
        lambda query, variables: {"query": query, "variables": variables},
        text | json_values,
        json_values,
    )
    return {
        "bytes": st.binary(max_size=200),
        "json": json_values,
        "record": record,
        "page": page,
        "document": documents,
    }


def _encode(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    # Lone surrogates go out as JSON escapes, as any client library would send them.
    return json.dumps(value, allow_nan=True).encode()


@pytest.mark.parametrize("kind", ["bytes", "json", "record", "page", "document"])
def test_no_raw_body_breaks_the_api(fuzz_server: str, token: str, admin: User, kind: str) -> None:
    """Never a 5xx, an uncoded or internal error, or a partial write, whatever the body."""
    import requests

    from audit.models import AuditLog

    strategy = _hostile_strategies()[kind]
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    ingested = AuditLog.objects.filter(
        organization=admin.organization, idempotency_key__isnull=False
    )
    sent_count = [0]

    @given(value=strategy)
    @FUZZ_SETTINGS
    def run(value: Any) -> None:
        body = _encode(value)
        sent = body.decode("utf-8", errors="replace")
        before = ingested.count()
        try:
            response = session.post(
                fuzz_server + "/graphql/", data=body, headers=headers, timeout=30
            )
        except requests.Timeout:
            raise AssertionError(f"no answer within 30 s\nsent: {sent[:4000]!r}") from None
        sent_count[0] += 1
        check_response(response.status_code, response.text, sent)
        answer = json.loads(response.text)
        if answer.get("errors"):  # all or nothing
            assert ingested.count() == before, f"partial write\nsent: {sent[:2000]}"

    run()
    assert sent_count[0] >= min(EXAMPLES, 10)
