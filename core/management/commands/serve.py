"""manage.py serve [--host H] [--port P] [--workers N] [--migrate] [--seed-demo-if-empty]

Runs the ASGI app under uvicorn. ``make run`` uses ``--migrate --seed-demo-if-empty``.
Proxy headers are left to TRUSTED_PROXIES (core/client_ip.py), never to uvicorn. Unless
AUDIT_LOG_STREAM_DELIVER_IN_SERVER=0, the process also delivers log streams in a thread.
"""

from __future__ import annotations

import atexit
import os
import signal
from types import FrameType
from typing import Any

import uvicorn
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from core.database import close_all_connections


class Command(BaseCommand):
    help = "Serve the app with uvicorn (HOST/PORT from the environment by default)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument(
            "--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "1"))
        )
        parser.add_argument("--migrate", action="store_true", help="Apply migrations first.")
        parser.add_argument(
            "--seed-demo-if-empty", action="store_true", help="Run seed_demo --if-empty first."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["migrate"]:
            call_command("migrate", interactive=False, verbosity=1)
        if options["seed_demo_if_empty"]:
            call_command("seed_demo", if_empty=True)
        close_all_connections()  # workers open their own; don't hold these while serving
        base = f"http://{options['host']}:{options['port']}"
        self.stdout.write(
            f"Serving on {base}/ (the Audit Logs page at {base}/audit-logs/, GraphiQL at "
            f"{base}/graphql/; sign in at {base}/accounts/login/; admin at /admin/; "
            f"DEBUG={'on' if settings.DEBUG else 'off'}). Ctrl-C stops."
        )
        # uvicorn shuts down gracefully on SIGTERM and then raises the signal again; with
        # the default action that kills the process before its exit hooks run (and the
        # embedded PostgreSQL would be left running). Exit normally instead.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        if settings.AUDIT_LOG_STREAM_DELIVER_IN_SERVER:
            # Log streams are delivered by this process too (audit/log_streams.py); a
            # lease per stream keeps every other server and worker off the same stream.
            from audit.log_streams import new_holder, start_in_thread

            deliverer = start_in_thread(new_holder())
            atexit.register(deliverer.stop.set)
        uvicorn.run(
            "core.asgi:application",
            host=options["host"],
            port=options["port"],
            workers=options["workers"],
            proxy_headers=False,
            # The lifespan shutdown closes the live stream's database connections.
            lifespan="on",
            # Open streams (SSE, WebSocket) never end by themselves: at shutdown, give
            # requests in flight this long, then close what is left.
            timeout_graceful_shutdown=5,
            log_level=os.environ.get("LOG_LEVEL", "info").lower(),
        )


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
