"""Unexpected failures reach clients as INTERNAL_SERVER_ERROR with a generic message; the
details (exception, SQL) go to the server log only."""

from __future__ import annotations

import json
import logging
from typing import Any

import psycopg
import pytest

from tests.graphql_api.conftest import GraphQLClient, error_codes

pytestmark = pytest.mark.django_db

PAGE = "{ auditLogs(first: 3) { totalCount edges { node { id } } } }"
SECRET_DETAIL = 'relation "audit_log" has no column "secret_internal_name" in SELECT'


def _explode(**kwargs: Any) -> Any:
    raise psycopg.errors.UndefinedColumn(SECRET_DETAIL)


def test_a_failing_resolver_is_masked_and_logged(
    admin_gql: GraphQLClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Fault injection: the page read fails the way a broken query would.
    monkeypatch.setattr("graphql_api.queries.audit_log_page", _explode)
    with caplog.at_level(logging.ERROR, logger="graphql_api.errors"):
        body = admin_gql.post(PAGE)
    assert error_codes(body) == ["INTERNAL_SERVER_ERROR"]
    assert body["data"] is None
    text = json.dumps(body)
    assert "secret_internal_name" not in text and "Traceback" not in text
    assert "psycopg" not in text
    assert any("secret_internal_name" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_a_failure_outside_execution_is_a_coded_500(
    admin_gql: GraphQLClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken_context(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(SECRET_DETAIL)

    monkeypatch.setattr("graphql_api.views.AuditGraphQLView.get_context", broken_context)
    with caplog.at_level(logging.ERROR, logger="graphql_api.views"):
        body = admin_gql.post(PAGE, expect_status=500)
    assert error_codes(body) == ["INTERNAL_SERVER_ERROR"]
    assert "secret_internal_name" not in json.dumps(body)
    assert any(r.exc_info for r in caplog.records)


def test_client_errors_are_not_logged_as_server_errors(
    gql: GraphQLClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        body = gql.post(PAGE)
    assert error_codes(body) == ["UNAUTHENTICATED"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
