"""manage.py seal_audit_log [--org SLUG]: signed checkpoints of new entries
(audit/integrity.py). Meant for cron, at any frequency: runs at once do not conflict (one
seals an organization, the others skip it), and writers never wait. With
AUDIT_WITNESS_FILE, each checkpoint's signed head is appended to it (audit/witness.py).
An organization whose chain is behind a verified or witnessed checkpoint is not sealed:
it is reported, and the command exits with status 1."""

from __future__ import annotations

import os
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Sum

from audit.models import AuditLog, AuditSeal
from audit.services import ChainBehind, audit_log_seal
from audit.witness import Witness, WitnessError
from core.management.organizations import organizations_named
from core.progress import ProgressBar


class Command(BaseCommand):
    help = "Seal every organization's new audit entries into signed checkpoints."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", metavar="SLUG", help="Only this organization.")

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        total_checkpoints = total_entries = 0
        refused: list[str] = []
        witnessed = None
        path = settings.AUDIT_WITNESS_FILE
        if path and os.path.exists(path):
            try:  # read once, for every organization
                witnessed = Witness.read(path)
            except WitnessError as error:
                raise CommandError(f"sealing refused: {error}") from None
        for org in organizations_named(options["org"]):
            sealed = AuditSeal.objects.filter(organization=org).aggregate(n=Sum("entries"))["n"]
            pending = AuditLog.objects.filter(organization=org).count() - (sealed or 0)
            progress = ProgressBar(max(pending, 0), f"Sealing {org.slug}", unit="entries")
            done = 0

            def advance(entries: int, progress: ProgressBar = progress) -> None:
                nonlocal done
                done += entries
                progress.update(done)

            try:
                outcome = audit_log_seal(organization=org, progress=advance, witnessed=witnessed)
            except ChainBehind as error:
                progress.finish()
                self.stderr.write(str(error))
                refused.append(org.slug)
                continue
            progress.finish()
            if outcome.busy:
                self.stdout.write(f"{org.slug}: another sealer is at work; skipped the rest")
            if outcome.checkpoints:
                self.stdout.write(
                    f"{org.slug}: sealed {outcome.entries:,} entries in "
                    f"{outcome.checkpoints:,} checkpoint(s)"
                )
            total_checkpoints += outcome.checkpoints
            total_entries += outcome.entries
        self.stdout.write(
            f"Sealed {total_entries:,} entries in {total_checkpoints:,} new checkpoint(s) in "
            f"{time.monotonic() - started:.1f}s."
        )
        if refused:
            raise CommandError(f"sealing refused for {', '.join(refused)}")
