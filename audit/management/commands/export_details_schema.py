"""manage.py export_details_schema [--path FILE]

Writes the JSON Schema of every event type's details (audit/details.py) to FILE, or to
standard output. ``make schema`` writes it to audit-details.schema.json, and
``make schema-check`` fails when that file differs from what the code declares.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from audit.details import json_schema_text


class Command(BaseCommand):
    help = "Write the JSON Schema of the audit events' details (to --path, or stdout)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--path", type=Path, help="The file to write (default: stdout).")

    def handle(self, *args: Any, **options: Any) -> None:
        text = json_schema_text()
        path: Path | None = options["path"]
        if path is None:
            self.stdout.write(text, ending="")
        else:
            path.write_text(text, encoding="utf-8")
