"""Django's middleware with inline hooks (core/middleware.py), exercised through the ASGI
handler: sessions are saved, messages are stored, CSRF is checked, headers are set."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from core.models import User

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(db: None) -> User:
    return User.objects.create_superuser("ops@example.test", "an-operator-password")


def run(call: Any, *args: Any, **kwargs: Any) -> Any:
    return async_to_sync(call)(*args, **kwargs)


def test_admin_flow_under_asgi_saves_the_session_and_shows_messages(
    operator: User, admin: User
) -> None:
    client = AsyncClient()
    page = run(client.get, "/admin/login/")
    assert page.status_code == 200
    assert page["X-Frame-Options"] == "DENY" and page["X-Content-Type-Options"] == "nosniff"
    signed_in = run(
        client.post,
        "/admin/login/?next=/admin/",
        {"username": operator.email, "password": "an-operator-password"},
    )
    assert signed_in.status_code == 302  # the session was saved: the next request is signed in
    created = run(client.post, "/admin/core/apitoken/add/", {"user": admin.pk, "name": "asgi"})
    assert created.status_code == 302
    shown = run(client.get, created["Location"])
    # The message with the new secret survived the redirect (stored, then read back).
    assert "will not be shown again: alog_" in shown.content.decode()
    again = run(client.get, created["Location"])
    assert "will not be shown again" not in again.content.decode()


def test_graphql_under_asgi_checks_csrf_for_the_session(admin: User) -> None:
    client = AsyncClient(enforce_csrf_checks=True)
    client.force_login(admin)
    body = json.dumps({"query": "{ auditLogs(first: 1) { totalCount } }"})
    refused = run(client.post, "/graphql/", body, content_type="application/json")
    assert refused.status_code == 403
    run(client.get, "/graphql/", headers={"Accept": "text/html"})  # sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    served = run(
        client.post,
        "/graphql/",
        body,
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert served.status_code == 200
    assert json.loads(served.content)["data"]["auditLogs"]["totalCount"] >= 1
