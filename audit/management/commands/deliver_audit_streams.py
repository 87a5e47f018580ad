"""manage.py deliver_audit_streams [--once] [--threads N]

Delivers every organization's log streams (audit/log_streams.py) until stopped (Ctrl-C or
SIGTERM), beside or instead of the server processes (AUDIT_LOG_STREAM_DELIVER_IN_SERVER).
Run as many as you like, on any machine: a lease in PostgreSQL gives each stream one
deliverer at a time. ``--once`` delivers what is ready and exits (for cron).
"""

from __future__ import annotations

import signal
import time
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from audit.log_streams import Deliverer, deliver_pending, new_holder


class Command(BaseCommand):
    help = "Push new audit entries to every enabled log stream (until stopped, or --once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Deliver what is ready, then exit.")
        parser.add_argument(
            "--threads", type=int, default=4, help="Streams delivered at once (default 4)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        holder = new_holder()
        if options["once"]:
            delivered = deliver_pending(holder)
            self.stdout.write(f"Delivered {delivered:,} entries.")
            return
        deliverer = Deliverer(holder, threads=max(1, options["threads"]))

        def stop(signum: int, frame: FrameType | None) -> None:
            deliverer.stop.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write(f"Delivering log streams as {holder}; Ctrl-C stops.")
        started = time.monotonic()
        deliverer.run()
        self.stdout.write(
            f"Stopped: {deliverer.delivered:,} entries delivered in "
            f"{time.monotonic() - started:.0f} s."
        )
