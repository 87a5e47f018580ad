"""``GET /audit-logs/export``: every entry matching a filter, as one CSV or JSONL file
(audit/exporting.py), streamed in constant memory, newest first.

Query parameters: ``format`` (``csv``, the default, or ``jsonl``), ``eventType`` (once
or repeated), ``userEmail``, ``from``, ``to`` (ISO 8601; a time without an offset is UTC),
with the meaning they have in ``auditLogs``. The same credentials, the same readers and
the same codes as the GraphQL API; a refusal is an HTTP status with a JSON body of the
GraphQL error shape: 401 ``UNAUTHENTICATED``, 403 ``FORBIDDEN`` or ``PAID_PLAN_REQUIRED``,
400 ``BAD_USER_INPUT`` (405 for a method other than GET), 429 ``RATE_LIMITED``, 503
``SERVICE_UNAVAILABLE``. Once the file has started, a failure cuts the connection before
the end of the chunked body: clients see an incomplete transfer, never a short file that
looks whole.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from audit import exporting
from audit.filters import AuditLogFilter
from audit.selectors import ExportRow
from core.models import Organization
from graphql_api.context import resolve_caller
from graphql_api.errors import ErrorCode, database_failure
from graphql_api.permissions import audit_log_read_refusal
from graphql_api.views import error_response, failure_response, rate_limited

logger = logging.getLogger("graphql_api.exports")


def _next_batch(batches: Iterator[list[ExportRow]]) -> list[ExportRow] | None:
    return next(batches, None)


async def _content(
    organization: Organization, filters: AuditLogFilter, fmt: str
) -> AsyncIterator[bytes]:
    yield exporting.header(fmt).encode()
    batches = exporting.batches(organization, filters)
    try:
        while rows := await sync_to_async(_next_batch)(batches):
            yield exporting.encode(fmt, rows).encode()
    except Exception as error:
        # The status line is sent. Raising again makes the server cut the connection
        # before the chunked body's end, so the client sees an incomplete transfer, not a
        # file that merely looks shorter.
        if database_failure(error) is not None:
            logger.warning(
                "Export of %s ended early: database failure (%s)",
                organization.slug,
                type(error).__name__,
            )
        else:
            logger.exception("Export of %s ended early: unexpected error", organization.slug)
        raise


# Exempt from the CSRF check, which would answer another method with Django's HTML page:
# GET changes nothing, and every other method is refused below with the documented 405.
@csrf_exempt
async def export_view(request: HttpRequest) -> HttpResponseBase:
    if request.method != "GET":
        refused = error_response(405, ErrorCode.BAD_USER_INPUT, "Use GET for /audit-logs/export.")
        refused["Allow"] = "GET"
        return refused
    try:
        limited = await rate_limited(request)
        if limited is not None:
            return limited
        caller = await resolve_caller(request)
        refusal = audit_log_read_refusal(caller)
        if refusal is not None:
            status = 401 if refusal[0] == ErrorCode.UNAUTHENTICATED else 403
            return error_response(status, *refusal)
        assert caller.user is not None and caller.user.organization is not None
        organization = caller.user.organization
        try:
            fmt, filters = exporting.parse_parameters(request.GET)
        except exporting.BadParameter as error:
            return error_response(400, ErrorCode.BAD_USER_INPUT, f"{error}.")
        await sync_to_async(exporting.export_record)(
            organization, filters, fmt, "http", actor=caller.user
        )
    except Exception as error:
        return failure_response(request, error)
    response = StreamingHttpResponse(
        _content(organization, filters, fmt), content_type=exporting.CONTENT_TYPES[fmt]
    )
    name = exporting.filename(organization, filters, fmt)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "no-store"
    return response
