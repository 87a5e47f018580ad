"""GraphQL output types of the audit log API (names are the published contract).

``AuditEventType`` is generated from audit/events.py, the one definition of the vocabulary:
adding an event type there adds it here, with its description.
"""

from __future__ import annotations

import enum
from datetime import datetime
from functools import cached_property
from typing import Any

import strawberry
import strawberry_django
from strawberry import relay
from strawberry.scalars import JSON
from strawberry_django.fields.field import StrawberryDjangoField

from audit.events import AuditEventType as AuditEventVocabulary
from audit.models import AuditLog as AuditLogModel
from audit.selectors import PAGE_SIZE_MAX
from graphql_api.details import AuditDetails, typed_details

AuditEventType: Any = strawberry.enum(  # type: ignore[call-overload]
    enum.Enum(  # type: ignore[misc]
        "AuditEventType",
        {
            member.name: strawberry.enum_value(member.value, description=member.label)
            for member in AuditEventVocabulary
        },
    ),
    description=(
        "The kind of action an audit entry records. The list is closed: values are only "
        "ever added, never renamed or removed."
    ),
)


@strawberry.type(description="An event type with its human description, for a filter dropdown.")
class AuditEventTypeInfo:
    value: AuditEventType = strawberry.field(  # type: ignore[valid-type]
        description="The enum value, as used in AuditLogFilter.eventType."
    )
    description: str = strawberry.field(description="What the event means, in plain English.")


@strawberry.type(
    description=(
        "The user who performed an action, as recorded when it happened: the email and "
        "name are snapshots, so an entry still reads right after the user is renamed or "
        "deleted."
    )
)
class AuditUser:
    id: strawberry.ID | None = strawberry.field(
        description="The user's ID; null once the user has been deleted."
    )
    email: str = strawberry.field(description="The user's email when the action happened.")
    name: str | None = strawberry.field(
        description="The user's name when the action happened; null if it was not set."
    )


class EntryField(StrawberryDjangoField):
    """A field of AuditLog computed from the entry's loaded columns alone.

    strawberry-django resolves every field of a model type through its own machinery,
    made for relations, deferred columns and querysets, and strawberry adds its argument
    and extension handling around any field with a resolver. An entry field needs none of
    it: the page query loads the columns of every selected field (the optimizer reads them
    from these fields, graphql_api/queries.py), so the field is a plain function of the
    entry and takes strawberry's fast path for fields without a resolver. A page of 50
    entries executes in 5.4 ms instead of 8.3 ms (docs/PERFORMANCE.md).
    """

    @property
    def is_basic_field(self) -> bool:
        return True

    def get_result(self, source: Any, info: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if self.base_resolver is None:
            return getattr(source, self.attname)
        # As strawberry calls a resolver on a type: both self and root are the entry.
        return self.base_resolver(source, source)

    @cached_property
    def attname(self) -> str:
        return self.django_name or self.python_name


def entry_field(description: str, **options: Any) -> Any:
    return strawberry_django.field(field_cls=EntryField, description=description, **options)


def audit_user_id(user_pk: int) -> strawberry.ID:
    return strawberry.ID(relay.to_base64("User", user_pk))


@strawberry_django.type(
    AuditLogModel,
    name="AuditLog",
    description=(
        "One recorded action of an organization. Entries are append-only: nobody edits or "
        "deletes one through the product. Readable only by administrators of a Paid-plan "
        "organization, for their own organization."
    ),
)
class AuditLog(relay.Node):
    # The model's id is the node's id. Declared, so that strawberry does not search the
    # annotations for it on every entry of every page.
    id: relay.NodeID[int]
    event: AuditEventType = entry_field("What happened.")  # type: ignore[valid-type]

    @entry_field(
        "Who did it; null for system events (such as SESSION_EXPIRED), which have no user.",
        only=["actor_id", "actor_email", "actor_name"],
    )
    def user(self, root: AuditLogModel) -> AuditUser | None:
        if root.actor_email is None:
            return None
        return AuditUser(
            id=audit_user_id(root.actor_id) if root.actor_id is not None else None,
            email=root.actor_email,
            name=root.actor_name or None,
        )

    ip: str | None = entry_field(
        "The client's IP address (behind trusted proxies, the real client's); null "
        "when the action did not come from a request, e.g. system events."
    )
    details: JSON = entry_field(
        "A JSON object with the event's context: the resource, session or role "
        "concerned. Always an object, possibly empty."
    )
    time: datetime = entry_field("When it happened, in UTC (ISO 8601).")

    @entry_field(
        "The same details as a typed value: one type per family of event types, each key "
        "a described field (JSON Schema of the same definitions: /schemas/audit-details.json). "
        "UncheckedDetails when the details do not have their event type's shape.",
        only=["event", "details"],
    )
    def details_typed(self, root: AuditLogModel) -> AuditDetails:  # type: ignore[valid-type]
        return typed_details(root.event, root.details)


@strawberry.type(
    name="AuditLogEdge", description="An audit entry and the cursor that points at it."
)
class AuditLogEdge(relay.Edge[AuditLog]):
    cursor: str = strawberry.field(
        description=(
            "An opaque cursor for this entry: pass it as `after` or `before` to page from "
            "here. Valid only for the organization it was issued to."
        )
    )
    node: AuditLog = strawberry.field(description="The audit entry.")


@strawberry.type(description="Where a page sits in the whole list of matching entries.")
class PageInfo:
    has_next_page: bool = strawberry.field(
        description="Whether older matching entries exist beyond this page."
    )
    has_previous_page: bool = strawberry.field(
        description="Whether newer matching entries exist before this page."
    )
    start_cursor: str | None = strawberry.field(
        description="The cursor of the first (newest) entry of the page; null if it is empty."
    )
    end_cursor: str | None = strawberry.field(
        description="The cursor of the last (oldest) entry of the page; null if it is empty."
    )


@strawberry.type(
    name="AuditLogConnection",
    description=(
        f"A page of audit entries, newest first (time, then id, descending), at most "
        f"{PAGE_SIZE_MAX} per page, with the total number of matching entries."
    ),
)
class AuditLogConnection(relay.Connection[AuditLog]):
    page_info: PageInfo = strawberry.field(  # type: ignore[assignment]
        description="Whether more entries exist on either side of this page, and its cursors."
    )
    edges: list[AuditLogEdge] = strawberry.field(  # type: ignore[assignment]
        description="The entries of this page, newest first."
    )
    # Filled in by the auditLogs resolver when, and only when, totalCount is selected.
    total: strawberry.Private[int | None] = None

    @strawberry.field(
        description=(
            "How many entries match the filter, across all pages (cursors do not change "
            "it). Exact, counted only when selected, and from the same database snapshot "
            "as the edges."
        )
    )
    def total_count(self) -> int:
        if self.total is None:
            raise RuntimeError("totalCount was resolved but not computed")
        return self.total


@strawberry.enum(description="The outcome of the latest verification of the audit log.")
class AuditLogIntegrityStatus(enum.Enum):
    VERIFIED = strawberry.enum_value(
        "VERIFIED", description="Every sealed entry and checkpoint verified."
    )
    FAILED = strawberry.enum_value(
        "FAILED", description="Verification found a problem; see problem."
    )
    NOT_VERIFIED = strawberry.enum_value(
        "NOT_VERIFIED", description="The log has not been verified yet."
    )


@strawberry.type(
    description=(
        "A signed checkpoint: a run of entries, in the order they were recorded, sealed "
        "with a digest of each and a signature by a key the database does not hold."
    )
)
class AuditCheckpoint:
    sequence: int = strawberry.field(description="1 for the first checkpoint, then 2, 3, ...")
    sealed_at: datetime = strawberry.field(description="When it was sealed (UTC).")
    entries: int = strawberry.field(description="How many entries it seals.")


@strawberry.type(
    description=(
        "Tamper evidence of the caller's organization's audit log: whether the latest "
        "verification (manage.py verify_audit_log) found every sealed entry as it was "
        "recorded, and how far it got."
    )
)
class AuditLogIntegrity:
    status: AuditLogIntegrityStatus = strawberry.field(
        description="The latest verification's outcome."
    )
    verified_at: datetime | None = strawberry.field(
        description="When the latest verification ran; null if never."
    )
    last_verified_checkpoint: AuditCheckpoint | None = strawberry.field(
        description=(
            "The last checkpoint the latest verification found intact, with every entry "
            "before it; null if none."
        )
    )
    entries_verified: int = strawberry.field(
        description="Sealed entries the latest verification found intact."
    )
    entries_pruned: int = strawberry.field(
        description=(
            "Sealed entries the retention policy has removed since; they verify as pruned."
        )
    )
    entries_not_yet_sealed: int = strawberry.field(
        description=(
            "Entries recorded after the newest checkpoint at that verification: not "
            "covered by it yet."
        )
    )
    problem: str | None = strawberry.field(
        description="What the latest verification found wrong, naming the entry; null if nothing."
    )
    newest_checkpoint: AuditCheckpoint | None = strawberry.field(
        description="The newest checkpoint, which may be newer than the latest verification."
    )
