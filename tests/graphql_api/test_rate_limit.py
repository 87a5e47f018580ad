"""Rate limits per API token and per client address, counted in PostgreSQL, against a real
uvicorn process with small limits."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from typing import Any

import pytest

from core.models import User
from core.services import api_token_create
from tests.graphql_api.conftest import serving_test_database
from tests.support import TRANSACTIONAL

pytestmark = TRANSACTIONAL

WINDOW, PER_TOKEN, PER_ADDRESS = 4, 5, 12
QUERY = json.dumps({"query": "{ __typename }"}).encode()


@pytest.fixture(scope="module")
def limited_server(django_db_setup: None) -> Iterator[str]:
    with serving_test_database(
        RATE_LIMIT_WINDOW_SECONDS=str(WINDOW),
        RATE_LIMIT_PER_TOKEN=str(PER_TOKEN),
        RATE_LIMIT_PER_ADDRESS=str(PER_ADDRESS),
    ) as url:
        yield url


def post(url: str, token: str | None) -> tuple[int, Message, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url + "/graphql/", data=QUERY, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read())


def fresh_window() -> None:
    """Wait for a window to begin, so that a burst of requests falls in one window."""
    time.sleep(WINDOW - time.time() % WINDOW + 0.05)


def test_a_token_over_its_limit_is_refused_until_the_window_ends(
    limited_server: str, admin: User
) -> None:
    token = api_token_create(user=admin)[1]
    other = api_token_create(user=admin)[1]
    fresh_window()
    assert [post(limited_server, token)[0] for _ in range(PER_TOKEN)] == [200] * PER_TOKEN
    status, headers, body = post(limited_server, token)
    assert status == 429
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert "token" in error["message"]
    assert 1 <= int(headers["Retry-After"]) == error["extensions"]["retryAfter"] <= WINDOW
    assert post(limited_server, other)[0] == 200  # another token has its own count
    time.sleep(int(headers["Retry-After"]))
    assert post(limited_server, token)[0] == 200


def test_an_address_over_its_limit_is_refused_whatever_the_token(limited_server: str) -> None:
    fresh_window()
    # Made-up tokens: refused with UNAUTHENTICATED, but counted first.
    statuses = [post(limited_server, f"alog_made-up-{n}")[0] for n in range(PER_ADDRESS)]
    assert statuses == [200] * PER_ADDRESS
    status, _, body = post(limited_server, None)
    assert status == 429 and "address" in body["errors"][0]["message"]


def test_websocket_handshakes_count_against_the_address(limited_server: str) -> None:
    from websockets.exceptions import InvalidStatus

    from tests.support import WebSocketSubscriber

    fresh_window()
    for _ in range(PER_ADDRESS):
        post(limited_server, None)
    with pytest.raises(InvalidStatus) as refused:
        WebSocketSubscriber(limited_server, "subscription { auditLogCreated { cursor } }")
    response = refused.value.response
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= WINDOW
    assert json.loads(response.body)["errors"][0]["extensions"]["code"] == "RATE_LIMITED"


def test_requests_are_added_to_postgresql_in_batches(db: None, settings: Any) -> None:
    """Within FLUSH_SECONDS a key's requests are counted in memory, and added with the next
    flush: one write for many requests, and the count in PostgreSQL is exact afterwards."""
    from django.db import connection as db_connection
    from django.test.utils import CaptureQueriesContext

    from core import rate_limit

    settings.RATE_LIMIT_PER_TOKEN, settings.RATE_LIMIT_PER_ADDRESS = 100, 0
    settings.RATE_LIMIT_WINDOW_SECONDS = 86_400  # the test must not cross a window
    secret = "alog_batched-" + str(time.time())
    with CaptureQueriesContext(db_connection) as captured:
        for _ in range(20):
            rate_limit.rate_limit_hit(token_secret=secret, address=None)
    writes = [q for q in captured.captured_queries if "INSERT INTO rate_limit_window" in q["sql"]]
    assert 1 <= len(writes) < 20
    time.sleep(rate_limit.FLUSH_SECONDS)
    rate_limit.rate_limit_hit(token_secret=secret, address=None)  # flushes the rest
    with db_connection.cursor() as cursor:
        cursor.execute(
            "SELECT sum(hits) FROM rate_limit_window WHERE key = %s",
            [rate_limit.token_key(secret)],
        )
        assert cursor.fetchone()[0] == 21
    for _ in range(100 - 21):
        rate_limit.rate_limit_hit(token_secret=secret, address=None)
    with pytest.raises(rate_limit.RateLimited):
        rate_limit.rate_limit_hit(token_secret=secret, address=None)
