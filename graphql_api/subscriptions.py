"""Subscription fields: ``auditLogCreated``, the live audit stream.

Thin: checks the caller (the same rule and codes as auditLogs, at subscribe time, then
every ``AUDIT_STREAM_RECHECK_SECONDS``), decodes the filter and the cursor, and relays
what audit/stream.py delivers as edges. Served over graphql-transport-ws (WebSocket,
graphql_api/websocket.py) and GraphQL over SSE (the HTTP view, graphql_api/views.py).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import strawberry
from django.conf import settings
from strawberry.types import Info

from audit.selectors import AuditLogFilter, AuditLogPosition, StreamPosition
from audit.stream import StreamStart, SubscriberTooSlow, audit_log_follow
from core.database import run_outside_request
from core.predicates import user_may_read_audit_logs
from core.services import stream_lease_acquire, stream_lease_release, stream_lease_renew
from graphql_api.context import context_of
from graphql_api.cursors import InvalidCursor, cursor_decode_stream, cursor_encode
from graphql_api.errors import ErrorCode, bad_user_input, coded_error
from graphql_api.inputs import AuditLogFilterInput
from graphql_api.permissions import AUDIT_LOG_READERS, PAID_ADMINS_ONLY_MESSAGE
from graphql_api.types import AuditLogEdge


@strawberry.type
class AuditLogSubscriptions:
    @strawberry.subscription(
        permission_classes=AUDIT_LOG_READERS,
        description=(
            "Every new entry of the caller's organization that matches the filter, once it "
            "is committed (never one whose transaction rolled back), each exactly once, in "
            "stream order: an entry is delivered once every transaction that started "
            "writing before its own has ended. With `after`, first replays what follows "
            "that cursor, then continues live with no gap and no repeat: a client that "
            "reconnects with the cursor of the last edge it received misses nothing. "
            "Administrators of a Paid-plan organization only, checked at subscribe time and "
            "again while the stream is open (a revoked token ends it with UNAUTHENTICATED). "
            "A client that falls more than AUDIT_STREAM_BUFFER entries behind is closed "
            "with SLOW_CONSUMER and extensions.resumeAfter, the cursor to resume from. "
            "At most AUDIT_STREAM_MAX_PER_HOLDER streams may be open at once per API token "
            "(or signed-in user); more get SUBSCRIPTION_LIMIT. "
            "WebSocket (graphql-transport-ws) or GraphQL over SSE, both at /graphql/."
        ),
    )
    async def audit_log_created(
        self,
        info: Info[Any, Any],
        filter: Annotated[
            AuditLogFilterInput | None,
            strawberry.argument(description="Which entries to deliver; null for all."),
        ] = None,
        after: Annotated[
            str | None,
            strawberry.argument(
                description=(
                    "Start after this cursor. A cursor of this stream (or of "
                    "recordAuditEvents) resumes right after that entry, in stream order. "
                    "An auditLogs cursor first replays the entries newer (by time) than it, "
                    "oldest first. Null: only entries committed from now on."
                )
            ),
        ] = None,
    ) -> AsyncGenerator[AuditLogEdge, None]:
        context = context_of(info)
        caller = await context.caller()
        user = caller.user
        assert user is not None and user.organization is not None  # AUDIT_LOG_READERS
        organization_id = user.organization.pk
        filters = filter.to_selector_filter() if filter is not None else AuditLogFilter()
        start = StreamStart()
        if after is not None:
            try:
                position, stream_txid = cursor_decode_stream(after, organization_id=organization_id)
            except InvalidCursor as error:
                raise bad_user_input(f"after: {error}.") from error
            start = (
                StreamStart(after_time=position)
                if stream_txid is None
                else StreamStart(after_stream=(stream_txid, position.id))
            )

        # The cap on open streams per token (or signed-in user), across every server.
        holder = f"t:{caller.token.pk}" if caller.token else f"u:{user.pk}"
        lease_ttl = timedelta(seconds=3 * settings.AUDIT_STREAM_RECHECK_SECONDS)
        lease = await run_outside_request(
            stream_lease_acquire,
            holder=holder,
            limit=settings.AUDIT_STREAM_MAX_PER_HOLDER,
            ttl=lease_ttl,
        )
        if lease is None:
            raise coded_error(
                ErrorCode.SUBSCRIPTION_LIMIT,
                f"At most {settings.AUDIT_STREAM_MAX_PER_HOLDER} live streams may be open at "
                "once per API token (or signed-in user); close one first.",
            )

        async def still_allowed() -> None:
            await run_outside_request(stream_lease_renew, lease_id=lease, ttl=lease_ttl)
            now = await context.recheck_caller()
            if now.user is None:
                raise coded_error(
                    ErrorCode.UNAUTHENTICATED,
                    f"The stream was closed: {now.rejected or 'the caller is signed out'}",
                )
            if not user_may_read_audit_logs(now.user) or (
                now.user.organization_id != organization_id
            ):
                raise coded_error(
                    ErrorCode.FORBIDDEN, f"The stream was closed: {PAID_ADMINS_ONLY_MESSAGE}"
                )

        try:
            async for entry, replayed in audit_log_follow(
                organization_id=organization_id,
                filters=filters,
                start=start,
                still_allowed=still_allowed,
                recheck_seconds=settings.AUDIT_STREAM_RECHECK_SECONDS,
            ):
                # A replayed entry's cursor resumes the replay by time; a live one's
                # resumes the stream right after it.
                cursor = cursor_encode(
                    organization_id=organization_id,
                    position=AuditLogPosition.of(entry),
                    stream_txid=None if replayed else entry.stream_txid,
                )
                yield AuditLogEdge(cursor=cursor, node=entry)  # type: ignore[arg-type]
        except SubscriberTooSlow as too_slow:
            raise coded_error(
                ErrorCode.SLOW_CONSUMER,
                f"The stream was closed: this client fell more than "
                f"{settings.AUDIT_STREAM_BUFFER} entries behind. Subscribe again with "
                "after: extensions.resumeAfter to continue where it stopped.",
                resumeAfter=_resume_cursor(organization_id, too_slow.resume),
            ) from None
        finally:
            await run_outside_request(stream_lease_release, lease_id=lease)


def _resume_cursor(organization_id: int, position: StreamPosition) -> str:
    """A stream cursor for a position: the entry's time does not matter to the stream, so
    a position that is not an entry's (where the live part began) gets the epoch."""
    return cursor_encode(
        organization_id=organization_id,
        position=AuditLogPosition(time=datetime(1970, 1, 1, tzinfo=UTC), id=position[1]),
        stream_txid=position[0],
    )
