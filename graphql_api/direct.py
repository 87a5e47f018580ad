"""The direct route: an API read answered by its compiled plan without Django's handler.

Django's ASGI handler costs more than a compiled read itself: a request object, the
middleware chain, the request_started / request_finished signals (each a trip to a worker
thread), and a thread of its own per request; about 1.7 ms of CPU for ``{ __typename }``
(docs/PERFORMANCE.md). core/asgi.py offers every ``POST /graphql/`` to ``serve`` first.
It answers the request itself only when all of this holds, and otherwise hands the
request to Django, body included, untouched:

* the compiled path covers the operation (graphql_api/compiled.py, ``prepare``);
* it is authenticated by ``Authorization: Bearer``, well formed: no session and no CSRF
  check apply to it (graphql_api/views.py);
* it is plain JSON (not a GraphQL-over-SSE or multipart stream), within
  ``DATA_UPLOAD_MAX_MEMORY_SIZE``, one JSON object;
* Django's own request checks pass, run as Django runs them: ``SecurityMiddleware``
  (the HTTPS redirect), ``CommonMiddleware`` (the allowed hosts, the refused user
  agents);
* ``MIDDLEWARE`` is the list this module was written for (``EXPECTED_MIDDLEWARE``), so
  that the response middleware below is all of it that acts on such a response.

It then counts the request against the rate limits and runs the plan in one trip to a
worker thread (with a database connection for that trip only). The answer gets exactly
Django's headers: the response phase of ``XFrameOptionsMiddleware``,
``CommonMiddleware`` and ``SecurityMiddleware`` runs on it, in Django's order. A request
over a limit gets the view's 429. When the plan meets an error, the request goes to
Django after all, marked as counted (``RATE_COUNTED``), and Strawberry answers it.

tests/graphql_api/test_direct.py sends the same requests through this route and through
Django and compares status, headers and body.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.core.signals import setting_changed
from django.db import close_old_connections
from django.dispatch import receiver
from django.http import HttpResponse
from django.http.response import HttpResponseBase
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.security import SecurityMiddleware

from core.authentication import MalformedAuthorization, bearer_credentials
from graphql_api import compiled
from graphql_api.context import GraphQLContext
from graphql_api.views import (
    RATE_COUNTED,
    rate_limit_refusal,
    rate_limit_response,
    request_json_decode,
)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]

EXPECTED_MIDDLEWARE = [
    "core.middleware.SecurityMiddleware",
    "core.middleware.SessionMiddleware",
    "core.middleware.CommonMiddleware",
    "core.middleware.CsrfViewMiddleware",
    "core.middleware.AuthenticationMiddleware",
    "audit.middleware.AuditContextMiddleware",
    "core.middleware.MessageMiddleware",
    "core.middleware.XFrameOptionsMiddleware",
]


def _unused(request: Any) -> Any:
    raise AssertionError("not called")


@functools.cache
def _middleware() -> tuple[SecurityMiddleware, CommonMiddleware, XFrameOptionsMiddleware]:
    """Django's own middleware, for their request checks and response headers, made from
    the settings as Django's handler makes its own (again when a test changes them). The
    others of MIDDLEWARE do nothing to such a request's response: no session is touched,
    no CSRF cookie is due, no message is stored."""
    return SecurityMiddleware(_unused), CommonMiddleware(_unused), XFrameOptionsMiddleware(_unused)


@receiver(setting_changed)
def _settings_changed(**_kwargs: Any) -> None:
    _middleware.cache_clear()


def enabled() -> bool:
    return bool(settings.GRAPHQL_COMPILED_READS) and settings.MIDDLEWARE == EXPECTED_MIDDLEWARE


def _header(scope: Scope, name: bytes) -> bytes | None:
    # Repeated headers are joined, as Django joins them in META.
    found = [value for key, value in scope["headers"] if key == name]
    return b", ".join(found) if found else None


def _plain_json_post(scope: Scope) -> bool:
    content_type = (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
    if content_type not in (b"", b"application/json", b"application/x-www-form-urlencoded"):
        return False
    accept = (_header(scope, b"accept") or b"").lower()
    # A stream (GraphQL over SSE, multipart): Strawberry's view serves it.
    return b"text/event-stream" not in accept and b"multipart/mixed" not in accept


async def _body(
    receive: Receive, limit: int
) -> tuple[list[MutableMapping[str, Any]], bytes | None]:
    """The messages read, and the body (None when it is over ``limit`` or the client
    left): what was read is replayed to Django either way."""
    messages: list[MutableMapping[str, Any]] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        size += len(message.get("body", b""))
        if size > limit:
            return messages, None
        if not message.get("more_body", False):
            return messages, b"".join(m.get("body", b"") for m in messages)


def _replaying(messages: list[MutableMapping[str, Any]], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> MutableMapping[str, Any]:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


def _checked_request(scope: Scope, body: bytes) -> ASGIRequest | None:
    """The Django request, if Django's request checks let it through unchanged."""
    request = ASGIRequest(scope, io.BytesIO(body))  # type: ignore[arg-type]
    security, common, _ = _middleware()
    try:
        if security.process_request(request) is not None:
            return None  # a redirect to HTTPS
        if common.process_request(request) is not None:
            return None  # a redirect (APPEND_SLASH, PREPEND_WWW)
    except Exception:  # a host not allowed, a refused user agent: Django answers
        return None
    return request


async def _send(send: Send, response: HttpResponseBase) -> None:
    headers = [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in response.items()
    ]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.content})  # type: ignore[attr-defined]


def _finished(request: ASGIRequest, response: HttpResponse) -> HttpResponse:
    # The response phase, in Django's order (the reverse of MIDDLEWARE).
    security, common, xframe = _middleware()
    response = xframe.process_response(request, response)
    response = common.process_response(request, response)  # type: ignore[assignment]
    return security.process_response(request, response)  # type: ignore[return-value]


async def serve(scope: Scope, receive: Receive, send: Send, django: ASGIApp) -> None:
    """Answer ``POST /graphql/`` directly when its compiled plan can, else via ``django``."""
    if not enabled() or scope.get("method") != "POST":
        return await django(scope, receive, send)
    authorization = _header(scope, b"authorization")
    if authorization is None or not _plain_json_post(scope):
        return await django(scope, receive, send)
    try:
        if bearer_credentials(authorization.decode("latin-1")) is None:
            return await django(scope, receive, send)
    except MalformedAuthorization:
        return await django(scope, receive, send)  # UNAUTHENTICATED, from Strawberry

    messages, body = await _body(receive, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    replay = _replaying(messages, receive)
    if body is None:
        return await django(scope, replay, send)
    try:
        payload = request_json_decode(body)
    except Exception:  # the view's coded 400
        return await django(scope, replay, send)
    assert isinstance(payload, dict)
    prepared = compiled.prepare(
        query=payload.get("query"),
        variables=payload.get("variables"),
        operation_name=payload.get("operationName"),
    )
    request = _checked_request(scope, body) if prepared is not None else None
    if prepared is None or request is None:
        return await django(scope, replay, send)

    context = GraphQLContext(request=request, response=HttpResponse())

    def work() -> tuple[str, Any]:
        close_old_connections()
        try:
            refusal = rate_limit_refusal(request.META)
            if refusal is not None:
                return "limited", refusal
            return "answered", prepared.run(context)
        finally:
            close_old_connections()

    try:
        outcome, value = await sync_to_async(work, thread_sensitive=False)()
    except Exception:  # the limiter's database failed: Django answers, and counts
        return await django(scope, replay, send)
    if outcome == "limited":
        return await _send(send, _finished(request, rate_limit_response(value)))
    if value is None:  # an error: Strawberry answers, without counting it again
        return await django({**scope, RATE_COUNTED: True}, replay, send)
    response = HttpResponse(value.encode(), content_type="application/json")
    return await _send(send, _finished(request, response))


__all__ = ["EXPECTED_MIDDLEWARE", "enabled", "serve"]
