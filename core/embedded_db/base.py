"""PostgreSQL backend that starts the embedded server on first connection."""

from __future__ import annotations

import atexit
from typing import Any

from core.database import close_all_connections
from core.embedded_postgres import embedded_postgres
from core.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    _started = False

    def get_connection_params(self) -> dict[str, Any]:
        if not DatabaseWrapper._started:
            embedded_postgres().ensure_running()
            # Registered after the server's own exit hook, so it runs first (atexit is
            # last-in, first-out): pooled connections end before the server stops.
            atexit.register(close_all_connections)
            DatabaseWrapper._started = True
        return super().get_connection_params()
