"""manage.py prune_audit_logs [--org SLUG] [--dry-run]: remove audit entries older than
each organization's retention period (audit/retention.py), in batches, through the
database's one path for it (audit.services.audit_log_prune), as the database owner.

Safe from cron at any frequency: each batch is one short transaction, a run finds nothing
to do once caught up, and two runs at once do not conflict (the second leaves an
organization being pruned alone). Prints what it removed, or with --dry-run what it would.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from audit.models import AuditLog
from audit.retention import retention_policy
from audit.services import audit_log_prune
from core.management.organizations import organizations_named
from core.progress import ProgressBar


class Command(BaseCommand):
    help = "Remove audit entries older than each organization's retention period."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", metavar="SLUG", help="Only this organization.")
        parser.add_argument(
            "--dry-run", action="store_true", help="Say what would be removed; remove nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        dry_run = options["dry_run"]
        total = 0
        for org in organizations_named(options["org"]):
            policy = retention_policy(org)
            if policy.forever:
                self.stdout.write(f"{org.slug}: kept forever ({policy.source} setting)")
                continue
            if policy.below_minimum:
                self.stderr.write(
                    f"{org.slug}: skipped: its retention of {policy.days} day(s) is below "
                    "AUDIT_RETENTION_MIN_DAYS"
                )
                continue
            before = policy.cutoff()
            due = AuditLog.objects.filter(organization=org, time__lt=before).count()
            what = (
                f"older than {before:%Y-%m-%d %H:%M:%S} UTC ({policy.days} days, {policy.source})"
            )
            if dry_run or not due:
                verb = "would remove" if dry_run else "removed"
                self.stdout.write(f"{org.slug}: {verb} {due:,} entries {what}")
                total += due
                continue
            progress = ProgressBar(due, f"Pruning {org.slug}", unit="entries")
            done = 0

            def advance(count: int, progress: ProgressBar = progress) -> None:
                nonlocal done
                done += count
                progress.update(done)

            outcome = audit_log_prune(
                organization=org, before=before, retention_days=policy.days, progress=advance
            )
            progress.finish()
            if outcome.busy:
                self.stdout.write(f"{org.slug}: another run is pruning it; left alone")
                continue
            self.stdout.write(f"{org.slug}: removed {outcome.entries:,} entries {what}")
            total += outcome.entries
        verb = "Would remove" if dry_run else "Removed"
        self.stdout.write(f"{verb} {total:,} entries in {time.monotonic() - started:.1f}s.")
