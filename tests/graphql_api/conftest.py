"""Fixtures for the GraphQL API: a client that posts GraphQL over HTTP to the real view
(Django's test client runs the ASGI-style async view and its middleware), and
credentials for every kind of caller."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from core.models import Organization, User
from core.services import api_token_create


@dataclass
class GraphQLClient:
    client: Client
    token: str | None = None

    def post(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        expect_status: int = 200,
    ) -> dict[str, Any]:
        extra = dict(headers or {})
        bearer = token if token is not None else self.token
        if bearer is not None:
            extra["Authorization"] = f"Bearer {bearer}"
        response = self.client.post(
            "/graphql/",
            data=json.dumps({"query": query, "variables": variables or {}}),
            content_type="application/json",
            headers=extra,
        )
        assert response.status_code == expect_status, response.content
        body: dict[str, Any] = json.loads(response.content)
        return body


def data_of(body: dict[str, Any]) -> dict[str, Any]:
    """The data of a response that must have no errors."""
    assert "errors" not in body, body.get("errors")
    data: dict[str, Any] = body["data"]
    return data


def error_codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]


@pytest.fixture
def gql(db: None) -> GraphQLClient:
    return GraphQLClient(Client())


@pytest.fixture
def token_for() -> Callable[[User], str]:
    def make(user: User) -> str:
        return api_token_create(user=user, name="test")[1]

    return make


@pytest.fixture
def admin_gql(admin: User, token_for: Callable[[User], str]) -> GraphQLClient:
    """A client authenticated as a Paid-plan organization's administrator (by token)."""
    return GraphQLClient(Client(), token=token_for(admin))


@pytest.fixture
def other_paid_org(make_org: Callable[..., Organization]) -> Organization:
    return make_org("paid")


@contextmanager
def serving_test_database(**env: str) -> Iterator[str]:
    """A real uvicorn process (``manage.py serve``, production settings, plus ``env``)
    serving the test database; its base URL. Tests that use it must commit their data
    (``transaction=True``)."""
    from django.db import connection

    from tests.support import database_url, free_port, start_serve, stop_serve

    port = free_port()
    server = start_serve(port, {"DATABASE_URL": database_url(connection.settings_dict), **env})
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_serve(server)


@pytest.fixture(scope="module")
def live_server_url(django_db_setup: None) -> Iterator[str]:
    # Plain HTTP on loopback: cookies without the Secure flag, or a browser would not send
    # them back.
    with serving_test_database(SECURE_COOKIES="0") as url:
        yield url
