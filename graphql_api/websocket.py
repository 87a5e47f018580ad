"""The WebSocket endpoint, ``/graphql/``: subscriptions over graphql-transport-ws (the
protocol of GraphiQL, Apollo Client, graphql-ws and Python's gql).

Django serves HTTP only, so core/asgi.py hands WebSocket connections to this Strawberry
ASGI app. Credentials, as over HTTP (graphql_api/context.py):

* ``Authorization: Bearer <token>`` in the ``connection_init`` payload (what browser
  clients can send) or as a header of the handshake; the payload wins;
* otherwise the session cookie of a signed-in browser. Browsers send cookies cross-site
  with a WebSocket handshake, so a handshake whose ``Origin`` is another site is refused
  (HTTP 403) unless listed in ``GRAPHQL_WS_ALLOWED_ORIGINS``.

Permissions and error codes are those of the subscription fields themselves.
"""

from __future__ import annotations

import json
from datetime import timedelta
from functools import partial
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import aget_user
from django.http import HttpRequest
from django.http.cookie import parse_cookie
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET, UnsetType

from core.database import run_outside_request
from graphql_api.context import GraphQLContext
from graphql_api.errors import database_failure, error_payload
from graphql_api.schema import schema
from graphql_api.views import rate_limit_refusal


def django_request(websocket: WebSocket) -> HttpRequest:
    """An HttpRequest with what authentication reads: headers, cookies, session, user."""
    request = HttpRequest()
    request.method = "GET"
    request.path = request.path_info = websocket.url.path
    request.META = {
        "HTTP_" + name.upper().replace("-", "_"): value
        for name, value in websocket.headers.items()
        if name.lower() not in ("content-type", "content-length")
    }
    if websocket.client is not None:
        request.META["REMOTE_ADDR"] = websocket.client.host
    request.COOKIES = parse_cookie(websocket.headers.get("cookie", ""))
    engine = import_module(settings.SESSION_ENGINE)
    request.session = engine.SessionStore(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
    request.auser = partial(aget_user, request)  # type: ignore[attr-defined]
    return request


class GraphQLWebSocket(GraphQL):  # type: ignore[type-arg]
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # A handshake counts against the rate limits like an HTTP request (the token of a
        # connection_init payload is not known yet: the address and a header token are).
        request = django_request(WebSocket(scope, receive=receive, send=send))
        try:
            refusal = await run_outside_request(rate_limit_refusal, request.META)
        except Exception as error:
            database = database_failure(error)
            if database is None:
                raise
            await _deny(scope, send, 503, error_payload(*database), {})
            return
        if refusal is not None:
            body, retry_after = refusal
            await _deny(scope, send, 429, body, {"retry-after": str(retry_after)})
            return
        await super().__call__(scope, receive, send)

    async def get_context(  # type: ignore[override]
        self, request: WebSocket, response: WebSocket
    ) -> GraphQLContext:
        return GraphQLContext(
            request=django_request(request),
            response=None,  # type: ignore[arg-type]
            outside_request_cycle=True,
        )

    async def on_ws_connect(self, context: Any) -> UnsetType | dict[str, object] | None:
        params = context.connection_params
        if isinstance(params, dict):
            authorization = next(
                (v for k, v in params.items() if k.lower() == "authorization"), None
            )
            if authorization is not None:
                context.request.META["HTTP_AUTHORIZATION"] = str(authorization)
        return UNSET


async def _deny(
    scope: Any, send: Any, status: int, body: dict[str, Any], headers: dict[str, str]
) -> None:
    """Refuse a handshake with an HTTP status and a GraphQL error body (uvicorn supports
    the ASGI denial response); where the server cannot, a plain close (HTTP 403)."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    await send(
        {
            "type": "websocket.http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                *((k.encode(), v.encode()) for k, v in headers.items()),
            ],
        }
    )
    await send({"type": "websocket.http.response.body", "body": json.dumps(body).encode()})


graphql_websocket = GraphQLWebSocket(
    schema,
    graphql_ide=None,
    subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
    keep_alive=True,
    keep_alive_interval=15,
    connection_init_wait_timeout=timedelta(seconds=10),
    allowed_origins=settings.GRAPHQL_WS_ALLOWED_ORIGINS,
)
