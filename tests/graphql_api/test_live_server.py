"""The API over real HTTP: uvicorn running `manage.py serve` with production settings,
called the way the README's curl example does."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from audit.events import AuditEventType as E
from audit.models import AuditLog
from audit.services import audit_log_record
from core.models import User
from core.services import api_token_create

pytestmark = pytest.mark.django_db(transaction=True)

README_QUERY = "{ auditLogs(first: 50) { totalCount edges { node { event time user { email } ip details } } } }"


def call(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    assert url.startswith("http://127.0.0.1:")
    request = urllib.request.Request(  # noqa: S310 - the local test server
        url + "/graphql/", data=body, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - local test server
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_bearer_token_reads_the_newest_entries(live_server_url: str, admin: User) -> None:
    org = admin.organization
    assert org is not None
    for n in range(60):
        audit_log_record(organization=org, event=E.RESOURCE_CREATED, actor=admin, details={"n": n})
    _, secret = api_token_create(user=admin)
    status, body = call(
        live_server_url,
        json.dumps({"query": README_QUERY}).encode(),
        # Exactly what `curl -H "Authorization: Bearer $TOKEN" -d '{...}'` sends: JSON
        # labelled as a form.
        {"Authorization": f"Bearer {secret}", "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 200, body
    connection = body["data"]["auditLogs"]
    newest = list(AuditLog.objects.filter(organization=org).order_by("-time", "-id")[:50])
    assert connection["totalCount"] == AuditLog.objects.filter(organization=org).count()
    assert [e["node"]["details"] for e in connection["edges"]] == [e.details for e in newest]
    assert connection["edges"][0]["node"]["user"] == {"email": admin.email}


def test_errors_over_http_are_coded(live_server_url: str, db: None) -> None:
    status, body = call(
        live_server_url,
        json.dumps({"query": README_QUERY}).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200 and body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    status, body = call(live_server_url, b"{oops", {"Content-Type": "application/json"})
    assert status == 400 and body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
