"""manage.py backup_db [-o FILE]: the whole database, with pg_dump (core/backups.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from audit.models import AuditLog
from core.backups import BackupError, database_backup
from core.models import Organization
from core.roles import OWNER_ALIAS


class Command(BaseCommand):
    help = "Back up the whole database to a file (pg_dump, custom format)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "-o",
            "--output",
            type=Path,
            help="The file to write (default: backups/<database>-<UTC time>.dump).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name = connections[OWNER_ALIAS].settings_dict["NAME"]
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path: Path = options["output"] or Path("backups") / f"{name}-{stamp}.dump"
        entries, organizations = AuditLog.objects.count(), Organization.objects.count()
        self.stdout.write(f"Backing up {name} ({entries:,} audit entries) to {path} ...")
        started = time.monotonic()
        try:
            database_backup(path)
        except BackupError as error:
            raise CommandError(str(error)) from None
        size = path.stat().st_size / 2**20
        self.stdout.write(
            f"Backed up {entries:,} audit entries of {organizations:,} organizations to {path} "
            f"({size:,.1f} MB) in {time.monotonic() - started:.1f}s."
        )
