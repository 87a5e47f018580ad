"""The HTTP endpoint, ``/graphql/``: Strawberry's async Django view, with

* CSRF enforced for POSTs authenticated by the session cookie (browsers, GraphiQL), and
  not for requests that carry ``Authorization`` (no browser sends that cross-site);
* a JSON body accepted whatever its label (``curl -d`` calls it a form), and refused
  with a coded 400 unless it is one JSON object: not UTF-8, not JSON, another JSON type at
  the top level, nesting or a number beyond what the decoder can read;
* failures before execution (unparseable JSON, a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE``,
  a wrong method) answered as GraphQL errors with ``extensions.code``, like every other
  error, never as a bare text body or an HTML 500 page.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from asgiref.sync import sync_to_async
from cross_web import AsyncDjangoHTTPRequestAdapter, HTTPException
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.middleware.csrf import CsrfViewMiddleware, get_token
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from strawberry.django.views import AsyncGraphQLView
from strawberry.exceptions import MissingQueryError
from strawberry.http import GraphQLHTTPResponse, process_result
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_SSE_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from core.authentication import MalformedAuthorization, bearer_credentials
from core.client_ip import client_ip
from core.csp import page_csp
from core.rate_limit import RateLimited, rate_limit_hit
from graphql_api import compiled
from graphql_api.context import GraphQLContext, uses_bearer_token
from graphql_api.errors import (
    INTERNAL_ERROR_MESSAGE,
    ErrorCode,
    code_errors,
    database_failure,
    error_payload,
)
from graphql_api.schema import schema

logger = logging.getLogger("graphql_api.views")


class _RequestAdapter(AsyncDjangoHTTPRequestAdapter):
    """Reads a POST body labelled as a form, or not labelled at all, as JSON: that is what
    ``curl -d '{"query": ...}'`` sends. Safe, because cookie-authenticated POSTs pass the
    CSRF check whatever their content type."""

    @property
    def content_type(self) -> str | None:
        declared = super().content_type
        essence = (declared or "").split(";")[0].strip().lower()
        if self.method == "POST" and essence in ("", "application/x-www-form-urlencoded"):
            return "application/json"
        return declared


class _CsrfCheck(CsrfViewMiddleware):
    """Django's CSRF check, returning the reason for a failure instead of a page."""

    def _accept(self, request: HttpRequest) -> None:
        return None

    def _reject(self, request: HttpRequest, reason: str) -> str:  # type: ignore[override]
        return reason


def _csrf_failure(request: HttpRequest) -> str | None:
    def no_view(request: HttpRequest) -> HttpResponse:
        raise AssertionError("not called")

    result: Any = _CsrfCheck(no_view).process_view(request, no_view, (), {})
    return result if isinstance(result, str) else None


def error_response(status: int, code: ErrorCode, message: str) -> HttpResponse:
    return HttpResponse(
        json.dumps(error_payload(code, message)), status=status, content_type="application/json"
    )


def failure_response(request: HttpRequest, error: Exception) -> HttpResponse:
    """An error nothing else handled, before any response was started: 503 with a coded
    body for a database failure (409 for a transaction conflict), else 500
    ``INTERNAL_SERVER_ERROR``, logged with its traceback; never the details."""
    database = database_failure(error)
    if database is not None:
        logger.warning("Database failure serving %s: %s", request.path, type(error).__name__)
        status = 409 if database[0] == ErrorCode.TRANSACTION_CONFLICT else 503
        return error_response(status, *database)
    logger.exception("Unexpected error serving %s %s", request.method, request.path)
    return error_response(500, ErrorCode.INTERNAL_SERVER_ERROR, INTERNAL_ERROR_MESSAGE)


def rate_limit_refusal(meta: Mapping[str, Any]) -> tuple[dict[str, Any], int] | None:
    """Count a request (its headers as ``META``) against its token's and its address's
    limits (core/rate_limit.py): the error body and the retry hint in seconds when it is
    over one, else None. For HTTP requests and WebSocket handshakes alike."""
    try:
        credentials = bearer_credentials(meta.get("HTTP_AUTHORIZATION"))
    except MalformedAuthorization:
        credentials = None  # refused later with UNAUTHENTICATED; counted by address
    address = client_ip(
        meta.get("REMOTE_ADDR"), meta.get("HTTP_X_FORWARDED_FOR"), settings.TRUSTED_PROXIES
    )
    try:
        rate_limit_hit(
            token_secret=credentials.secret if credentials is not None else None,
            address=address,
        )
    except RateLimited as refused:
        message = (
            f"Too many requests for this {refused.scope}: at most {refused.limit} per "
            f"{settings.RATE_LIMIT_WINDOW_SECONDS} s. Retry in {refused.retry_after} s."
        )
        body = error_payload(ErrorCode.RATE_LIMITED, message, retryAfter=refused.retry_after)
        return body, refused.retry_after
    return None


# Set by graphql_api/direct.py in the ASGI scope of a request it counted and then handed
# to Django: the request is not counted twice. (A scope key: no client can set it.)
RATE_COUNTED = "auditlog.rate_counted"


async def rate_limited(request: HttpRequest) -> HttpResponse | None:
    if getattr(request, "scope", {}).get(RATE_COUNTED):
        return None
    refusal = await sync_to_async(rate_limit_refusal)(request.META)
    return rate_limit_response(refusal) if refusal is not None else None


def rate_limit_response(refusal: tuple[dict[str, Any], int]) -> HttpResponse:
    """The 429 answer to a request over a rate limit (before the response middleware)."""
    body, retry_after = refusal
    response = HttpResponse(json.dumps(body), status=429, content_type="application/json")
    response["Retry-After"] = str(retry_after)
    return response


def request_json_decode(data: str | bytes) -> dict[str, Any]:
    """A request body (or the ``variables`` of a GET) as one JSON object; HTTPException
    400 for anything else. What it cannot read says so: bytes that are not UTF-8, nesting
    beyond the decoder's stack, an integer of more digits than Python reads (4,300)."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = json.loads(text)
    except UnicodeDecodeError:
        raise HTTPException(400, "The request body is not valid UTF-8.") from None
    except json.JSONDecodeError as error:
        raise HTTPException(
            400, f"The request body is not JSON ({error.msg} at position {error.pos})."
        ) from None
    except ValueError:
        raise HTTPException(400, "The request holds a number too long to read.") from None
    except RecursionError:
        raise HTTPException(400, "The request's JSON is nested too deeply.") from None
    if not isinstance(value, dict):
        raise HTTPException(
            400,
            "The request must be one JSON object, such as "
            '{"query": "...", "variables": {...}}; got '
            f"{type(value).__name__ if value is not None else 'null'}.",
        )
    return value


SUBSCRIPTIONS_ELSEWHERE = (
    "Subscriptions are served as streams at /graphql/: over a WebSocket "
    "(graphql-transport-ws), or GraphQL over SSE (POST with Accept: text/event-stream)."
)


class AuditGraphQLView(AsyncGraphQLView):
    request_adapter_class = _RequestAdapter

    def decode_json(self, data: str | bytes) -> object:
        return request_json_decode(data)

    def encode_json(self, data: object) -> str | bytes:
        if isinstance(data, compiled.EncodedResponse):
            return data.encode()
        return super().encode_json(data)

    async def execute_single(  # type: ignore[override]
        self,
        request: HttpRequest,
        request_adapter: Any,
        sub_response: HttpResponse,
        context: GraphQLContext,
        root_value: Any,
        request_data: Any,
    ) -> ExecutionResult:
        """One operation over plain HTTP (SSE streams do not come here): queries (GET or
        POST) and mutations (POST). A subscription is a coded 400 that says where
        streams are served, instead of being run as a query."""
        method = request_adapter.method
        compiled_result = await compiled.execute(
            query=request_data.query,
            variables=request_data.variables,
            operation_name=request_data.operation_name,
            context=context,
        )
        if compiled_result is not None:
            return compiled_result
        allowed = {OperationType.QUERY} | ({OperationType.MUTATION} if method == "POST" else set())
        try:
            return await self.schema.execute(
                request_data.query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=allowed,
                operation_extensions=request_data.extensions,
            )
        except InvalidOperationTypeError as error:
            if error.operation_type == OperationType.SUBSCRIPTION:
                raise HTTPException(400, SUBSCRIPTIONS_ELSEWHERE) from None
            raise HTTPException(400, error.as_http_error_reason(method)) from None
        except CannotGetOperationTypeError as error:
            raise HTTPException(400, error.as_http_error_reason()) from None
        except MissingQueryError:
            raise HTTPException(400, "No GraphQL query found in the request.") from None

    async def get_context(  # type: ignore[override]
        self, request: HttpRequest, response: HttpResponse
    ) -> GraphQLContext:
        return GraphQLContext(request=request, response=response)

    async def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:  # type: ignore[override]
        if (
            request.method == "POST"
            and not uses_bearer_token(request)
            and settings.SESSION_COOKIE_NAME in request.COOKIES
        ):
            reason = _csrf_failure(request)
            if reason is not None:
                return error_response(
                    403,
                    ErrorCode.FORBIDDEN,
                    f"CSRF verification failed ({reason}). Requests authenticated by the "
                    "session cookie must send the csrftoken cookie's value in an "
                    "X-CSRFToken header.",
                )
        try:
            limited = await rate_limited(request)
            if limited is not None:
                return limited
            return await self.run(request=request)
        except HTTPException as error:
            return error_response(error.status_code, ErrorCode.BAD_USER_INPUT, error.reason)
        except RequestDataTooBig:
            return error_response(
                413,
                ErrorCode.BAD_USER_INPUT,
                f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
            )
        except Exception as error:
            return failure_response(request, error)

    async def process_result(
        self, request: HttpRequest, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        if isinstance(result, compiled.CompiledResult) and result.response is not None:
            return result.response  # type: ignore[return-value]
        if result.errors:
            result.errors = code_errors(result.errors)
        return process_result(result)

    async def render_graphql_ide(self, request: HttpRequest) -> HttpResponse:
        """GraphiQL on the files this backend serves (graphql_api/assets.py), under the
        pages' Content-Security-Policy: it works offline and runs no third-party script."""
        # GraphiQL sends the csrftoken cookie back as X-CSRFToken; make sure it is set.
        get_token(request)
        response = render(request, "graphql_api/graphiql.html")
        page_csp(response)
        return response


graphql_view = csrf_exempt(
    AuditGraphQLView.as_view(
        schema=schema,
        graphql_ide="graphiql" if settings.GRAPHIQL else None,
        # Subscriptions over GraphQL over SSE (Accept: text/event-stream); WebSockets are
        # served by graphql_api/websocket.py.
        subscription_protocols=(GRAPHQL_SSE_PROTOCOL,),
    )
)
