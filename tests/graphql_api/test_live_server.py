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
from tests.support import TRANSACTIONAL

pytestmark = TRANSACTIONAL

README_QUERY = "{ auditLogs(first: 50) { totalCount edges { node { event time user { email } ip details } } } }"


def call(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    assert url.startswith("http://127.0.0.1:")
    request = urllib.request.Request(url + "/graphql/", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
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


def test_browser_session_through_uvicorn(live_server_url: str, admin: User, settings: Any) -> None:
    # Sign in on the page, then query with the session cookie: the middleware hooks run
    # inline on the event loop under ASGI, and the session is saved in a thread.
    import http.cookiejar
    import re
    import urllib.parse

    from django.conf import global_settings

    # The server checks passwords with the production hashers, not the tests' fast one.
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS
    admin.set_password("a-long-test-password")
    admin.save(update_fields=["password"])

    class NoRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None  # report the redirect itself

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirects)
    login = live_server_url + "/accounts/login/"
    page = opener.open(login, timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None
    form = urllib.parse.urlencode(
        {
            "username": admin.email,
            "password": "a-long-test-password",
            "csrfmiddlewaretoken": token.group(1),
        }
    ).encode()
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(
            urllib.request.Request(login, data=form, headers={"Referer": login}), timeout=10
        )
    assert redirect.value.code == 302 and redirect.value.headers["Location"] == "/audit-logs/"
    csrf = next(c.value for c in jar if c.name == "csrftoken")
    assert csrf is not None
    query = json.dumps({"query": "{ auditLogs(first: 1) { totalCount } }"}).encode()

    def ask(headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            live_server_url + "/graphql/",
            data=query,
            headers={"Content-Type": "application/json", **headers},
        )
        try:
            with opener.open(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    status, body = ask({"X-CSRFToken": csrf})
    assert status == 200 and body["data"]["auditLogs"]["totalCount"] >= 1
    status, body = ask({})
    assert status == 403 and body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


def test_the_same_batch_sent_concurrently_is_recorded_once(
    live_server_url: str, admin: User
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from core.models import ApiTokenScope

    _, secret = api_token_create(user=admin, scopes=(ApiTokenScope.AUDIT_WRITE,))
    batch = [
        {
            "idempotencyKey": f"concurrent-{n}",
            "event": "RESOURCE_UPDATED",
            "details": {"resource": "vm-1", "changes": {"n": {"from": n, "to": n + 1}}},
        }
        for n in range(200)
    ]
    body = json.dumps(
        {
            "query": "mutation($e: [AuditEventInput!]!) { recordAuditEvents(events: $e) { events { id created } } }",
            "variables": {"e": batch},
        }
    ).encode()
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda _: call(live_server_url, body, headers), range(4)))
    results = []
    for status, reply in replies:
        assert status == 200 and "errors" not in reply, reply
        results.append(reply["data"]["recordAuditEvents"]["events"])
    ids = [[e["id"] for e in result] for result in results]
    assert all(i == ids[0] for i in ids) and len(set(ids[0])) == 200
    # Every event was created by exactly one of the calls.
    assert [sum(r[n]["created"] for r in results) for n in range(200)] == [1] * 200
    stored = AuditLog.objects.filter(organization=admin.organization, idempotency_key__isnull=False)
    assert stored.count() == 200
