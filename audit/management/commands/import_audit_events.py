"""manage.py import_audit_events SLUG FILE.jsonl

Two passes over the file: the first validates every line (nothing is written if any line
is invalid; every bad line is reported with its number), the second streams the entries
into the database with COPY in one transaction, in file order. Memory stays constant in
the size of the file.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.importing import ImportLineError, iter_drafts, parse_line
from audit.services import audit_log_bulk_create
from core.models import Organization
from core.progress import ProgressBar

MAX_REPORTED_ERRORS = 50


class Command(BaseCommand):
    help = "Import audit events from a JSONL file into an organization (all or nothing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="The organization that receives the events.")
        parser.add_argument("file", type=Path, help="JSONL file, one event object per line.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            org = Organization.objects.get(slug=options["slug"])
        except Organization.DoesNotExist:
            raise CommandError(f"no organization with slug {options['slug']!r}") from None
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"{path}: no such file")

        started = time.monotonic()
        total = self._validate(path)
        progress = ProgressBar(total, "Importing")
        try:
            with path.open("rb") as stream:
                count = audit_log_bulk_create(
                    organization=org, drafts=iter_drafts(stream), on_progress=progress.update
                )
        except (ImportLineError, ValidationError) as exc:  # the file changed between passes
            raise CommandError(f"{path}: {exc}; nothing was imported") from None
        progress.finish()
        elapsed = time.monotonic() - started
        self.stdout.write(
            f"Imported {count:,} events into {org.slug} in {elapsed:.1f}s, validation included "
            f"({count / elapsed:,.0f} events/s; loading alone {progress.elapsed:.1f}s)."
        )

    def _validate(self, path: Path) -> int:
        errors: list[ImportLineError] = []
        valid = 0
        error_count = 0
        progress = ProgressBar(path.stat().st_size, "Validating")
        read = 0
        with path.open("rb") as stream:
            for number, raw in enumerate(stream, 1):
                read += len(raw)
                if number % 10_000 == 0:
                    progress.update(read)
                try:
                    if parse_line(raw, number) is not None:
                        valid += 1
                except ImportLineError as exc:
                    error_count += 1
                    if len(errors) < MAX_REPORTED_ERRORS:
                        errors.append(exc)
        progress.finish()
        if error_count:
            for error in errors:
                self.stderr.write(f"{path}: {error}")
            if error_count > len(errors):
                self.stderr.write(f"... and {error_count - len(errors)} more invalid line(s)")
            raise CommandError(
                f"{path}: {error_count} invalid line(s) (first: line {errors[0].line_number}); "
                "nothing was imported"
            )
        return valid
