"""manage.py restore_db FILE --database NAME: a backup into a new database on the same
server (core/backups.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.backups import BackupError, database_restore


class Command(BaseCommand):
    help = "Restore a backup_db file into a new database on the same server."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="A file written by backup_db.")
        parser.add_argument(
            "--database",
            required=True,
            help="The new database to create (it must not exist); point DATABASE_URL at it after checking it.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        try:
            database_restore(options["file"], options["database"])
        except BackupError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(
            f"Restored {options['file']} into database {options['database']} in "
            f"{time.monotonic() - started:.1f}s."
        )
