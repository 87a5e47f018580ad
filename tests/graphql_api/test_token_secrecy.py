"""API token secrets never reach the logs, whatever happens to the request."""

from __future__ import annotations

import logging

import pytest
from django.test import Client

from core.models import User
from core.services import api_token_create, api_token_revoke
from tests.graphql_api.conftest import GraphQLClient

pytestmark = pytest.mark.django_db


def test_no_log_record_holds_a_token_secret(admin: User, caplog: pytest.LogCaptureFixture) -> None:
    good = api_token_create(user=admin)[1]
    revoked_token, revoked = api_token_create(user=admin)
    api_token_revoke(token=revoked_token)
    made_up = "alog_" + "x" * 43
    requests = [
        (good, "{ auditLogs(first: 1) { totalCount } }"),
        (good, "{ auditLogs(first: 500) { totalCount } }"),  # refused: BAD_USER_INPUT
        (good, "mutation { recordAuditEvents(events: []) { events { id } } }"),  # FORBIDDEN
        (good, "{ nope"),  # a syntax error
        (revoked, "{ auditLogs { totalCount } }"),
        (made_up, "{ auditLogs { totalCount } }"),
    ]
    with caplog.at_level(logging.DEBUG):
        for secret, query in requests:
            GraphQLClient(Client(), token=secret).post(query)
        Client().post(
            "/graphql/",
            data="{not json",
            content_type="application/json",
            headers={"Authorization": f"Bearer {good}"},
        )
    assert caplog.records, "the requests were expected to log something"
    logged = "\n".join(
        f"{r.getMessage()} {r.exc_text or ''} {getattr(r, 'request', '')}" for r in caplog.records
    )
    for secret in (good, revoked, made_up):
        assert secret not in logged
        assert secret[5:20] not in logged  # not even a part of it
