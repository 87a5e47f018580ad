"""Exporting entries as files: CSV for people, JSONL for machines (and for
``import_audit_events``, which reads it back).

The entries come in batches from ``audit_log_export_batch`` (newest first, one keyset
query each), so memory holds one batch whatever the length of the export; the HTTP
endpoint (graphql_api/exports.py) and ``manage.py export_audit_logs`` both write what
``encode`` makes of each batch.

* CSV columns: Event, User (the actor's email when it acted), IP, Details (JSON), Time
  (ISO 8601, UTC), ID. A cell that a spreadsheet would read as a formula (starting with
  ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) gets a leading ``'``.
* JSONL: one object per line with ``id``, ``event``, ``time``, and ``user_email``,
  ``user_name``, ``ip``, ``details`` when set: the import format of
  ``import_audit_events`` (which ignores ``id``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from audit.events import AuditEventType
from audit.filters import AuditLogFilter, filter_query
from audit.selectors import AuditLogPosition, ExportRow, audit_log_export_batch
from audit.services import UNSET, Unset, audit_log_record
from audit.storable import text_problem
from core.models import Organization, User

FORMATS = ("csv", "jsonl")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
CSV_HEADER = ("Event", "User", "IP", "Details", "Time", "ID")
BATCH_SIZE = 5_000
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


PARAMETERS = frozenset(
    {"format", "eventType", "userEmail", "from", "to", "ip", "search", "details"}
)


class BadParameter(ValueError):
    pass


def _time(name: str, raw: str | None) -> datetime | None:
    if raw is None or raw == "":
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise BadParameter(f"{name} must be an ISO 8601 date-time; got {raw[:50]!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_parameters(query: Any) -> tuple[str, AuditLogFilter]:
    """The format and the filter of a request's query string (a QueryDict)."""
    unknown = set(query) - PARAMETERS
    if unknown:
        raise BadParameter(
            f"unknown parameter(s): {', '.join(sorted(unknown))}; allowed: "
            f"{', '.join(sorted(PARAMETERS))}"
        )
    for name, values in query.lists():
        for value in values:
            if (unstorable := text_problem(value)) is not None:
                raise BadParameter(f"{name} {unstorable}")
    fmt = query.get("format") or "csv"
    if fmt not in FORMATS:
        raise BadParameter(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    event_types = query.getlist("eventType")
    for value in event_types:
        if value not in AuditEventType.values:
            raise BadParameter(f"eventType: {value[:50]!r} is not an audit event type")
    try:
        filters = AuditLogFilter.build(
            event_types=event_types or None,
            user_email=query.get("userEmail") or None,
            time_from=_time("from", query.get("from")),
            time_to=_time("to", query.get("to")),
            ip=query.get("ip") or None,
            search=query.get("search") or None,
            details=_json("details", query.get("details")),
        )
    except ValueError as error:
        raise BadParameter(str(error)) from None
    return fmt, filters


def _json(name: str, text: str | None) -> object:
    if not text:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise BadParameter(f'{name} must be JSON, such as {{"resource": "vm-12"}}') from None


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def neutralized(cell: str) -> str:
    """A cell no spreadsheet will evaluate (CSV injection)."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def header(fmt: str) -> str:
    if fmt == "csv":
        return _csv_lines([CSV_HEADER])
    return ""


def encode(fmt: str, rows: list[ExportRow]) -> str:
    """One batch of entries as text in ``fmt``."""
    if fmt == "csv":
        return _csv_lines(
            (
                neutralized(event),
                neutralized(email or ""),
                neutralized(ip or ""),
                neutralized(details),
                iso_utc(time),
                str(entry_id),
            )
            for entry_id, event, email, _name, ip, details, time in rows
        )
    return "".join(_jsonl_line(row) for row in rows)


def _csv_lines(rows: Iterator[tuple[str, ...]] | list[tuple[str, ...]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue()


def _jsonl_line(row: ExportRow) -> str:
    entry_id, event, email, name, ip, details, time = row
    line = f'{{"id": {entry_id}, "event": {json.dumps(event)}, "time": "{iso_utc(time)}"'
    if email is not None:
        line += f', "user_email": {json.dumps(email)}'
    if name is not None:
        line += f', "user_name": {json.dumps(name)}'
    if ip is not None:
        line += f', "ip": "{ip}"'
    # PostgreSQL's own JSON text of the object: valid JSON, written as it comes.
    return line + f', "details": {details}}}\n'


def batches(
    organization: Organization, filters: AuditLogFilter | None
) -> Iterator[list[ExportRow]]:
    """Every matching entry, newest first, one batch at a time (each batch its own query:
    nothing is held between them, so the caller may take its time)."""
    before = None
    while rows := audit_log_export_batch(
        organization=organization, filters=filters, before=before, size=BATCH_SIZE
    ):
        yield rows
        before = AuditLogPosition(time=rows[-1][6], id=rows[-1][0])


def filename(organization: Organization, filters: AuditLogFilter | None, fmt: str) -> str:
    """``audit-logs_<slug>_<from>_<to>.<fmt>``, the range as UTC times (``start`` /
    ``now`` when open)."""

    def stamp(moment: datetime | None, open_end: str) -> str:
        return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ") if moment else open_end

    f = filters or AuditLogFilter()
    return (
        f"audit-logs_{organization.slug}_{stamp(f.time_from, 'start')}_"
        f"{stamp(f.time_to, 'now')}.{fmt}"
    )


def export_record(
    organization: Organization,
    filters: AuditLogFilter,
    fmt: str,
    via: str,
    actor: User | Unset | None = UNSET,
) -> None:
    """Record the export in the organization's log (AUDIT_LOG_EXPORTED), before it runs:
    an export is recorded even if it is interrupted."""
    audit_log_record(
        organization=organization,
        event=AuditEventType.AUDIT_LOG_EXPORTED,
        actor=actor,
        details={"format": fmt, "filter": filter_query(filters), "via": via},
    )
