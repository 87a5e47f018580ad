"""Log streams in GraphQL: ``auditLogStreams`` (with each stream's delivery status) and
``createAuditLogStream``, ``updateAuditLogStream``, ``deleteAuditLogStream``,
``testAuditLogStream``. Thin: the rules and the writes are audit/log_streams.py's.

Who may: ``AUDIT_LOG_READERS`` (administrators of Paid-plan organizations, their own
organization's streams only); the mutations also need a signed-in session or an API token
with the ``streams:manage`` scope (FORBIDDEN otherwise).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import strawberry
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from strawberry import relay
from strawberry.permission import BasePermission
from strawberry.scalars import JSON
from strawberry.types import Info

from audit import log_streams
from audit.filters import AuditLogFilter
from core.models import ApiTokenScope, Organization
from core.models import AuditLogStream as StreamModel
from graphql_api.context import context_of
from graphql_api.errors import ErrorCode, bad_user_input
from graphql_api.inputs import AuditLogFilterInput
from graphql_api.permissions import AUDIT_LOG_READERS
from graphql_api.types import AuditEventType


@strawberry.enum(description="The body of each request a stream sends.")
class AuditLogStreamFormat(enum.Enum):
    JSON = strawberry.enum_value(
        "JSON",
        description='One JSON object, {"stream": id, "events": [entry, ...]}; each entry '
        "as AuditLog reads (id, event, time, ip, details, user).",
    )
    JSONL = strawberry.enum_value(
        "JSONL", description="JSON lines (application/x-ndjson): one entry per line."
    )
    SPLUNK_HEC = strawberry.enum_value(
        "SPLUNK_HEC",
        description="Splunk HTTP Event Collector: one {time, source, sourcetype, event} "
        "object per line, the entry as event.",
    )


@strawberry.enum(description="Where a stream's delivery stands.")
class AuditLogStreamState(enum.Enum):
    ACTIVE = strawberry.enum_value("ACTIVE", description="Delivering; the last attempt worked.")
    RETRYING = strawberry.enum_value(
        "RETRYING", description="The last attempt failed; retrying with backoff (nextRetryAt)."
    )
    PAUSED = strawberry.enum_value(
        "PAUSED",
        description="Stopped after failing too long (pausedReason); enable it to resume "
        "from its position.",
    )
    DISABLED = strawberry.enum_value(
        "DISABLED", description="Turned off by an administrator; nothing is lost meanwhile."
    )


@strawberry.type(description="The entries a stream delivers: the AuditLogFilter it was given.")
class AuditLogStreamFilter:
    event_types: list[AuditEventType] | None = strawberry.field(  # type: ignore[valid-type]
        description="Only these event types; null for all."
    )
    user_email: str | None = strawberry.field(
        description="Only entries whose user's email contains this; null for any."
    )
    from_: datetime | None = strawberry.field(name="from", description="Not before this time.")
    to: datetime | None = strawberry.field(description="Not after this time.")
    ip: str | None = strawberry.field(
        description="Only entries from this address or CIDR range; null for any."
    )
    search: str | None = strawberry.field(
        description="Only entries whose details have all these words; null for any."
    )
    details: JSON | None = strawberry.field(
        description="Only entries whose details contain this JSON object; null for any."
    )


@strawberry.type(
    description=(
        "A destination the organization's audit entries are pushed to, signed, in order, "
        "at least once, with where its delivery stands. Never shows its secret."
    )
)
class AuditLogStream:
    model: strawberry.Private[StreamModel]

    @strawberry.field(description="The stream's ID (pass it to the stream mutations).")
    def id(self) -> strawberry.ID:
        return strawberry.ID(relay.to_base64("AuditLogStream", self.model.pk))

    @strawberry.field(description="Its name, unique in the organization.")
    def name(self) -> str:
        return self.model.name

    @strawberry.field(description="The https:// URL it POSTs to.")
    def url(self) -> str:
        return self.model.url

    @strawberry.field(description="The body format of its requests.")
    def format(self) -> AuditLogStreamFormat:
        return AuditLogStreamFormat(self.model.format)

    @strawberry.field(description="The entries it delivers.")
    def filter(self) -> AuditLogStreamFilter:
        m = self.model
        return AuditLogStreamFilter(
            event_types=[AuditEventType(e) for e in m.event_types] or None,
            user_email=m.user_email or None,
            from_=m.time_from,
            to=m.time_to,
            ip=m.ip or None,
            search=m.search or None,
            details=m.details,
        )

    @strawberry.field(
        description="The name of the credential header sent with every request (its value "
        "is never shown); null for none."
    )
    def credential_header(self) -> str | None:
        return self.model.credential_header or None

    @strawberry.field(description="Whether an administrator has it turned on.")
    def enabled(self) -> bool:
        return self.model.enabled

    @strawberry.field(description="Where its delivery stands.")
    def state(self) -> AuditLogStreamState:
        m = self.model
        if not m.enabled:
            return AuditLogStreamState.DISABLED
        if m.paused_at is not None:
            return AuditLogStreamState.PAUSED
        return AuditLogStreamState.RETRYING if m.failures else AuditLogStreamState.ACTIVE

    @strawberry.field(description="Entries the destination has acknowledged, in all.")
    def delivered_count(self) -> float:
        return float(self.model.delivered)

    @strawberry.field(
        description="The AuditLog ID of the last entry the destination acknowledged; null "
        "before the first."
    )
    def last_delivered_id(self) -> strawberry.ID | None:
        entry = self.model.last_delivered_entry
        return None if entry is None else strawberry.ID(relay.to_base64("AuditLog", entry))

    @strawberry.field(description="When the destination last acknowledged a batch.")
    def last_delivered_at(self) -> datetime | None:
        return self.model.last_delivered_at

    @strawberry.field(
        description="Matching entries recorded but not yet acknowledged (counted now)."
    )
    def lag_events(self) -> float:
        return float(self.lag.events)

    @strawberry.field(
        description="Age in seconds of the oldest entry not yet acknowledged; 0 when "
        "the destination is up to date."
    )
    def lag_seconds(self) -> float:
        return round(self.lag.seconds, 3)

    @strawberry.field(description="Consecutive failed attempts since the last success.")
    def failures(self) -> int:
        return self.model.failures

    @strawberry.field(description="What the last failed attempt got; null if none since.")
    def last_error(self) -> str | None:
        return self.model.last_error or None if self.model.failures else None

    @strawberry.field(description="When the last attempt failed.")
    def last_error_at(self) -> datetime | None:
        return self.model.last_error_at

    @strawberry.field(description="When the next attempt is due after a failure.")
    def next_retry_at(self) -> datetime | None:
        return self.model.next_attempt_at if self.model.failures else None

    @strawberry.field(description="Why it was paused; null unless PAUSED.")
    def paused_reason(self) -> str | None:
        return self.model.paused_reason or None if self.model.paused_at else None

    @strawberry.field(description="When it was created.")
    def created_at(self) -> datetime:
        return self.model.created_at

    lag: strawberry.Private[log_streams.StreamLag]


def _stream(model: StreamModel) -> AuditLogStream:
    return AuditLogStream(model=model, lag=log_streams.audit_log_stream_lag(model))


@strawberry.type(description="A stream and its signing secret, shown this once.")
class AuditLogStreamWithSecret:
    stream: AuditLogStream = strawberry.field(description="The stream.")
    secret: str | None = strawberry.field(
        description='The HMAC-SHA256 key of its X-Audit-Signature header (README, "Log '
        'streams"). Shown only here: it is not stored and cannot be read again. Null when '
        "an update did not rotate it."
    )


@strawberry.type(description="How a destination answered a signed test request.")
class AuditLogStreamTest:
    ok: bool = strawberry.field(description="Whether it answered with a 2xx status.")
    status: int | None = strawberry.field(description="That status; null when it failed.")
    error: str | None = strawberry.field(description="What went wrong; null when ok.")


@strawberry.input(
    description=(
        "A header the destination requires with every request, such as Splunk HEC's "
        "`Authorization: Splunk <token>` or Datadog's `DD-API-KEY: <key>`. Kept sealed "
        "(encrypted with a key derived from the server's SECRET_KEY) and never shown again."
    )
)
class AuditLogStreamCredentialInput:
    header: str = strawberry.field(
        default="Authorization",
        description="The header's name: letters, digits and '-', not one the request "
        "already sets (Host, Content-*, X-Audit-*, ...).",
    )
    value: str = strawberry.field(description="Its value (1-4096 characters, no controls).")


@strawberry.input(description="A new log stream.")
class AuditLogStreamInput:
    name: str = strawberry.field(description="A name, unique in the organization (1-100).")
    url: str = strawberry.field(
        description="An https:// URL; its host must resolve to public addresses only."
    )
    format: AuditLogStreamFormat = strawberry.field(
        default=AuditLogStreamFormat.JSON, description="The body format (default JSON)."
    )
    filter: AuditLogFilterInput | None = strawberry.field(
        default=None, description="Only the entries matching this filter; null for all."
    )
    enabled: bool = strawberry.field(default=True, description="Deliver at once (default).")
    credential: AuditLogStreamCredentialInput | None = strawberry.field(
        default=None, description="A header the destination requires; null for none."
    )


@strawberry.input(description="Changes to a log stream; null fields are left as they are.")
class AuditLogStreamChanges:
    name: str | None = strawberry.field(default=None, description="A new name.")
    url: str | None = strawberry.field(default=None, description="A new https:// URL.")
    format: AuditLogStreamFormat | None = strawberry.field(
        default=None, description="A new format."
    )
    filter: AuditLogFilterInput | None = strawberry.field(
        default=None,
        description="A new filter (an empty one for all entries). Entries already passed "
        "are not sent again.",
    )
    enabled: bool | None = strawberry.field(
        default=None,
        description="false stops delivery; true starts it again (also after a pause), from "
        "where it stopped.",
    )
    rotate_secret: bool = strawberry.field(
        default=False,
        description="Make a new signing secret (returned once); the old one stops at once.",
    )
    credential: AuditLogStreamCredentialInput | None = strawberry.field(
        default=None, description="Replace the header the destination requires."
    )
    remove_credential: bool = strawberry.field(
        default=False, description="Stop sending the stream's credential header."
    )


# The argument every mutation of one stream takes.
StreamId = Annotated[strawberry.ID, strawberry.argument(description="The stream's ID.")]

MANAGE_MESSAGE = (
    "Managing log streams needs a signed-in administrator, or an API token with the "
    "streams:manage scope (manage.py create_api_token EMAIL --scope streams:manage)."
)


class CanManageStreams(BasePermission):
    message = MANAGE_MESSAGE
    error_extensions = {"code": ErrorCode.FORBIDDEN.value}

    async def has_permission(self, source: Any, info: Info[Any, Any], **kwargs: Any) -> bool:
        caller = await context_of(info).caller()
        return caller.token is None or caller.token.has_scope(ApiTokenScope.STREAMS_MANAGE)


STREAM_MANAGERS: list[type[BasePermission]] = [*AUDIT_LOG_READERS, CanManageStreams]


async def _organization(info: Info[Any, Any]) -> Organization:
    user = (await context_of(info).caller()).user
    assert user is not None and user.organization is not None  # AUDIT_LOG_READERS
    return user.organization


def _owned(organization: Organization, stream_id: strawberry.ID) -> StreamModel:
    try:
        type_name, pk = relay.from_base64(stream_id)
        found = StreamModel.objects.select_related("organization").get(
            pk=int(pk), organization=organization
        )
        if type_name != "AuditLogStream":
            raise ValueError
    except (ValueError, TypeError, StreamModel.DoesNotExist):
        raise bad_user_input(
            f"No log stream with id {str(stream_id)[:80]!r} in your organization."
        ) from None
    return found


def _filter(value: AuditLogFilterInput | None) -> AuditLogFilter:
    return value.to_selector_filter() if value is not None else AuditLogFilter()


def _saved(write: Callable[[], tuple[StreamModel, str | None]]) -> AuditLogStreamWithSecret:
    """The stream a service wrote, with its secret if it made one; its refusal as
    BAD_USER_INPUT."""
    try:
        model, secret = write()
    except ValidationError as error:
        raise bad_user_input("; ".join(error.messages) + ".") from None
    return AuditLogStreamWithSecret(stream=_stream(model), secret=secret)


@strawberry.type
class AuditLogStreamQueries:
    @strawberry.field(
        permission_classes=AUDIT_LOG_READERS,
        description="The organization's log streams, oldest first, with their delivery status.",
    )
    async def audit_log_streams(self, info: Info[Any, Any]) -> list[AuditLogStream]:
        organization = await _organization(info)

        def read() -> list[AuditLogStream]:
            return [_stream(m) for m in log_streams.streams_of(organization)]

        return await sync_to_async(read)()


@strawberry.type
class AuditLogStreamMutations:
    @strawberry.mutation(
        permission_classes=STREAM_MANAGERS,
        description="Create a log stream; it delivers what is recorded from now on. Returns "
        "its signing secret, once. Recorded as AUDIT_LOG_STREAM_CREATED.",
    )
    async def create_audit_log_stream(
        self,
        info: Info[Any, Any],
        input: Annotated[AuditLogStreamInput, strawberry.argument(description="The new stream.")],
    ) -> AuditLogStreamWithSecret:
        organization = await _organization(info)
        filters = _filter(input.filter)

        def create() -> AuditLogStreamWithSecret:
            return _saved(
                lambda: log_streams.audit_log_stream_create(
                    organization=organization,
                    name=input.name,
                    url=input.url,
                    format=str(input.format.value),
                    filters=filters,
                    enabled=input.enabled,
                    credential=(
                        (input.credential.header, input.credential.value)
                        if input.credential is not None
                        else None
                    ),
                )
            )

        return await sync_to_async(create)()

    @strawberry.mutation(
        permission_classes=STREAM_MANAGERS,
        description="Change a log stream. Recorded as AUDIT_LOG_STREAM_UPDATED with what changed.",
    )
    async def update_audit_log_stream(
        self,
        info: Info[Any, Any],
        id: StreamId,
        changes: Annotated[
            AuditLogStreamChanges, strawberry.argument(description="What to change.")
        ],
    ) -> AuditLogStreamWithSecret:
        organization = await _organization(info)
        filters = _filter(changes.filter) if changes.filter is not None else log_streams.UNSET

        def update() -> AuditLogStreamWithSecret:
            model = _owned(organization, id)
            given = {
                "name": changes.name,
                "url": changes.url,
                "format": changes.format.value if changes.format is not None else None,
                "enabled": changes.enabled,
            }
            updates: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
            if changes.remove_credential and changes.credential is not None:
                raise bad_user_input("Give credential or removeCredential, not both.")
            if changes.credential is not None:
                updates["credential"] = (changes.credential.header, changes.credential.value)
            elif changes.remove_credential:
                updates["credential"] = None
            return _saved(
                lambda: log_streams.audit_log_stream_update(
                    stream=model, filters=filters, rotate_secret=changes.rotate_secret, **updates
                )
            )

        return await sync_to_async(update)()

    @strawberry.mutation(
        permission_classes=STREAM_MANAGERS,
        description="Delete a log stream; returns its ID. Recorded as AUDIT_LOG_STREAM_DELETED.",
    )
    async def delete_audit_log_stream(
        self,
        info: Info[Any, Any],
        id: StreamId,
    ) -> strawberry.ID:
        organization = await _organization(info)

        def delete() -> strawberry.ID:
            log_streams.audit_log_stream_delete(stream=_owned(organization, id))
            return id

        return await sync_to_async(delete)()

    @strawberry.mutation(
        permission_classes=STREAM_MANAGERS,
        description='Send the destination one signed request with no entries ({"stream": '
        'id, "events": [], "test": true}) and report its answer. Changes nothing.',
    )
    async def test_audit_log_stream(
        self,
        info: Info[Any, Any],
        id: StreamId,
    ) -> AuditLogStreamTest:
        organization = await _organization(info)

        def test() -> AuditLogStreamTest:
            outcome = log_streams.audit_log_stream_test(stream=_owned(organization, id))
            return AuditLogStreamTest(ok=outcome.ok, status=outcome.status, error=outcome.error)

        return await sync_to_async(test)()
