"""Write-side figures of the benchmark, run against a scratch database
(``python -m bench.writes EVENTS``, started by bench/__main__.py with DATABASE_URL set):

* import: ``manage.py import_audit_events`` of EVENTS generated events, end to end;
* recording one event: the whole transaction (BEGIN, ``audit_log_record``, COMMIT), by one
  writer (in the session that imported) and by four concurrent writers to the same
  organization and day, with the audit tables' rows the single writer's statements (and
  the triggers they fired) read by sequential scans (0 when every lookup used an index),
  and the rows of the rollups and the address directory they read per record (a few when
  each found only its own);
* tamper evidence: ``manage.py seal_audit_log`` of everything above (first sealing), then
  ``manage.py verify_audit_log``, end to end;
* export: ``manage.py export_audit_logs`` of the whole organization as CSV and as JSONL,
  and of its last day, each in its own process, with that process's peak resident memory
  (sampled every 20 ms), to show that memory does not grow with the export.

Prints one JSON object.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _export(args: list[str]) -> dict[str, float]:
    """``export_audit_logs writes`` in its own process: entries, seconds, peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "export"
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "manage.py", "export_audit_logs", "writes", *args, "-o", str(out)],
            stderr=subprocess.PIPE,
            text=True,
        )
        peak_kb = 0
        while process.poll() is None:
            try:
                status = Path(f"/proc/{process.pid}/status").read_text()
                rss = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
                peak_kb = max(peak_kb, int(rss.split()[1]))
            except (OSError, StopIteration):
                pass
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        stderr = process.stderr.read() if process.stderr else ""
        if process.returncode != 0:
            raise RuntimeError(f"export_audit_logs failed: {stderr}")
        entries = int(stderr.split("Exported ")[1].split(" ")[0].replace(",", ""))
        return {
            "entries": entries,
            "seconds": round(seconds, 2),
            "entries_per_s": round(entries / seconds),
            "peak_rss_mb": round(peak_kb / 1024, 1),
            "bytes": out.stat().st_size,
        }


def main(events: int, records: int) -> dict[str, object]:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
    django.setup()
    from django.core.management import call_command
    from django.db import connections, transaction

    from audit.events import AuditEventType as E
    from audit.services import audit_log_record
    from bench.dataset import _drafts, bench_email
    from core.services import organization_create, user_create

    org = organization_create(slug="writes", name="Write benchmark", plan="paid")
    users = [user_create(organization=org, email=bench_email(n)) for n in range(50)]
    emails = [u.email for u in users]

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        with path.open("w") as out:
            from django.utils import timezone

            for draft in _drafts(events, emails, 7, timezone.now()):
                line = {
                    "event": draft.event,
                    "time": draft.time.isoformat(),
                    "details": draft.details,
                }
                if draft.user_email:
                    line["user_email"] = draft.user_email
                if draft.ip:
                    line["ip"] = draft.ip
                out.write(json.dumps(line) + "\n")
        started = time.perf_counter()
        call_command("import_audit_events", "writes", str(path), stdout=io.StringIO())
        import_seconds = time.perf_counter() - started

    def record(n: int, sink: list[float], close: bool = True) -> None:
        try:
            for i in range(n):
                t = time.perf_counter()
                with transaction.atomic():
                    audit_log_record(
                        organization=org,
                        event=E.RESOURCE_UPDATED,
                        actor=users[i % len(users)],
                        ip="203.0.113.9",
                        details={"resource": i},
                    )
                sink.append((time.perf_counter() - t) * 1000)
        finally:
            if close:
                connections.close_all()

    def rows_read() -> tuple[int, int]:
        """Rows of the audit tables read by sequential scans, and rows of the rollups and
        the address directory read in all, so far."""
        # This session's counters reach the statistics when it goes idle (forced here).
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_force_next_flush()")
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT coalesce(sum(seq_tup_read), 0),"
                " coalesce(sum(seq_tup_read + coalesce(idx_tup_fetch, 0))"
                "   FILTER (WHERE relname LIKE 'audit_count%%' OR relname = 'audit_actor_email'), 0)"
                " FROM pg_stat_user_tables WHERE relname LIKE 'audit%%'"
            )
            scanned, rollups = cursor.fetchone()
            return int(scanned), int(rollups)

    single: list[float] = []
    before = rows_read()
    record(records, single, close=False)
    after = rows_read()
    scanned, rollup_rows = after[0] - before[0], after[1] - before[1]
    concurrent: list[float] = []
    threads = [threading.Thread(target=record, args=(records // 4, concurrent)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    from audit.models import AuditLog

    sealed_entries = AuditLog.objects.filter(organization=org).count()
    started = time.perf_counter()
    call_command("seal_audit_log", "--org", "writes", stdout=io.StringIO())
    seal_seconds = time.perf_counter() - started
    started = time.perf_counter()
    call_command("verify_audit_log", "--org", "writes", stdout=io.StringIO())
    verify_seconds = time.perf_counter() - started

    exports = {
        name: _export(["--format", fmt, *extra])
        for name, fmt, extra in [
            ("csv", "csv", []),
            ("jsonl", "jsonl", []),
            ("csv_last_day", "csv", ["--from", (timezone.now() - timedelta(days=1)).isoformat()]),
        ]
    }

    return {
        "exports": exports,
        "sealed_entries": sealed_entries,
        "seal_seconds": round(seal_seconds, 2),
        "seal_entries_per_s": round(sealed_entries / seal_seconds),
        "verify_seconds": round(verify_seconds, 2),
        "verify_entries_per_s": round(sealed_entries / verify_seconds),
        "import_events": events,
        "import_seconds": round(import_seconds, 2),
        "import_events_per_s": round(events / import_seconds),
        "record_p50_ms": round(statistics.median(single), 3),
        "record_p95_ms": round(_percentile(single, 95), 3),
        "record_4_writers_p50_ms": round(statistics.median(concurrent), 3),
        "record_4_writers_p95_ms": round(_percentile(concurrent, 95), 3),
        "records": records,
        "record_rows_read_by_sequential_scans": scanned,
        "record_rollup_rows_read_per_record": round(rollup_rows / records, 1),
    }


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), int(sys.argv[2]))))
