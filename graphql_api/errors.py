"""Coded GraphQL errors: every error a client sees carries ``extensions.code``.

Codes (the contract; clients branch on them, never on messages):

* ``BAD_USER_INPUT``        -- the request is wrong: syntax, validation, limits, arguments
* ``UNAUTHENTICATED``       -- no credentials, or a bad, expired or revoked token
* ``FORBIDDEN``             -- signed in, but not an organization administrator
* ``PAID_PLAN_REQUIRED``    -- an administrator of an organization on the Free plan
* ``SLOW_CONSUMER``         -- a live stream fell too far behind and was closed (resume it
                               with ``extensions.resumeAfter``)
* ``SUBSCRIPTION_LIMIT``    -- a token (or user) already has the most live streams open
* ``TIMEOUT``               -- a database statement ran longer than DB_STATEMENT_TIMEOUT_MS
* ``SERVICE_UNAVAILABLE``   -- the database cannot be reached (restarting, overloaded); retry
* ``TRANSACTION_CONFLICT``  -- the work collided with concurrent transactions (a deadlock or
                               a serialization failure, still there after the server's own
                               retries) and was rolled back; retry
* ``RATE_LIMITED``          -- too many requests for a token or an address; retry after
                               ``extensions.retryAfter`` seconds (HTTP 429, Retry-After)
* ``INTERNAL_SERVER_ERROR`` -- anything unexpected; the details go to the server log only

``CodedErrors`` is the schema extension that enforces this on every response: errors
raised on purpose (a ``GraphQLError``, which includes the permission errors) keep their
message and get a code if they lack one; anything else is replaced by a generic message
and logged with its traceback, so no stack trace, SQL or internal name reaches a client.
To add a code, add it to ``ErrorCode`` and raise ``coded_error(code, message)``.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

logger = logging.getLogger("graphql_api.errors")


class ErrorCode(enum.StrEnum):
    BAD_USER_INPUT = "BAD_USER_INPUT"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    PAID_PLAN_REQUIRED = "PAID_PLAN_REQUIRED"
    SLOW_CONSUMER = "SLOW_CONSUMER"
    SUBSCRIPTION_LIMIT = "SUBSCRIPTION_LIMIT"
    TIMEOUT = "TIMEOUT"
    TOTAL_COUNT_TOO_COSTLY = "TOTAL_COUNT_TOO_COSTLY"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    TRANSACTION_CONFLICT = "TRANSACTION_CONFLICT"
    RATE_LIMITED = "RATE_LIMITED"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"


INTERNAL_ERROR_MESSAGE = "Internal server error; it has been logged."
UNAVAILABLE_MESSAGE = "The database is unavailable at the moment; retry in a few seconds."
CONFLICT_MESSAGE = (
    "The request collided with concurrent ones and was rolled back; nothing was written. Retry it."
)


def coded_error(code: ErrorCode, message: str, **extensions: Any) -> GraphQLError:
    """An error for the client; ``extensions`` adds machine-readable details beside the code."""
    return GraphQLError(message, extensions={"code": code.value, **extensions})


def bad_user_input(message: str) -> GraphQLError:
    return coded_error(ErrorCode.BAD_USER_INPUT, message)


def error_payload(code: ErrorCode, message: str, **extensions: Any) -> dict[str, Any]:
    """A complete GraphQL response body holding one error, for failures before execution."""
    return {
        "data": None,
        "errors": [{"message": message, "extensions": {"code": code.value, **extensions}}],
    }


def _is_deliberate(error: GraphQLError) -> bool:
    original = error.original_error
    # No original error: a parse, validation or variable-coercion error from graphql-core,
    # whose messages describe the client's document, not the server.
    return original is None or isinstance(original, GraphQLError)


def _coded(error: GraphQLError) -> GraphQLError:
    if _is_deliberate(error):
        original = error.original_error
        inherited = original.extensions if isinstance(original, GraphQLError) else None
        extensions = {**(inherited or {}), **(error.extensions or {})}
        extensions.setdefault("code", ErrorCode.BAD_USER_INPUT.value)
        if extensions == error.extensions:
            return error
        return GraphQLError(
            error.message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            original_error=error.original_error,
            extensions=extensions,
        )
    database = database_failure(error.original_error)
    if database is not None:
        code, message = database
        logger.warning(
            "Database failure in GraphQL field %s: %s",
            ".".join(str(p) for p in error.path or ()) or "(none)",
            type(error.original_error).__name__,
        )
        return _replaced(error, message, code)
    logger.error(
        "Unexpected error in GraphQL field %s",
        ".".join(str(p) for p in error.path or ()) or "(none)",
        exc_info=error.original_error,
    )
    return _replaced(error, INTERNAL_ERROR_MESSAGE, ErrorCode.INTERNAL_SERVER_ERROR)


def _replaced(error: GraphQLError, message: str, code: ErrorCode) -> GraphQLError:
    """``error`` at the same place in the document, with only this message and code."""
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions={"code": code.value},
    )


def database_failure(error: BaseException | None) -> tuple[ErrorCode, str] | None:
    """The code and message for an error of the database, or None for anything else: a
    cancelled statement (DB_STATEMENT_TIMEOUT_MS) is TIMEOUT; a connection that failed or
    could not be had is SERVICE_UNAVAILABLE; a deadlock or serialization failure is
    TRANSACTION_CONFLICT (the database is fine). Nothing of the error's text is passed on."""
    import psycopg
    from django.conf import settings
    from django.db import InterfaceError, OperationalError
    from psycopg_pool import PoolTimeout

    from core.database import is_transaction_conflict

    unavailable = (
        OperationalError,
        InterfaceError,
        psycopg.OperationalError,
        psycopg.InterfaceError,
        PoolTimeout,
    )
    if not isinstance(error, unavailable):
        return None
    if is_transaction_conflict(error):
        return ErrorCode.TRANSACTION_CONFLICT, CONFLICT_MESSAGE
    # Django wraps the driver's error; the driver's says whether it was a cancellation.
    if isinstance(error, psycopg.errors.QueryCanceled) or isinstance(
        error.__cause__, psycopg.errors.QueryCanceled
    ):
        return (
            ErrorCode.TIMEOUT,
            f"The database did not answer within {settings.DB_STATEMENT_TIMEOUT_MS} ms; "
            "narrow the filter or retry later.",
        )
    return ErrorCode.SERVICE_UNAVAILABLE, UNAVAILABLE_MESSAGE


def code_errors(errors: list[GraphQLError]) -> list[GraphQLError]:
    """The errors as a client may see them: each with a code, unexpected ones masked (and
    logged). Idempotent."""
    return [_coded(error) for error in errors]


class CodedErrors(SchemaExtension):
    """Codes and masks the errors of every operation and of every result of a stream. Errors raised before the operation
    starts (a document the parser cache rejects) bypass extensions; the HTTP view passes
    those through ``code_errors`` too."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        errors = getattr(result, "errors", None)
        if result is not None and errors:
            result.errors = code_errors(errors)

    def on_stream_result(self, result: Any) -> Iterator[None]:
        # Each result of a subscription, whatever the transport (the WebSocket protocol
        # formats results itself, so this is the one place to code them).
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = code_errors(errors)
        yield
