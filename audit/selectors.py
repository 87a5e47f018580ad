"""Reading audit entries: the one place that scopes to an organization, applies the
filters of the auditLogs API and fixes the order (newest first: ``time`` DESC, ``id`` DESC).

Every read of audit data goes through here, so that no caller can forget the
organization: it is a required argument, not a filter.

Filters are defined in audit/filters.py; totals come from rollups (audit/totals.py).

The live stream (audit/stream.py) reads in stream order, ``(stream_txid, id)`` ascending,
through ``audit_log_stream``, and replays by time through ``audit_log_replay``.

Pages are keyset pages: a position is an entry's ``(time, id)``, and a page is the run of
entries strictly after (older than) or before (newer than) a position, read from the index
with a row comparison. There is no OFFSET anywhere, so a page 10,000 deep costs what the
first page costs, and entries inserted while a client pages never shift what it sees.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import BigIntegerField, BooleanField, F, Q, QuerySet, Subquery, TextField
from django.db.models.expressions import RawSQL
from django.db.models.fields.tuple_lookups import (
    Tuple,
    TupleGreaterThan,
    TupleGreaterThanOrEqual,
    TupleLessThan,
    TupleLessThanOrEqual,
)
from django.db.models.functions import Cast

from audit.filters import (
    MATCHED_EMAILS,
    USER_EMAIL_MAX_LENGTH,
    AuditLogFilter,
    actor_emails_matching,
    event_condition,
    event_values,
    matched_emails_sql,
    search_conditions,
    search_q,
)
from audit.models import AuditLog, AuditSeal, AuditVerification
from audit.totals import audit_log_total, audit_log_total_sql, checked_total
from core.models import Organization

__all__ = [
    "PAGE_SIZE_DEFAULT",
    "PAGE_SIZE_MAX",
    "USER_EMAIL_MAX_LENGTH",
    "AuditLogFilter",
    "AuditLogPage",
    "AuditLogPosition",
    "audit_log_count",
    "audit_log_export_batch",
    "audit_log_list",
    "audit_log_page",
    "audit_log_replay",
    "audit_log_stream",
    "page_of",
]

ORDER = ("-time", "-id")
PAGE_SIZE_MAX = 100
PAGE_SIZE_DEFAULT = 50


def audit_log_list(
    *, organization: Organization, filters: AuditLogFilter | None = None
) -> QuerySet[AuditLog]:
    """The organization's entries matching ``filters``, newest first."""
    f = filters or AuditLogFilter()
    queryset = AuditLog.objects.filter(organization=organization)
    if f.event_types is not None:
        queryset = queryset.filter(event_condition(f.event_types))
    if f.user_email is not None:
        queryset = queryset.filter(
            actor_email__in=actor_emails_matching(organization, f.user_email)
        )
    if f.time_from is not None:
        queryset = queryset.filter(time__gte=f.time_from)
    if f.time_to is not None:
        queryset = queryset.filter(time__lte=f.time_to)
    for condition in search_q(f, organization.pk):
        queryset = queryset.filter(condition)
    return queryset.order_by(*ORDER)


def audit_log_count(*, organization: Organization, filters: AuditLogFilter | None = None) -> int:
    """How many entries ``audit_log_list`` would return: exact, from the rollups
    (audit/totals.py), without counting the entries themselves."""
    sql, params = audit_log_total_sql(organization=organization, filters=filters)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {sql} AS audit_total", params)
        row = cursor.fetchone()
    return checked_total(int(row[0]))


@dataclass(frozen=True, order=True)
class AuditLogPosition:
    """Where an entry sits in the newest-first order; what a cursor points at."""

    time: datetime
    id: int

    @classmethod
    def of(cls, entry: Any) -> AuditLogPosition:
        """The position of an entry: an AuditLog, or a row with its ``time`` and ``id``."""
        return cls(time=entry.time, id=entry.id)


@dataclass(frozen=True)
class AuditLogPage:
    """One page, newest first, with the Relay page flags. ``total_count`` is the number of
    entries matching the filter (cursors ignored); None when it was not asked for."""

    entries: list[Any]  # AuditLog instances, or named tuples (audit_log_page's columns)
    has_next_page: bool
    has_previous_page: bool
    total_count: int | None = None


def _key() -> Tuple:
    return Tuple(F("time"), F("id"))


def _email_page_ids(
    organization: Organization,
    f: AuditLogFilter,
    after: AuditLogPosition | None,
    before: AuditLogPosition | None,
    forward: bool,
    limit: int,
    *,
    cte: bool = False,
) -> RawSQL:
    """The ids of an email search's page, found per matched address: the first ``limit``
    entries of each address's range of the (organization, actor_email, time, id) index,
    merged. Bounded by addresses x page size, however many entries the addresses have;
    the plain ``actor_email IN (...)`` form let PostgreSQL read every entry of every
    matched address and sort them (39 ms instead of 1 ms at 1M entries; profiling notes
    in docs/PERFORMANCE.md). Every value is a query parameter.

    Most addresses give the page a few entries, not ``limit``, so a bound comes first:
    each address's first ``limit // addresses + 1`` entries, and the ``limit``-th of
    those in page order (``page_bound``). At least ``limit`` matching entries reach that
    far, so the page ends at it or before it, and each address is read only up to it: 25
    addresses read about 75 + 50 entries instead of 25 x 51. Without such an entry (fewer
    found), there is no bound and each address is read up to ``limit``, as before."""
    assert f.user_email is not None
    conditions = ["x.organization_id = %s", "x.actor_email = d.email"]
    params: list[Any] = [organization.pk]
    if f.event_types is not None:
        conditions.append("x.event = ANY(%s)")
        params.append(event_values(f.event_types))
    if f.time_from is not None:
        conditions.append("x.time >= %s")
        params.append(f.time_from)
    if f.time_to is not None:
        conditions.append("x.time <= %s")
        params.append(f.time_to)
    searched, searched_params = search_conditions("x", f, organization.pk)
    conditions += searched
    params += searched_params
    if after is not None:
        conditions.append("(x.time, x.id) < (%s, %s)")
        params += [after.time, after.id]
    if before is not None:
        conditions.append("(x.time, x.id) > (%s, %s)")
        params += [before.time, before.id]
    order = "DESC" if forward else "ASC"
    # Up to the bound, in page order; no bound: every time is within reach.
    reach, unbounded = (">=", "-infinity") if forward else ("<=", "infinity")
    entries = f"SELECT x.time, x.id FROM audit_log x WHERE {' AND '.join(conditions)}"  # noqa: S608
    in_order = f"ORDER BY x.time {order}, x.id {order}"
    # The addresses: the statement's own CTE, or one of this subquery's.
    emails_params: list[Any] = []
    addresses, with_emails = MATCHED_EMAILS, ""
    if not cte:
        emails, emails_params = matched_emails_sql(organization, f.user_email)
        addresses, with_emails = "page_emails", f"page_emails AS MATERIALIZED ({emails}),"
    # Fixed fragments only; every value is a parameter.
    sql = (
        f"WITH {with_emails}"  # noqa: S608
        f" page_bound AS (SELECT k.time, k.id FROM {addresses} d CROSS JOIN LATERAL ("
        f"{entries} {in_order}"
        f" LIMIT (SELECT %s / GREATEST(count(*), 1) + 1 FROM {addresses})) k"
        f" ORDER BY k.time {order}, k.id {order} OFFSET %s LIMIT 1)"
        f" SELECT k.id FROM {addresses} d CROSS JOIN LATERAL ("
        f"{entries} AND (x.time, x.id) {reach} ("
        f"COALESCE((SELECT time FROM page_bound), '{unbounded}'::timestamptz),"
        " COALESCE((SELECT id FROM page_bound), 0))"
        f" {in_order} LIMIT %s) k"
        f" ORDER BY k.time {order}, k.id {order} LIMIT %s"
    )
    return RawSQL(  # noqa: S611
        sql, [*emails_params, *params, limit, limit - 1, *params, limit, limit]
    )


def _nearest(queryset: QuerySet[AuditLog]) -> Subquery:
    return Subquery(queryset.values("id")[:1], output_field=BigIntegerField())


def audit_log_page(
    *,
    organization: Organization,
    filters: AuditLogFilter | None = None,
    first: int | None = None,
    after: AuditLogPosition | None = None,
    last: int | None = None,
    before: AuditLogPosition | None = None,
    with_total: bool = False,
    prepare: Callable[[QuerySet[AuditLog]], QuerySet[AuditLog]] | None = None,
    columns: Sequence[str] | None = None,
    guard: Any = None,
) -> AuditLogPage:
    """A keyset page of the organization's entries matching ``filters``, per the Relay
    connection algorithm: the entries strictly older than ``after`` and newer than
    ``before``, then the newest ``first`` of them, then the oldest ``last`` of those.
    Without ``first`` and ``last``, ``first`` is PAGE_SIZE_DEFAULT.

    ``has_previous_page`` / ``has_next_page`` are exact: whether a matching entry newer
    than the page's first / older than its last exists, inside the window or past
    ``after`` / ``before``.
    ``prepare`` may narrow the page's queryset (columns to load, annotations); it must not
    filter. With ``columns``, the entries are named tuples of those fields (annotations
    included) instead of model instances: lighter, for a reader that only reads them; and
    without ``prepare`` the statement is written directly instead of by the ORM
    (audit/page_sql.py, whose test holds it to this function's answers), with
    ``columns`` named from its ``COLUMNS``, and ``guard`` (a CredentialsGuard of
    core/authentication.py) checked in the same statement.

    One SQL statement: the page, with the total and the look past the cursor attached as
    subqueries (a second, single-row statement only when the page is empty).
    """
    for name, size in (("first", first), ("last", last)):
        if size is not None and not 0 <= size <= PAGE_SIZE_MAX:
            raise ValueError(f"{name} must be between 0 and {PAGE_SIZE_MAX}")
    if columns is not None and prepare is None:
        from audit.page_sql import audit_log_page_rows

        return audit_log_page_rows(
            organization=organization,
            filters=filters,
            first=first,
            after=after,
            last=last,
            before=before,
            with_total=with_total,
            columns=columns,
            guard=guard,
        )
    if guard is not None:
        raise ValueError("a guard needs columns and no prepare")
    matching = audit_log_list(organization=organization, filters=filters)
    window = matching
    if after is not None:
        window = window.filter(TupleLessThan(_key(), (after.time, after.id)))
    if before is not None:
        window = window.filter(TupleGreaterThan(_key(), (before.time, before.id)))

    forward = first is not None or last is None
    size = (first if first is not None else PAGE_SIZE_DEFAULT) if forward else last
    assert size is not None
    page = window if forward else window.order_by("time", "id")
    if filters is not None and filters.user_email is not None:
        # The ids already hold every condition: the page reads those entries by id (as
        # ``IN``, PostgreSQL read every matching entry to join them).
        ids = _email_page_ids(organization, filters, after, before, forward, size + 1)
        page = AuditLog.objects.filter(organization=organization).filter(
            RawSQL(f'"audit_log"."id" = ANY(ARRAY({ids.sql}))', ids.params, BooleanField())  # noqa: S611
        )
        page = page.order_by(*(ORDER if forward else ("time", "id")))
    if prepare is not None:
        page = prepare(page)

    extras: dict[str, Any] = {}
    if with_total:
        extras["audit_total"] = audit_log_total(organization=organization, filters=filters)
    # Matching entries outside the window: newer than ``after`` (the entry itself
    # included) and older than ``before``. The nearest one's id, read in index order from
    # the cursor, so each costs one index probe.
    if after is not None:
        extras["audit_newer"] = _nearest(
            matching.filter(TupleGreaterThanOrEqual(_key(), (after.time, after.id))).order_by(
                "time", "id"
            )
        )
    if before is not None:
        extras["audit_older"] = _nearest(
            matching.filter(TupleLessThanOrEqual(_key(), (before.time, before.id)))
        )

    query = page.annotate(**extras) if extras else page
    if columns is not None:
        query = query.values_list(*columns, *extras, named=True)  # type: ignore[assignment]
    rows: list[Any] = list(query[: size + 1])
    if rows:
        summary = {name: getattr(rows[0], name) for name in extras}
    elif extras:
        summary = (
            Organization.objects.filter(pk=organization.pk).annotate(**extras).values(*extras).get()
        )
    else:
        summary = {}
    return page_of(rows, summary, size=size, forward=forward, last=last, with_total=with_total)


def page_of(
    rows: list[Any],
    summary: dict[str, Any],
    *,
    size: int,
    forward: bool,
    last: int | None,
    with_total: bool,
) -> AuditLogPage:
    """The page and its flags from the rows read (at most ``size + 1``, in read order) and
    the summary values (``audit_total``, ``audit_newer``, ``audit_older``): the Relay
    algorithm's last steps, shared by every reader of pages."""
    newer_outside = summary.get("audit_newer") is not None
    older_outside = summary.get("audit_older") is not None
    more = len(rows) > size  # beyond the page, inside the window
    rows = rows[:size]

    if forward:
        has_next, has_previous = more or older_outside, newer_outside
        if last is not None and len(rows) > last:
            rows = rows[len(rows) - last :]
            has_previous = True
    else:
        has_next, has_previous = older_outside, more or newer_outside
        rows.reverse()

    return AuditLogPage(
        entries=rows,
        has_next_page=has_next,
        has_previous_page=has_previous,
        total_count=checked_total(summary["audit_total"]) if with_total else None,
    )


# --- the live stream -----------------------------------------------------------------------

# An entry's place in the stream: (stream_txid, id).
StreamPosition = tuple[int, int]


def audit_log_stream(
    *,
    organization_ids: list[int],
    filters: AuditLogFilter | None = None,
    after: StreamPosition,
    through: StreamPosition | None = None,
    below: int | None = None,
) -> QuerySet[AuditLog]:
    """Entries of these organizations in stream order, strictly after ``after``, up to
    ``through`` (inclusive) and only of transactions older than ``below``. ``filters``
    needs exactly one organization. Entries recorded before the stream existed (no
    ``stream_txid``) are never part of it."""
    if filters is not None:
        (organization_id,) = organization_ids
        queryset = audit_log_list(organization=Organization(pk=organization_id), filters=filters)
    else:
        queryset = AuditLog.objects.filter(organization_id__in=organization_ids)
    queryset = queryset.filter(
        TupleGreaterThan(Tuple(F("stream_txid"), F("id")), after), stream_txid__isnull=False
    )
    if through is not None:
        queryset = queryset.filter(TupleLessThanOrEqual(Tuple(F("stream_txid"), F("id")), through))
    if below is not None:
        queryset = queryset.filter(stream_txid__lt=below)
    return queryset.order_by("stream_txid", "id")


def audit_log_replay(
    *,
    organization: Organization,
    filters: AuditLogFilter | None = None,
    newer_than: AuditLogPosition,
    snapshot: str,
) -> QuerySet[AuditLog]:
    """The organization's entries matching ``filters`` that are newer (by time, then id)
    than ``newer_than`` and were committed as of ``snapshot`` (a ``pg_snapshot``'s text),
    oldest first: what a stream resumed from an auditLogs cursor replays."""
    visible = RawSQL(
        "(stream_txid IS NULL OR pg_visible_in_snapshot(stream_txid, %s::pg_snapshot))",
        [snapshot],
        output_field=BooleanField(),
    )
    return (
        audit_log_list(organization=organization, filters=filters)
        .filter(TupleGreaterThan(_key(), (newer_than.time, newer_than.id)))
        .filter(Q(visible))
        .order_by("time", "id")
    )


# --- tamper evidence ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditIntegrityStatus:
    """The latest verification of an organization's chain, the last checkpoint it found
    intact, and the newest checkpoint."""

    verification: AuditVerification | None
    verified_checkpoint: AuditSeal | None
    newest_checkpoint: AuditSeal | None


def audit_integrity_status(*, organization: Organization) -> AuditIntegrityStatus:
    verification = (
        AuditVerification.objects.filter(organization=organization).order_by("-verified_at").first()
    )
    checkpoints = AuditSeal.objects.filter(organization=organization).only(
        "sequence", "entries", "sealed_at"
    )
    verified = None
    if verification is not None and verification.last_sequence is not None:
        verified = checkpoints.filter(sequence=verification.last_sequence).first()
    return AuditIntegrityStatus(
        verification=verification,
        verified_checkpoint=verified,
        newest_checkpoint=checkpoints.order_by("-sequence").first(),
    )


# --- export ---------------------------------------------------------------------------------

# What an exported entry is made of, in this order (audit/exporting.py): the details as
# PostgreSQL's own JSON text, so they are written out without being parsed.
EXPORT_COLUMNS = ("id", "event", "actor_email", "actor_name", "ip", "details_json", "time")
ExportRow = tuple[int, str, str | None, str | None, str | None, str, datetime]


def audit_log_export_batch(
    *,
    organization: Organization,
    filters: AuditLogFilter | None,
    before: AuditLogPosition | None,
    size: int,
) -> list[ExportRow]:
    """The next ``size`` entries of ``audit_log_list``, newest first, older than
    ``before``: one keyset query per batch, so an export of any length holds one batch at a
    time and no transaction open between batches."""
    queryset = audit_log_list(organization=organization, filters=filters)
    if before is not None:
        queryset = queryset.filter(TupleLessThan(_key(), (before.time, before.id)))
    rows = queryset.annotate(details_json=Cast("details", TextField())).values_list(
        *EXPORT_COLUMNS
    )[:size]
    return list(rows)  # type: ignore[arg-type]
