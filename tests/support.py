"""Helpers shared by test modules: query plans, and `manage.py serve` as a real process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from django.db import connection

ROOT = Path(__file__).resolve().parents[1]


# --- query plans ----------------------------------------------------------------------------


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
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
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
                error = process.stderr.read() if process.stderr else ""
                raise RuntimeError(f"manage.py serve did not start:\n{error}") from None
            time.sleep(0.1)


def stop_serve(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
