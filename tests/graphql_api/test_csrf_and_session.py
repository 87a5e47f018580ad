"""The browser path: sign-in page, GraphiQL, and CSRF for cookie-authenticated POSTs."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from audit.models import AuditLog
from core.models import User
from tests.graphql_api.conftest import GraphQLClient, data_of, error_codes

pytestmark = pytest.mark.django_db

PAGE = "{ auditLogs(first: 1) { totalCount } }"


def post(client: Client, headers: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
    response = client.post(
        "/graphql/",
        data=json.dumps({"query": PAGE}),
        content_type="application/json",
        headers=headers or {},
    )
    return response.status_code, json.loads(response.content)


@pytest.fixture
def browser(admin: User) -> Client:
    """A browser signed in through the sign-in page, with CSRF checks on."""
    client = Client(enforce_csrf_checks=True)
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    response = client.post(
        "/accounts/login/",
        {
            "username": admin.email,
            "password": "a-long-test-password",
            "csrfmiddlewaretoken": client.cookies["csrftoken"].value,
        },
    )
    assert response.status_code == 302 and response["Location"] == "/audit-logs/"
    return client


def test_signing_in_records_the_login(browser: Client, admin: User) -> None:
    login = AuditLog.objects.filter(actor=admin, event="USER_LOGIN").get()
    assert login.ip == "127.0.0.1"


def test_cookie_post_without_csrf_token_is_refused(browser: Client) -> None:
    status, body = post(browser)
    assert status == 403
    assert error_codes(body) == ["FORBIDDEN"]
    assert "CSRF" in body["errors"][0]["message"]  # type: ignore[index]


def test_cookie_post_with_csrf_token_is_served(browser: Client) -> None:
    status, body = post(browser, {"X-CSRFToken": browser.cookies["csrftoken"].value})
    assert status == 200
    assert data_of(body)["auditLogs"]["totalCount"] >= 1


def test_cross_site_post_with_the_session_cookie_is_refused(browser: Client) -> None:
    token = browser.cookies["csrftoken"].value
    status, body = post(
        browser,
        {
            "X-CSRFToken": token,
            "Origin": "https://evil.example",
            "Referer": "https://evil.example/",
        },
    )
    assert status == 403 and error_codes(body) == ["FORBIDDEN"]


def test_bearer_requests_need_no_csrf_token(admin_gql: GraphQLClient) -> None:
    client = Client(enforce_csrf_checks=True)
    status, body = post(client, {"Authorization": f"Bearer {admin_gql.token}"})
    assert status == 200 and "errors" not in body


def test_anonymous_post_is_unauthenticated_not_csrf(db: None) -> None:
    status, body = post(Client(enforce_csrf_checks=True))
    assert status == 200 and error_codes(body) == ["UNAUTHENTICATED"]


def test_graphiql_page_sets_the_csrf_cookie(db: None) -> None:
    client = Client(enforce_csrf_checks=True)
    page = client.get("/graphql/", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert b"graphiql" in page.content.lower()
    assert "csrftoken" in page.cookies


def test_queries_over_get_work_and_need_no_csrf(browser: Client) -> None:
    response = browser.get("/graphql/", {"query": PAGE}, headers={"Accept": "application/json"})
    assert response.status_code == 200
    assert data_of(json.loads(response.content))["auditLogs"]["totalCount"] >= 1


def test_signing_out(browser: Client) -> None:
    response = browser.post(
        "/accounts/logout/", {"csrfmiddlewaretoken": browser.cookies["csrftoken"].value}
    )
    assert response.status_code == 302
    status, body = post(browser, {"X-CSRFToken": browser.cookies["csrftoken"].value})
    assert status == 200 and error_codes(body) == ["UNAUTHENTICATED"]


def test_cross_site_form_post_with_a_json_body_is_refused(browser: Client) -> None:
    # The classic GraphQL CSRF: a page elsewhere submits a form whose body is a query.
    response = browser.post(
        "/graphql/",
        data=json.dumps({"query": PAGE}),
        content_type="application/x-www-form-urlencoded",
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert error_codes(json.loads(response.content)) == ["FORBIDDEN"]
