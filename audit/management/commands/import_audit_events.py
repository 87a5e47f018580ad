"""manage.py import_audit_events SLUG FILE.jsonl

One pass over the file, in one transaction: each line is validated as it is read and the
entries stream into the database with COPY, in file order. At the first invalid line
nothing more is written; the rest of the file is still read so that every bad line is
reported with its number, and the transaction is rolled back: nothing is imported. Memory
stays constant in the size of the file. Each entry's details must have the shape its event
type declares (audit/events.py) unless ``--no-details-check`` is given.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.importing import InvalidLines, iter_drafts
from audit.services import audit_log_bulk_create
from core.database import without_statement_timeout
from core.management.organizations import organization_named
from core.progress import ProgressBar


class Command(BaseCommand):
    help = "Import audit events from a JSONL file into an organization (all or nothing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="The organization that receives the events.")
        parser.add_argument("file", type=Path, help="JSONL file, one event object per line.")
        parser.add_argument(
            "--no-details-check",
            action="store_true",
            help=(
                "Import each entry's details as they are, without checking them against "
                "their event type's shape (for files exported before details were typed; "
                "such entries read as UncheckedDetails in detailsTyped)."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        org = organization_named(options["slug"])
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"{path}: no such file")

        started = time.monotonic()
        progress = ProgressBar(path.stat().st_size, "Importing", unit="bytes")
        try:
            with path.open("rb") as stream, without_statement_timeout():
                count = audit_log_bulk_create(
                    organization=org,
                    drafts=iter_drafts(
                        stream,
                        on_bytes=progress.update,
                        check_details=not options["no_details_check"],
                    ),
                )
        except InvalidLines as exc:
            progress.finish()
            for error in exc.errors:
                self.stderr.write(f"{path}: {error}")
            if exc.count > len(exc.errors):
                self.stderr.write(f"... and {exc.count - len(exc.errors)} more invalid line(s)")
            raise CommandError(f"{path}: {exc}; nothing was imported") from None
        except ValidationError as exc:
            raise CommandError(f"{path}: {exc}; nothing was imported") from None
        progress.finish()
        elapsed = time.monotonic() - started
        self.stdout.write(
            f"Imported {count:,} events into {org.slug} in {elapsed:.1f}s "
            f"({count / elapsed:,.0f} events/s)."
        )
