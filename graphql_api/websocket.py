"""The WebSocket endpoint, ``/graphql/``: subscriptions over graphql-transport-ws (the
protocol of GraphiQL, Apollo Client, graphql-ws and Python's gql).

Django serves HTTP only, so core/asgi.py hands WebSocket connections to this Strawberry
ASGI app. Credentials, as over HTTP (graphql_api/context.py):

* ``Authorization: Bearer <token>`` in the ``connection_init`` payload (what browser
  clients can send) or as a header of the handshake; the payload wins;
* otherwise the session cookie of a signed-in browser. Browsers send cookies cross-site
  with a WebSocket handshake, so a handshake whose ``Origin`` is another site, or the same
  host under another scheme, is refused (HTTP 403) unless listed in
  ``GRAPHQL_WS_ALLOWED_ORIGINS``.

A connection is not a login: every operation on it is judged as an HTTP request with the
same credentials would be at that moment (``AuditTransportWSHandler``). It gets a context
of its own (the caller resolved afresh, its own memo), counts against the rate limits, and
is refused with a coded error when the credentials the connection was opened with no
longer hold: a revoked or expired token, an ended session or a deactivated user closes the
connection with code 4401, a caller who could read audit logs and no longer may (demoted,
or the organization left the Paid plan) with 4403; the close reason starts with the error
code. An idle connection is checked every ``AUDIT_STREAM_RECHECK_SECONDS`` the same way.
Permissions and error codes of each operation are those of its fields.
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from importlib import import_module
from typing import Any

from cross_web import HTTPException
from django.conf import settings
from django.contrib.auth import aget_user
from django.http import HttpRequest
from django.http.cookie import parse_cookie
from graphql import GraphQLError
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http.websocket_origin import normalize_origin
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
    _OperationStreamClosed,
)
from strawberry.types.unset import UNSET, UnsetType
from strawberry.utils.aio import aclosing

from core.database import run_outside_request
from core.predicates import user_may_read_audit_logs
from graphql_api.context import Caller, GraphQLContext
from graphql_api.errors import (
    ErrorCode,
    code_errors,
    coded_error,
    database_failure,
    error_payload,
)
from graphql_api.permissions import audit_log_read_refusal
from graphql_api.schema import schema
from graphql_api.views import rate_limit_refusal, request_json_decode

logger = logging.getLogger("graphql_api.websocket")


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
    return _with_session(request)


def fresh_request(connection: HttpRequest) -> HttpRequest:
    """A request with the connection's headers (and the token of its connection_init)
    whose session and user are loaded anew: one per operation, so that each sees the
    credentials as they are now."""
    request = HttpRequest()
    request.method = "GET"
    request.path = request.path_info = connection.path
    request.META = dict(connection.META)
    request.COOKIES = dict(connection.COOKIES)
    return _with_session(request)


def _with_session(request: HttpRequest) -> HttpRequest:
    engine = import_module(settings.SESSION_ENGINE)
    request.session = engine.SessionStore(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
    request.auser = partial(aget_user, request)  # type: ignore[attr-defined]
    return request


@dataclass(frozen=True)
class _Refusal:
    """Why an operation may not run: its errors, and the close code of the connection
    when the connection's credentials no longer hold."""

    error: GraphQLError
    close_code: int | None = None


# WebSocket close reasons are at most 123 bytes.
_CLOSE_REASON_BYTES = 123


class AuditTransportWSHandler(BaseGraphQLTransportWSHandler[GraphQLContext, None]):
    """graphql-transport-ws with each operation judged as an HTTP request would be (see
    the module docstring). ``self.context`` is the connection's: its request holds the
    credentials, and its caller, resolved at connection_init, is who the connection was
    opened by."""

    async def handle_message(self, message: Any) -> None:
        # The protocol's messages are objects; a subscribe carries an object payload with a
        # string query. Anything else closes the connection (4400), as malformed JSON does,
        # instead of failing inside the handler.
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            await self.handle_invalid_message("WebSocket message must be a JSON object with a type")
            return
        if message["type"] == "subscribe" and not _is_subscribe(message):
            await self.handle_invalid_message(
                "A subscribe message needs a string id and a payload with a string query, "
                "object variables and a string operationName (or none)"
            )
            return
        await super().handle_message(message)  # type: ignore[arg-type]

    async def handle(self) -> None:
        watch = asyncio.create_task(self._watch_credentials())
        try:
            await super().handle()
        finally:
            watch.cancel()
            with suppress(asyncio.CancelledError):
                await watch

    def _operation_context(self) -> GraphQLContext:
        return GraphQLContext(
            request=fresh_request(self.context.request),
            response=None,  # type: ignore[arg-type]
            connection_params=self.context.connection_params,
            outside_request_cycle=True,
        )

    def _lost_credentials(self, now: Caller) -> _Refusal | None:
        """A refusal that closes the connection, when the caller it was opened by is not
        the caller now, or could read audit logs and no longer may."""
        opened_by = self.context.resolved_caller
        if opened_by is None or opened_by.user is None:
            return None  # opened without valid credentials: each operation is judged alone
        if now.user is None or now.user.pk != opened_by.user.pk:
            message = now.rejected or "The session has ended; sign in again."
            return _Refusal(coded_error(ErrorCode.UNAUTHENTICATED, message), 4401)
        if user_may_read_audit_logs(opened_by.user):
            refusal = audit_log_read_refusal(now)
            if refusal is not None:
                return _Refusal(coded_error(*refusal), 4403)
        return None

    async def _refusal(self, context: GraphQLContext) -> _Refusal | None:
        refused = await run_outside_request(rate_limit_refusal, context.request.META)
        if refused is not None:
            body, _ = refused
            (error,) = body["errors"]
            return _Refusal(GraphQLError(error["message"], extensions=error["extensions"]))
        return self._lost_credentials(await context.caller())

    async def _close_for(self, refusal: _Refusal) -> None:
        """End every open operation with the refusal's error, then close the connection."""
        assert refusal.close_code is not None
        for operation in list(self.operations.values()):
            task = operation.task
            with suppress(Exception):
                await operation.send_initial_errors([refusal.error])
            if task is not None:
                task.cancel()
        code = (refusal.error.extensions or {}).get("code", "")
        reason = f"{code}: {refusal.error.message}".encode()[:_CLOSE_REASON_BYTES]
        await self.websocket.close(refusal.close_code, reason.decode(errors="ignore"))

    async def _watch_credentials(self) -> None:
        """Every AUDIT_STREAM_RECHECK_SECONDS, the credentials of a connection that had
        valid ones, checked again; an idle connection that lost them is closed too."""
        while True:
            await asyncio.sleep(settings.AUDIT_STREAM_RECHECK_SECONDS)
            if not self.connection_acknowledged:
                continue
            try:
                refusal = self._lost_credentials(await self._operation_context().caller())
            except Exception as error:
                if database_failure(error) is None:
                    raise
                continue  # the database is away: check again next time
            if refusal is not None:
                await self._close_for(refusal)
                return

    async def run_operation(self, operation: Operation[GraphQLContext, None]) -> None:
        context = self._operation_context()
        try:
            refusal = await self._refusal(context)
        except Exception as error:
            database = database_failure(error)
            if database is None:
                raise
            refusal = _Refusal(coded_error(*database))
        if refusal is not None:
            await operation.send_initial_errors([refusal.error])
            if refusal.close_code is not None:
                await self._close_for(refusal)
            return
        # As BaseGraphQLTransportWSHandler.run_operation, with the operation's own context.
        try:
            result_source = await self.schema.stream(
                operation.query,
                variable_values=operation.variables,
                context_value=context,
                root_value=self.root_value,
                operation_name=operation.operation_name,
            )
            async with aclosing(result_source):
                await self._send_result_stream(operation, result_source)
            await operation.send_operation_message({"id": operation.id, "type": "complete"})
        except _OperationStreamClosed:
            return
        except GraphQLError as error:
            # A document the parser cache refuses raises here, before the stream starts
            # (the HTTP view codes those itself): the operation's error, coded.
            await operation.send_initial_errors(code_errors([error]))
        except Exception as error:
            await self.handle_task_exception(error)
            with suppress(Exception):
                await operation.send_operation_message({"id": operation.id, "type": "complete"})
            self.operations.pop(operation.id, None)
            raise


class GraphQLWebSocket(GraphQL):  # type: ignore[type-arg]
    graphql_transport_ws_handler_class = AuditTransportWSHandler  # type: ignore[assignment]

    def decode_json(self, data: str | bytes) -> object:
        # One JSON object per message, read as the HTTP view reads a body; what it cannot
        # read (nesting or integers beyond the decoder) counts as malformed JSON: 4400.
        try:
            return request_json_decode(data)
        except HTTPException as error:
            raise json.JSONDecodeError(error.reason, "", 0) from None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        request = django_request(WebSocket(scope, receive=receive, send=send))
        if not _origin_allowed(scope, request.META, self.allowed_origins):
            await _deny(
                scope,
                send,
                403,
                error_payload(
                    ErrorCode.FORBIDDEN,
                    "A page of this origin may not open a WebSocket to this server "
                    "(GRAPHQL_WS_ALLOWED_ORIGINS).",
                ),
                {},
            )
            return
        # A handshake counts against the rate limits like an HTTP request (the token of a
        # connection_init payload is not known yet: the address and a header token are).
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
        # Who opens the connection: each operation is compared with it.
        try:
            await context.caller()
        except Exception as error:
            if database_failure(error) is None:
                raise
            logger.warning("Database failure at connection_init: %s", type(error).__name__)
        return UNSET


def _is_subscribe(message: dict[str, Any]) -> bool:
    payload = message.get("payload")
    return (
        isinstance(message.get("id"), str)
        and isinstance(payload, dict)
        and isinstance(payload.get("query"), str)
        and isinstance(payload.get("variables"), dict | None)
        and isinstance(payload.get("operationName"), str | None)
    )


def _origin_allowed(scope: Any, meta: dict[str, Any], allowed: Any) -> bool:
    """A handshake without Origin (not a browser), from the server's own origin, or from
    one of ``allowed``. Strawberry's own check compares the host and port only; the
    server's origin has a scheme too: https when the connection is TLS, or when a proxy
    that terminates TLS says so and is trusted to (TRUST_X_FORWARDED_PROTO, as for
    Django's HTTPS detection)."""
    origin = meta.get("HTTP_ORIGIN")
    if origin is None or "*" in allowed:
        return True
    normalized = normalize_origin(origin)
    if normalized is None:
        return False
    if normalized in allowed:
        return True
    secure = scope.get("scheme") in ("wss", "https")
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header is not None:
        name, value = proxy_header
        secure = secure or meta.get(name, "").split(",")[0].strip() == value
    host = meta.get("HTTP_HOST")
    own = normalize_origin(f"{'https' if secure else 'http'}://{host}") if host else None
    return own is not None and normalized == own


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
