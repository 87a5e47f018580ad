"""Query fields of the audit log API: ``auditLogs``, ``auditLogIntegrity`` and
``auditEventTypes``.

Resolvers stay thin: they check arguments, decode cursors and ask audit/selectors.py,
which owns the organization scope, the filters, the order and the keyset pagination.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import strawberry
from asgiref.sync import sync_to_async
from django.db.models import QuerySet
from strawberry.types import Info
from strawberry.types.nodes import SelectedField, Selection
from strawberry_django.optimizer import OptimizerStore, optimize

from audit.events import AuditEventType as AuditEventVocabulary
from audit.models import AuditLog as AuditLogModel
from audit.models import AuditSeal as AuditSealModel
from audit.selectors import (
    PAGE_SIZE_DEFAULT,
    PAGE_SIZE_MAX,
    AuditLogFilter,
    AuditLogPage,
    AuditLogPosition,
    audit_integrity_status,
    audit_log_count,
    audit_log_page,
)
from audit.totals import TotalTooCostly
from core.models import Organization
from graphql_api.context import context_of
from graphql_api.cursors import InvalidCursor, cursor_decode, cursor_encode_entry
from graphql_api.errors import ErrorCode, bad_user_input, coded_error
from graphql_api.inputs import AuditLogFilterInput
from graphql_api.permissions import AUDIT_LOG_READERS
from graphql_api.types import (
    AuditCheckpoint,
    AuditEventType,
    AuditEventTypeInfo,
    AuditLog,
    AuditLogConnection,
    AuditLogEdge,
    AuditLogIntegrity,
    AuditLogIntegrityStatus,
    PageInfo,
)

_READERS = "Administrators of a Paid-plan organization only (others get UNAUTHENTICATED, FORBIDDEN or PAID_PLAN_REQUIRED)."


def _selected_names(selections: list[Selection]) -> set[str]:
    names: set[str] = set()
    for selection in selections:
        if isinstance(selection, SelectedField):
            names.add(selection.name)
        else:  # a fragment spread or inline fragment on the connection
            names |= _selected_names(selection.selections)
    return names


def _check_page_size(name: str, value: int | None) -> None:
    if value is not None and not 0 <= value <= PAGE_SIZE_MAX:
        raise bad_user_input(f"{name} must be between 0 and {PAGE_SIZE_MAX}; got {value}.")


def _position(name: str, cursor: str | None, organization: Organization) -> AuditLogPosition | None:
    if cursor is None:
        return None
    try:
        return cursor_decode(cursor, organization_id=organization.pk)
    except InvalidCursor as error:
        raise bad_user_input(f"{name}: {error}.") from error


@dataclass(frozen=True, slots=True)
class AuditLogsArguments:
    """The arguments of one ``auditLogs`` field, checked and decoded for the caller's
    organization; BAD_USER_INPUT says what is wrong. Shared by the resolver and the
    compiled read path (graphql_api/compiled.py), so both refuse the same input."""

    organization: Organization
    filters: AuditLogFilter
    first: int | None
    after: AuditLogPosition | None
    last: int | None
    before: AuditLogPosition | None

    @classmethod
    def checked(
        cls,
        organization: Organization,
        filter: AuditLogFilterInput | None,
        first: int | None,
        after: str | None,
        last: int | None,
        before: str | None,
    ) -> AuditLogsArguments:
        filters = filter.to_selector_filter() if filter is not None else AuditLogFilter()
        _check_page_size("first", first)
        _check_page_size("last", last)
        return cls(
            organization=organization,
            filters=filters,
            first=first,
            after=_position("after", after, organization),
            last=last,
            before=_position("before", before, organization),
        )

    @property
    def total_key(self) -> tuple[str, int, AuditLogFilter]:
        """What makes two fields' totals the same number, for the request's memo."""
        return ("audit_log_total", self.organization.pk, self.filters)

    def read(
        self,
        *,
        page: bool,
        with_total: bool,
        prepare: Callable[[QuerySet[AuditLogModel]], QuerySet[AuditLogModel]] | None = None,
        columns: Sequence[str] | None = None,
        guard: Any = None,
    ) -> AuditLogPage:
        """The page (when ``page``: edges or pageInfo are selected) and the total (when
        ``with_total``), in one statement; only the total, or nothing, otherwise. With
        ``columns`` (names of audit/page_sql.py's ``COLUMNS``), the entries are named
        tuples of them, read by a statement written directly; else model instances,
        narrowed by ``prepare``. ``guard``: see ``audit_log_page``."""
        try:
            return self._read(
                page=page, with_total=with_total, prepare=prepare, columns=columns, guard=guard
            )
        except TotalTooCostly as refused:
            raise coded_error(
                ErrorCode.TOTAL_COUNT_TOO_COSTLY,
                f"totalCount would count more than {refused.limit:,} entries for this ip, "
                "search or details filter; narrow it (from/to, a smaller range, more words) "
                "or leave totalCount out: pages are read without counting.",
                limit=refused.limit,
            ) from None

    def _read(
        self,
        *,
        page: bool,
        with_total: bool,
        prepare: Callable[[QuerySet[AuditLogModel]], QuerySet[AuditLogModel]] | None,
        columns: Sequence[str] | None,
        guard: Any,
    ) -> AuditLogPage:
        if page:
            return audit_log_page(
                organization=self.organization,
                filters=self.filters,
                first=self.first,
                after=self.after,
                last=self.last,
                before=self.before,
                with_total=with_total,
                prepare=prepare,
                columns=columns,
                guard=guard,
            )
        count = (
            audit_log_count(organization=self.organization, filters=self.filters)
            if with_total
            else None
        )
        return AuditLogPage(
            entries=[], has_next_page=False, has_previous_page=False, total_count=count
        )


def entry_cursor(organization: Organization, entry: Any) -> str:
    return cursor_encode_entry(organization.pk, entry)


def audit_log_connection(
    organization: Organization, page: AuditLogPage, *, total: int | None
) -> AuditLogConnection:
    """The connection of a page: an edge with its cursor per entry (a model instance, or a
    row with the columns read, resolves as the AuditLog type), and the page's flags."""
    edges = [
        AuditLogEdge(cursor=entry_cursor(organization, entry), node=entry) for entry in page.entries
    ]
    return AuditLogConnection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.has_next_page,
            has_previous_page=page.has_previous_page,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
        total=total,
    )


def _checkpoint(seal: AuditSealModel | None) -> AuditCheckpoint | None:
    if seal is None:
        return None
    return AuditCheckpoint(sequence=seal.sequence, sealed_at=seal.sealed_at, entries=seal.entries)


def audit_log_integrity_of(organization: Organization) -> AuditLogIntegrity:
    """The auditLogIntegrity value of an organization (reads the database)."""
    found = audit_integrity_status(organization=organization)
    verification = found.verification
    if verification is None:
        status = AuditLogIntegrityStatus.NOT_VERIFIED
    else:
        status = (
            AuditLogIntegrityStatus.VERIFIED if verification.ok else AuditLogIntegrityStatus.FAILED
        )
    return AuditLogIntegrity(
        status=status,
        verified_at=verification.verified_at if verification else None,
        last_verified_checkpoint=_checkpoint(found.verified_checkpoint),
        entries_verified=verification.entries if verification else 0,
        entries_pruned=verification.pruned if verification else 0,
        entries_not_yet_sealed=verification.unsealed if verification else 0,
        problem=(verification.problem or None) if verification else None,
        newest_checkpoint=_checkpoint(found.newest_checkpoint),
    )


def audit_event_types() -> list[AuditEventTypeInfo]:
    return [
        AuditEventTypeInfo(value=AuditEventType(member.value), description=member.label)
        for member in AuditEventVocabulary
    ]


@strawberry.type
class AuditLogQueries:
    @strawberry.field(
        permission_classes=AUDIT_LOG_READERS,
        description=(
            "The caller's organization's audit entries, newest first, as a Relay "
            "connection with keyset cursors: entries recorded while a client pages never "
            "shift or repeat what it sees. Without first and last, the first "
            f"{PAGE_SIZE_DEFAULT}. {_READERS}"
        ),
    )
    async def audit_logs(
        self,
        info: Info[Any, Any],
        filter: Annotated[
            AuditLogFilterInput | None,
            strawberry.argument(description="Which entries to list; null for all."),
        ] = None,
        first: Annotated[
            int | None,
            strawberry.argument(
                description=f"The newest N entries of the range, 0 to {PAGE_SIZE_MAX}; more is BAD_USER_INPUT."
            ),
        ] = None,
        after: Annotated[
            str | None,
            strawberry.argument(
                description="Only entries older than the entry of this cursor (from edges.cursor or pageInfo.endCursor)."
            ),
        ] = None,
        last: Annotated[
            int | None,
            strawberry.argument(
                description=f"The oldest N entries of the range, 0 to {PAGE_SIZE_MAX}; more is BAD_USER_INPUT. With before, pages backwards."
            ),
        ] = None,
        before: Annotated[
            str | None,
            strawberry.argument(
                description="Only entries newer than the entry of this cursor (from edges.cursor or pageInfo.startCursor)."
            ),
        ] = None,
    ) -> AuditLogConnection:
        context = context_of(info)
        user = (await context.caller()).user
        assert user is not None  # the permission classes let only readers through
        organization = user.organization
        assert organization is not None  # an administrator belongs to an organization
        arguments = AuditLogsArguments.checked(organization, filter, first, after, last, before)

        # Every node of the field: the same response key may be selected more than once.
        wanted = _selected_names([s for f in info.selected_fields for s in f.selections])
        # The total is computed once per request: the first field to want it computes it
        # and publishes a future that any other (aliased) auditLogs field awaits.
        total_key = arguments.total_key
        total: asyncio.Future[int] | None = context.memo.get(total_key)
        with_total = "totalCount" in wanted and total is None
        if with_total:
            total = context.memo[total_key] = asyncio.get_running_loop().create_future()

        def load_selected_columns(queryset: QuerySet[AuditLogModel]) -> QuerySet[AuditLogModel]:
            # Columns of the selected node fields, plus what cursors are made of.
            return optimize(queryset, info, store=OptimizerStore(only=["id", "time"]))

        try:
            page = await sync_to_async(arguments.read)(
                page=bool(wanted & {"edges", "pageInfo"}),
                with_total=with_total,
                prepare=load_selected_columns,
            )
        except BaseException:
            if with_total and total is not None:
                total.cancel()
            raise
        if with_total and total is not None:
            assert page.total_count is not None
            total.set_result(page.total_count)

        return audit_log_connection(
            organization,
            page,
            total=await total if "totalCount" in wanted and total is not None else None,
        )

    @strawberry.field(
        permission_classes=AUDIT_LOG_READERS,
        description=(
            "Tamper evidence of the caller's organization's audit log: the latest "
            f"verification of its signed checkpoints and the newest checkpoint. {_READERS}"
        ),
    )
    async def audit_log_integrity(self, info: Info[Any, Any]) -> AuditLogIntegrity:
        user = (await context_of(info).caller()).user
        assert user is not None and user.organization is not None  # a reader, as above
        return await sync_to_async(audit_log_integrity_of)(user.organization)

    @strawberry.field(
        description=(
            "Every audit event type with its description, in a fixed order (for a filter "
            "dropdown). Open to every caller: the vocabulary is public."
        )
    )
    def audit_event_types(self) -> list[AuditEventTypeInfo]:
        return audit_event_types()


__all__ = ["AuditLog", "AuditLogQueries"]
