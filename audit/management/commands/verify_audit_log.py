"""manage.py verify_audit_log [--org SLUG] [--witness FILE]: check each organization's
signed checkpoints, prune records and entries (audit/integrity.py), that no checkpoint an
earlier verification checked, or the witness file lists (audit/witness.py), is missing or
different, report the first problem, and record the outcome (which the GraphQL field
auditLogIntegrity shows). Exits with status 1 when anything fails."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.services import audit_log_verify
from audit.witness import Witness, WitnessError
from core.database import without_statement_timeout
from core.management.organizations import organizations_named


class Command(BaseCommand):
    help = "Verify the audit log's signed checkpoints and entries; exit 1 on any problem."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", metavar="SLUG", help="Only this organization.")
        parser.add_argument(
            "--witness",
            metavar="FILE",
            help="A witness file (AUDIT_WITNESS_FILE) whose checkpoints must all be there.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        failed = []
        entries = 0
        witnessed = None
        if options["witness"]:
            try:  # read once, before any work, for every organization
                witnessed = Witness.read(options["witness"])
            except WitnessError as error:
                raise CommandError(str(error)) from None
        for org in organizations_named(options["org"]):
            with without_statement_timeout():
                outcome = audit_log_verify(organization=org, witnessed=witnessed)
            entries += outcome.entries
            through = (
                f"through checkpoint {outcome.last_sequence} "
                f"(sealed {outcome.last_sealed_at:%Y-%m-%d %H:%M:%S} UTC)"
                if outcome.last_sequence
                else "no checkpoint yet"
            )
            summary = (
                f"{outcome.entries:,} sealed entries in {outcome.checkpoints:,} checkpoint(s), "
                f"{through}; {outcome.unsealed:,} not yet sealed"
            )
            if outcome.pruned:
                summary += f"; {outcome.pruned:,} sealed entries removed by retention (pruned)"
            if outcome.ok:
                self.stdout.write(f"{org.slug}: OK: {summary}")
            else:
                failed.append(org.slug)
                self.stdout.write(f"{org.slug}: FAILED: {outcome.problem}")
                self.stdout.write(f"{org.slug}: verified before the problem: {summary}")
        elapsed = time.monotonic() - started
        self.stdout.write(f"Verified {entries:,} sealed entries in {elapsed:.1f}s.")
        if failed:
            raise CommandError(f"verification failed for {', '.join(failed)}")
