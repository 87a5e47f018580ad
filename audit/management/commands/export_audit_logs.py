"""manage.py export_audit_logs SLUG [--format csv|jsonl] [--event-type E ...]
[--user-email TEXT] [--from TIME] [--to TIME] [-o FILE]

Every matching entry of the organization, newest first, as CSV or JSONL
(audit/exporting.py), in constant memory; to FILE (written aside, then renamed, so FILE
is always complete) or to stdout. A progress bar on stderr when it is a terminal."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.http import QueryDict

from audit import exporting
from audit.selectors import audit_log_count
from audit.totals import TotalTooCostly
from core.management.organizations import organization_named
from core.progress import ProgressBar


class Command(BaseCommand):
    help = "Export an organization's audit entries as CSV or JSONL (newest first)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="The organization.")
        parser.add_argument("--format", choices=exporting.FORMATS, default="csv")
        parser.add_argument(
            "--event-type",
            action="append",
            metavar="EVENT",
            help="Only this event type (repeatable).",
        )
        parser.add_argument("--user-email", help="Only entries whose user email contains this.")
        parser.add_argument(
            "--from", dest="time_from", help="From this time (ISO 8601, inclusive)."
        )
        parser.add_argument("--to", dest="time_to", help="Up to this time (ISO 8601, inclusive).")
        parser.add_argument("--ip", help="Only entries from this address or CIDR range.")
        parser.add_argument(
            "--search", help="Only entries whose details have all these words (keys or values)."
        )
        parser.add_argument(
            "--details",
            help='Only entries whose details contain this JSON object, e.g. \'{"resource": "vm-12"}\'.',
        )
        parser.add_argument(
            "-o", "--output", type=Path, help="The file to write (default: stdout)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        org = organization_named(options["slug"])
        # The options as the HTTP endpoint's query string, so that one parser checks both.
        query = QueryDict(mutable=True)
        query["format"] = options["format"]
        for key, value in [
            ("userEmail", options["user_email"]),
            ("from", options["time_from"]),
            ("to", options["time_to"]),
            ("ip", options["ip"]),
            ("search", options["search"]),
            ("details", options["details"]),
        ]:
            if value is not None:
                query[key] = value
        query.setlist("eventType", options["event_type"] or [])
        try:
            fmt, filters = exporting.parse_parameters(query)
        except exporting.BadParameter as error:
            raise CommandError(str(error)) from None
        # Recorded in the organization's log before it runs (no user: an operator's command).
        exporting.export_record(org, filters, fmt, "command", actor=None)

        started = time.monotonic()
        try:
            total: int | None = audit_log_count(organization=org, filters=filters)
        except TotalTooCostly:
            total = None  # a search with many matches: the count alone would cost too much
        progress = ProgressBar(total, f"Exporting {org.slug}", unit="entries")
        output: Path | None = options["output"]
        partial = output.with_name(output.name + ".partial") if output else None
        count = 0
        with partial.open("w", encoding="utf-8", newline="") if partial else _stdout() as out:
            out.write(exporting.header(fmt))
            for rows in exporting.batches(org, filters):
                out.write(exporting.encode(fmt, rows))
                count += len(rows)
                progress.update(count)
        progress.finish(count)
        if output and partial:
            partial.replace(output)
        elapsed = time.monotonic() - started
        where = str(output) if output else "stdout"
        self.stderr.write(
            f"Exported {count:,} entries of {org.slug} to {where} in {elapsed:.1f}s "
            f"({count / elapsed if elapsed else 0:,.0f} entries/s)."
        )


class _stdout:
    """stdout as a context manager that is not closed afterwards."""

    def __enter__(self) -> TextIO:
        return sys.stdout

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()
