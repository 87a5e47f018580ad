"""The direct route (graphql_api/direct.py) against Django's handler: the same requests,
sent in-process to the ASGI application (core/asgi.py) and to Django's handler alone,
get the same status, the same headers and the same body, whether the route answers them
or hands them on. And a request is counted once against the rate limits either way."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.handlers.asgi import ASGIHandler
from django.core.signals import request_started
from django.test import override_settings

from core import asgi
from core.models import Organization, User
from core.services import api_token_create
from graphql_api import compiled, direct
from tests.support import TRANSACTIONAL

pytestmark = TRANSACTIONAL


@pytest.fixture(autouse=True)
def _compiled_reads_on() -> Iterator[None]:
    # Even in a run with them off (GRAPHQL_COMPILED_READS=0): the route is what is tested.
    with override_settings(GRAPHQL_COMPILED_READS=True):
        yield


PAGE = """query Page($first: Int, $filter: AuditLogFilter) { auditLogs(first: $first, filter: $filter) {
  totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id event time ip details user { email } } }
} }"""

Response = tuple[int, list[tuple[str, str]], Any]


def call(
    app: Callable[..., Any],
    body: bytes,
    headers: dict[str, str],
    *,
    scheme: str = "http",
    method: str = "POST",
    chunks: int = 1,
) -> Response:
    """One request to an ASGI application, in-process; status, headers (sorted, names in
    lower case) and the body as JSON pairs (or text, when it is not JSON)."""
    size = max(1, -(-len(body) // chunks))
    parts = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    messages = [
        {"type": "http.request", "body": part, "more_body": n < len(parts) - 1}
        for n, part in enumerate(parts)
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": "/graphql/",
        "raw_path": b"/graphql/",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-length", str(len(body)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in headers.items()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(30)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = sent[0]
    content = b"".join(m.get("body", b"") for m in sent[1:])
    names = sorted((k.decode().lower(), v.decode()) for k, v in start["headers"])
    try:
        parsed: Any = json.loads(content, object_pairs_hook=list)
    except ValueError:
        parsed = content.decode(errors="replace")
    return start["status"], names, parsed


def both(body: bytes, headers: dict[str, str], **options: Any) -> tuple[Response, Response, bool]:
    """The response through the direct route and through Django, and whether the route
    answered by itself (Django's request_started did not fire). Django's handler is made
    afresh, from the settings of the moment, as at a server's start."""
    started: list[Any] = []
    handler = ASGIHandler()

    def note(**_kwargs: Any) -> None:
        started.append(1)

    async def routed_app(scope: Any, receive: Any, send: Any) -> None:
        await direct.serve(scope, receive, send, handler)

    request_started.connect(note)
    try:
        routed = call(routed_app, body, headers, **options)
        direct_only = not started
        through_django = call(handler, body, headers, **options)
    finally:
        request_started.disconnect(note)
    return routed, through_django, direct_only


def gql(query: str, variables: dict[str, Any] | None = None) -> bytes:
    return json.dumps({"query": query, "variables": variables or {}}).encode()


@pytest.fixture
def tokens(
    admin: User, make_org: Callable[..., Organization], make_user: Callable[..., User]
) -> dict[str, str]:
    from audit.events import AuditEventType as E
    from audit.services import audit_log_record

    org = admin.organization
    assert org is not None
    for n in range(5):
        audit_log_record(
            organization=org,
            event=E.USER_LOGIN,
            actor=admin,
            ip=f"192.0.2.{n}",
            details={"n": n, "é": "ü"},
        )
    free_admin = make_user(make_org("free"), admin=True)
    return {
        "admin": api_token_create(user=admin, name="t")[1],
        "free": api_token_create(user=free_admin, name="t")[1],
    }


def bearer(token: str, **more: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "Authorization": f"Bearer {token}", **more}


def test_the_route_is_on_with_the_expected_middleware() -> None:
    assert direct.enabled()


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("{ __typename }", None),
        (PAGE, {"first": 3}),
        (PAGE, {"first": 0, "filter": {"eventType": "USER_LOGIN"}}),
        ("{ auditEventTypes { value description } auditLogIntegrity { status } }", None),
    ],
)
def test_what_the_route_answers_is_what_django_answers(
    tokens: dict[str, str], query: str, variables: dict[str, Any] | None
) -> None:
    for chunks in (1, 3):
        routed, through_django, direct_only = both(
            gql(query, variables), bearer(tokens["admin"]), chunks=chunks
        )
        assert direct_only
        assert routed == through_django
        assert routed[0] == 200 and "errors" not in dict(routed[2])


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        # Refused callers and bad input: Strawberry answers, through Django.
        (gql(PAGE), "free", 200),
        (gql(PAGE, {"first": "x"}), "admin", 200),
        (gql(PAGE, {"first": 1000}), "admin", 200),
        (gql("{ auditLogs { nope } }"), "admin", 200),
        (gql("mutation { recordAuditEvents(events: []) { events { id } } }"), "admin", 200),
        (b"[1, 2]", "admin", 400),
        (b"\xff\xfe", "admin", 400),
        (b'{"query": 3}', "admin", 400),
        # Credentials the route does not take.
        (gql(PAGE), {"Content-Type": "application/json", "Authorization": "Bearer a b"}, 200),
        (gql(PAGE), {"Content-Type": "application/json", "Authorization": "Basic eA=="}, 200),
        (gql(PAGE), {"Content-Type": "application/json"}, 200),
        # A host Django does not serve; a content type it refuses.
        (gql(PAGE), ("admin", {"Host": "evil.example"}), 400),
        (gql(PAGE), ("admin", {"Content-Type": "text/plain"}), 400),
    ],
)
def test_what_the_route_hands_on_is_answered_by_django_as_before(
    tokens: dict[str, str], body: bytes, headers: Any, status: int
) -> None:
    if isinstance(headers, str):
        headers = bearer(tokens[headers])
    elif isinstance(headers, tuple):
        headers = bearer(tokens[headers[0]], **headers[1])
    answered = compiled.cache_info()["answered"]
    routed, through_django, direct_only = both(body, headers)
    assert not direct_only
    assert routed == through_django
    assert routed[0] == status
    assert compiled.cache_info()["answered"] == answered


def test_django_checks_run_as_before(tokens: dict[str, str]) -> None:
    body, headers = gql(PAGE, {"first": 1}), bearer(tokens["admin"])
    with override_settings(SECURE_HSTS_SECONDS=3600, SECURE_HSTS_INCLUDE_SUBDOMAINS=True):
        routed, through_django, direct_only = both(body, headers, scheme="https")
        assert direct_only and routed == through_django
        assert ("strict-transport-security", "max-age=3600; includeSubDomains") in routed[1]
    with override_settings(SECURE_SSL_REDIRECT=True):
        routed, through_django, direct_only = both(body, headers)
        assert not direct_only and routed == through_django and routed[0] == 301
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=100):
        routed, through_django, direct_only = both(body, headers, chunks=4)
        assert not direct_only and routed == through_django and routed[0] == 413
    with override_settings(MIDDLEWARE=[*direct.EXPECTED_MIDDLEWARE[:-1]]):
        assert not direct.enabled()


def test_a_request_is_counted_once_whichever_path_answers(tokens: dict[str, str]) -> None:
    limit = 4
    with override_settings(RATE_LIMIT_PER_TOKEN=limit, RATE_LIMIT_WINDOW_SECONDS=3600):
        # Handed on to Django (a Free-plan caller), then answered by the route.
        for token in (tokens["free"], tokens["admin"]):
            answers = [call(asgi.application, gql(PAGE), bearer(token)) for _ in range(limit + 1)]
            assert [status for status, _, _ in answers] == [200] * limit + [429]
        # The route's 429 is Django's. Retry-After counts down by the second: a pair of
        # calls that straddles a second's end differs by one, so such a pair is sent again.
        for _ in range(3):
            limited = call(asgi.application, gql(PAGE), bearer(tokens["admin"]))
            from_django = call(asgi.http_application, gql(PAGE), bearer(tokens["admin"]))
            if dict(limited[1]).get("retry-after") == dict(from_django[1]).get("retry-after"):
                break
        assert limited[0] == from_django[0] == 429
        assert limited[1] == from_django[1]
        assert limited[2] == from_django[2]
