"""Parsing and validating JSONL audit events for ``manage.py import_audit_events``.

One JSON object per line::

    {"event": "USER_LOGIN", "user_email": "a@acme.test", "ip": "203.0.113.5",
     "details": {...}, "time": "2026-01-31T12:00:00Z"}

``event`` and ``time`` (ISO 8601 with a timezone) are required; ``user_email``,
``user_name``, ``ip`` and ``details`` (an object) are optional. Blank lines are skipped.
The details must have the shape their event type declares (audit/events.py), unless the
caller turns that check off (``--no-details-check``, for files written before details
were typed).
Unknown fields are errors, so that a misspelt field is not silently dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import IO, Any

from audit.details import details_problems
from audit.events import AuditEventType
from audit.models import ENTRY_TIME_MAX, ENTRY_TIME_MIN
from audit.services import AuditEntryDraft
from audit.storable import as_utc, json_problem, text_problem
from core.client_ip import normalized_ip

# "id" is what export_audit_logs writes; an imported entry gets a new one, so it is ignored.
ALLOWED_FIELDS = frozenset({"id", "event", "time", "user_email", "user_name", "ip", "details"})
_EVENTS = frozenset(AuditEventType.values)


class ImportLineError(ValueError):
    def __init__(self, line_number: int, message: str) -> None:
        super().__init__(f"line {line_number}: {message}")
        self.line_number = line_number
        self.message = message


def parse_line(raw: bytes, line_number: int, check_details: bool = True) -> AuditEntryDraft | None:
    """The draft for one line, None for a blank line; ImportLineError when invalid.
    ``check_details`` checks the details against the event type's declared shape
    (audit/details.py); without it they are only checked to be a storable object."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ImportLineError(line_number, "not valid UTF-8") from None
    if not text.strip():
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportLineError(
            line_number, f"invalid JSON ({exc.msg} at column {exc.colno})"
        ) from None
    except (ValueError, RecursionError):
        # An integer of more digits than Python reads, or nesting beyond its stack.
        raise ImportLineError(
            line_number, "invalid JSON (a number too long, or nesting too deep)"
        ) from None
    if not isinstance(data, dict):
        raise ImportLineError(line_number, "each line must be a JSON object")
    if not ALLOWED_FIELDS.issuperset(data):
        unknown = set(data) - ALLOWED_FIELDS
        raise ImportLineError(line_number, f"unknown field(s): {', '.join(sorted(unknown))}")
    draft = AuditEntryDraft(
        event=_event(data, line_number),
        time=_time(data, line_number),
        user_email=_optional_text(data, "user_email", 254, line_number),
        user_name=_optional_text(data, "user_name", 150, line_number),
        ip=_ip(data, line_number),
        details=_details(data, line_number),
    )
    if check_details and (problems := details_problems(draft.event, draft.details)):
        raise ImportLineError(
            line_number, "; ".join(f"{path} {message}" for path, message in problems)
        )
    return draft


class InvalidLines(ValueError):
    """A file with invalid lines: the first ``MAX_REPORTED_ERRORS`` of them, and how many."""

    def __init__(self, errors: list[ImportLineError], count: int) -> None:
        super().__init__(f"{count} invalid line(s) (first: line {errors[0].line_number})")
        self.errors = errors
        self.count = count


MAX_REPORTED_ERRORS = 50


def iter_drafts(
    stream: IO[bytes],
    on_bytes: Callable[[int], None] | None = None,
    check_details: bool = True,
) -> Iterator[AuditEntryDraft]:
    """Every draft of a file, in file order, validated as it is read (one pass).

    At the first invalid line it stops yielding, reads on to the end of the file to find
    every other invalid line, and raises InvalidLines: the caller loads the drafts in a
    transaction, which then rolls back what it had written. ``on_bytes`` is told how many
    bytes have been read, every 10,000 lines.
    """
    errors: list[ImportLineError] = []
    count = 0
    read = 0
    for number, raw in enumerate(stream, 1):
        read += len(raw)
        if on_bytes is not None and number % 10_000 == 0:
            on_bytes(read)
        try:
            draft = parse_line(raw, number, check_details)
        except ImportLineError as exc:
            count += 1
            if len(errors) < MAX_REPORTED_ERRORS:
                errors.append(exc)
            continue
        if draft is not None and not count:
            yield draft
    if on_bytes is not None:
        on_bytes(read)
    if count:
        raise InvalidLines(errors, count)


def _event(data: dict[str, Any], n: int) -> str:
    event = data.get("event")
    if event is None:
        raise ImportLineError(n, "missing field 'event'")
    if not isinstance(event, str) or event not in _EVENTS:
        raise ImportLineError(n, f"unknown event {str(event)[:60]!r}")
    return str(event)


def _time(data: dict[str, Any], n: int) -> datetime:
    raw = data.get("time")
    if raw is None:
        raise ImportLineError(n, "missing field 'time'")
    if not isinstance(raw, str):
        raise ImportLineError(n, "time must be an ISO 8601 string")
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ImportLineError(
            n, f"invalid time {raw!r} (expected ISO 8601, e.g. 2026-01-31T12:00:00Z)"
        ) from None
    if value.tzinfo is None:
        raise ImportLineError(
            n, f"time {raw!r} has no timezone (add Z or an offset such as +02:00)"
        )
    if not ENTRY_TIME_MIN <= value < ENTRY_TIME_MAX:
        raise ImportLineError(
            n,
            f"time {raw!r} is outside {ENTRY_TIME_MIN.isoformat()} to {ENTRY_TIME_MAX.isoformat()}",
        )
    return as_utc(value)


def _optional_text(data: dict[str, Any], field: str, max_length: int, n: int) -> str | None:
    value = data.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ImportLineError(n, f"{field} must be a string")
    if (unstorable := text_problem(value)) is not None:
        raise ImportLineError(n, f"{field} {unstorable}")
    value = value.strip()
    if len(value) > max_length:
        raise ImportLineError(n, f"{field} is longer than {max_length} characters")
    if field == "user_email" and value and "@" not in value:
        raise ImportLineError(n, f"user_email {value!r} is not an email address")
    return value or None


def _ip(data: dict[str, Any], n: int) -> str | None:
    value = data.get("ip")
    if value is None:
        return None
    if not isinstance(value, str):
        raise ImportLineError(n, "ip must be a string")
    try:
        return normalized_ip(value.strip())
    except ValueError:
        raise ImportLineError(n, f"invalid ip {value!r}") from None


def _details(data: dict[str, Any], n: int) -> dict[str, Any]:
    value = data.get("details")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ImportLineError(n, "details must be a JSON object")
    if (unstorable := json_problem(value)) is not None:
        raise ImportLineError(n, f"details {unstorable}")
    return value
