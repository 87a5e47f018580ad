"""Mutation fields: ``recordAuditEvents``, batch ingestion for integrations.

Thin: converts the input to submissions, asks audit/services.py to record them, and turns
the service's verdict into a BAD_USER_INPUT error that names every bad event by index and
field. Who may call it is graphql_api/permissions.py's ``AUDIT_LOG_WRITERS``.
"""

from __future__ import annotations

from typing import Annotated, Any

import strawberry
from asgiref.sync import sync_to_async
from strawberry import relay
from strawberry.types import Info

from audit.selectors import AuditLogPosition
from audit.services import (
    BATCH_MAX_EVENTS,
    AuditEventSubmission,
    InvalidSubmissions,
    audit_log_record_batch,
)
from graphql_api.context import context_of
from graphql_api.cursors import cursor_encode
from graphql_api.errors import ErrorCode, coded_error
from graphql_api.inputs import AuditEventInput
from graphql_api.permissions import AUDIT_LOG_WRITERS

# How many problems one error lists; the count says how many there were in all.
MAX_LISTED_PROBLEMS = 50


@strawberry.type(description="The entry of one event sent to recordAuditEvents.")
class RecordedAuditEvent:
    id: strawberry.ID = strawberry.field(
        description="The entry's id: the same as AuditLog.id when it is read back."
    )
    cursor: str = strawberry.field(
        description=(
            "A cursor for the entry: `after` for auditLogCreated resumes the stream right "
            "after it; `after` or `before` for auditLogs pages from it."
        )
    )
    created: bool = strawberry.field(
        description=(
            "False when an earlier call with the same idempotencyKey recorded it; the entry "
            "is then returned as it was first recorded, and nothing new is written."
        )
    )


@strawberry.type(description="The result of recordAuditEvents.")
class RecordAuditEventsPayload:
    events: list[RecordedAuditEvent] = strawberry.field(
        description="One result per event sent, in the same order."
    )


@strawberry.type
class AuditLogMutations:
    @strawberry.mutation(
        permission_classes=AUDIT_LOG_WRITERS,
        description=(
            "Records events from an integration into the token's organization, all or none. "
            f"At most {BATCH_MAX_EVENTS} events per call. Each event has an idempotencyKey, "
            "unique in the organization: sending a batch again (say, after a timeout) "
            "records nothing twice and returns the same ids. Any invalid event refuses the "
            "whole batch with BAD_USER_INPUT, whose extensions.problems list each bad event's "
            "index, field and reason; nothing is written. Needs an API token with the "
            "audit:write scope (UNAUTHENTICATED without valid credentials, FORBIDDEN for a "
            "session or a token without that scope)."
        ),
    )
    async def record_audit_events(
        self,
        info: Info[Any, Any],
        events: Annotated[
            list[AuditEventInput],
            strawberry.argument(description=f"The events, 0 to {BATCH_MAX_EVENTS}."),
        ],
    ) -> RecordAuditEventsPayload:
        user = (await context_of(info).caller()).user
        assert user is not None and user.organization is not None  # AUDIT_LOG_WRITERS
        organization = user.organization
        submissions = [
            AuditEventSubmission(
                idempotency_key=event.idempotency_key,
                event=event.event.value,
                user_email=event.user_email,
                ip=event.ip,
                details=event.details,
                time=event.time,
            )
            for event in events
        ]
        try:
            recorded = await sync_to_async(audit_log_record_batch)(
                organization=organization, submissions=submissions
            )
        except InvalidSubmissions as refused:
            problems = refused.problems
            listed = [
                {"index": p.index, "field": p.field, "message": p.message}
                for p in problems[:MAX_LISTED_PROBLEMS]
            ]
            summary = "; ".join(
                f"events[{p.index}].{p.field} {p.message}" for p in problems[:5]
            ) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            raise coded_error(
                ErrorCode.BAD_USER_INPUT,
                f"No event was recorded: {len(problems)} problem(s): {summary}.",
                problems=listed,
                problemCount=len(problems),
            ) from refused
        return RecordAuditEventsPayload(
            events=[
                RecordedAuditEvent(
                    id=strawberry.ID(relay.to_base64("AuditLog", entry.entry_id)),
                    cursor=cursor_encode(
                        organization_id=organization.pk,
                        position=AuditLogPosition(time=entry.time, id=entry.entry_id),
                        stream_txid=entry.stream_txid,
                    ),
                    created=entry.created,
                )
                for entry in recorded
            ]
        )
