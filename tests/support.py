"""Helpers shared by test modules: query plans, and `manage.py serve` as a real process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from core.roles import APP_ALIAS, OWNER_ALIAS

ROOT = Path(__file__).resolve().parents[1]

# Tests that commit (and so are emptied afterwards by TRUNCATE, which only the owner may
# run) or that use the owner's connection themselves.
TRANSACTIONAL = pytest.mark.django_db(transaction=True, databases=[APP_ALIAS, OWNER_ALIAS])


# --- connections ---


def database_url(settings_dict: dict[str, Any], name: str | None = None) -> str:
    """A DATABASE_URL for Django's connection settings (another database: ``name``)."""
    from urllib.parse import quote

    user = quote(settings_dict["USER"] or "", safe="")
    password = settings_dict["PASSWORD"]
    credentials = f"{user}:{quote(password, safe='')}" if password else user
    host = quote(str(settings_dict["HOST"] or ""), safe="")
    port = f":{settings_dict['PORT']}" if settings_dict["PORT"] else ""
    return (
        f"postgresql://{credentials}@{host}{port}/{quote(name or settings_dict['NAME'], safe='')}"
    )


# --- tampering, as an attacker with the owner's access would --------------------------------


def as_database_owner(
    *statements: tuple[str, list[Any]], table: str = "audit_log", trigger_off: bool = True
) -> None:
    """Run ``statements`` as the database owner, in one transaction, with the table's
    append-only trigger off: what an attacker with write access to the database could do.
    (Inserts need not turn it off.) The test must be TRANSACTIONAL."""
    from django.db import connections, transaction

    trigger = f"{table}_append_only"
    with transaction.atomic(using=OWNER_ALIAS), connections[OWNER_ALIAS].cursor() as cursor:
        if trigger_off:
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
        for sql, params in statements:
            cursor.execute(sql, params)
        if trigger_off:
            cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}")


# --- query plans ----------------------------------------------------------------------------


def refresh_statistics(*tables: str, vacuum: bool = False) -> None:
    """ANALYZE (or VACUUM ANALYZE) committed tables, as autovacuum would: only the owner
    may, so through its connection (the test must be TRANSACTIONAL)."""
    from django.db import connections

    command = "VACUUM (ANALYZE)" if vacuum else "ANALYZE"
    with connections[OWNER_ALIAS].cursor() as cursor:
        for table in tables:
            cursor.execute(f"{command} {table}")


def query_plan(sql: str, params: list[Any] | None = None) -> dict[str, Any]:
    """The planner's plan for ``sql`` (EXPLAIN, JSON format), its root node."""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        raw = cursor.fetchone()[0]
    plan: dict[str, Any] = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    return plan


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a plan, depth first (subplans and InitPlans included)."""
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


# --- a served app ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_serve(
    port: int, env: Mapping[str, str], *extra_args: str, timeout: float = 120
) -> subprocess.Popen[str]:
    """``manage.py serve`` on 127.0.0.1:``port``, returned once it accepts connections."""
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - open as long as the server runs
    process = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *extra_args,
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "SECRET_KEY": "test-only-not-secret",
            "DEBUG": "0",
            "LOG_LEVEL": "WARNING",
            # A server needs no owner; one in the environment would name another database.
            "DATABASE_OWNER_URL": "",
            **env,
        },
        stdout=subprocess.DEVNULL,
        # A file, not a pipe: nothing reads the server's log while it runs, and a full pipe
        # (Django logs every 4xx as a warning) would stop the server mid-test.
        stderr=log,
        text=True,
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                log.seek(0)
                error = log.read()
                raise RuntimeError(f"manage.py serve did not start:\n{error}") from None
            time.sleep(0.1)


def stop_serve(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- live stream clients ----------------------------------------------------------------------


class WebSocketSubscriber:
    """A graphql-transport-ws client (the protocol of graphql-ws, Apollo and GraphiQL) with
    one subscription, over the `websockets` library."""

    def __init__(
        self,
        base_url: str,
        query: str,
        variables: Mapping[str, Any] | None = None,
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        from contextlib import ExitStack

        from websockets.sync.client import connect

        self._stack = ExitStack()
        self.socket = self._stack.enter_context(
            connect(
                base_url.replace("http://", "ws://") + "/graphql/",
                subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                additional_headers=dict(headers or {}),
                open_timeout=10,
            )
        )
        payload = {"Authorization": f"Bearer {token}"} if token else {}
        self.socket.send(json.dumps({"type": "connection_init", "payload": payload}))
        assert self._receive(10) == {"type": "connection_ack"}
        self.socket.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": query, "variables": dict(variables or {})},
                }
            )
        )

    def _receive(self, timeout: float) -> dict[str, Any]:
        while True:
            message: dict[str, Any] = json.loads(self.socket.recv(timeout=timeout))
            if message["type"] == "ping":
                self.socket.send(json.dumps({"type": "pong"}))
                continue
            return message

    def next(self, timeout: float = 10) -> dict[str, Any]:
        """The next result: its data, or {"errors": [...]} for an error."""
        message = self._receive(timeout)
        if message["type"] == "next":
            result: dict[str, Any] = message["payload"]
            return result
        if message["type"] == "error":
            return {"errors": message["payload"]}
        return {"complete": True} if message["type"] == "complete" else message

    def nothing_within(self, seconds: float) -> bool:
        try:
            message = self._receive(seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected message {message}")

    def close(self) -> None:
        self._stack.close()


class SSESubscriber:
    """A GraphQL over SSE client: one POST with Accept: text/event-stream."""

    def __init__(
        self,
        base_url: str,
        query: str,
        variables: Mapping[str, Any] | None = None,
        *,
        token: str | None = None,
    ) -> None:
        import http.client
        from urllib.parse import urlsplit

        address = urlsplit(base_url)
        assert address.hostname == "127.0.0.1"
        self.connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
        headers = {"Accept": "text/event-stream", "Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = json.dumps({"query": query, "variables": dict(variables or {})})
        self.connection.request("POST", "/graphql/", body=body, headers=headers)
        self.response = self.connection.getresponse()
        assert self.response.status == 200, self.response.read()
        assert self.response.getheader("Content-Type", "").startswith("text/event-stream")

    def next(self, timeout: float = 10) -> dict[str, Any]:
        assert self.connection.sock is not None
        self.connection.sock.settimeout(timeout)
        event, data = None, []
        while True:
            line = self.response.readline().decode().rstrip("\r\n")
            if line.startswith(":"):
                continue  # a heartbeat comment
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("data:"):
                data.append(line.partition(":")[2].strip())
            elif line == "" and event is not None:
                if event == "complete":
                    return {"complete": True}
                result: dict[str, Any] = json.loads("\n".join(data))
                return result

    def close(self) -> None:
        self.connection.close()


def valid_details(event: str, **extra: Any) -> dict[str, Any]:
    """Details of the shape ``event`` declares (audit/events.py), plus ``extra`` keys."""
    import random

    from core.management.commands.seed_demo import demo_details

    return {**demo_details(random.Random(0), event), **extra}
