"""The embedded PostgreSQL: socket-only, shared by concurrent processes, stopped by the last."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from core.embedded_postgres import EmbeddedPostgres
from tests.conftest import EMBEDDED
from tests.support import free_port, start_serve

pytestmark = pytest.mark.skipif(not EMBEDDED, reason="DATABASE_URL names another server")

ROOT = Path(__file__).resolve().parents[2]

USE_SERVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import psycopg
    from core.embedded_postgres import EmbeddedPostgres

    server = EmbeddedPostgres(Path(sys.argv[1]))
    server.ensure_running()
    with psycopg.connect(host=str(server.socket_dir), port=5432, user="postgres",
                         dbname="auditlog") as conn:
        print(conn.execute("SELECT current_setting('listen_addresses')").fetchone()[0] or "-",
              flush=True)
    if sys.argv[2] == "hold":
        sys.stdin.read()  # keep using the server until the test closes stdin
    """
)


@pytest.mark.django_db
def test_the_server_listens_on_no_tcp_address() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SHOW listen_addresses")
        assert cursor.fetchone()[0] == ""
        cursor.execute("SELECT inet_server_addr()")
        assert cursor.fetchone()[0] is None  # connected through the unix socket


@pytest.fixture
def data_root() -> Iterator[Path]:
    path = ROOT / ".data" / "tests" / uuid.uuid4().hex[:8]
    path.mkdir(parents=True)
    yield path
    server = EmbeddedPostgres(path)
    if server.is_running():
        server._pg_ctl("stop", "-m", "immediate", "-w")
    shutil.rmtree(path, ignore_errors=True)


def _client(data_root: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", USE_SERVER, str(data_root), mode],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_processes_share_one_server_and_the_last_one_stops_it(data_root: Path) -> None:
    server = EmbeddedPostgres(data_root)
    holder = _client(data_root, "hold")
    assert holder.stdout is not None and holder.stdin is not None
    assert holder.stdout.readline().strip() == "-"  # up, and no TCP listener
    assert server.is_running()

    # A second process uses the same server at the same time, then leaves.
    visitor = _client(data_root, "once")
    _, err = visitor.communicate(timeout=60)
    assert visitor.returncode == 0, err
    assert server.is_running(), "a process that is not the last one stopped the server"

    holder.stdin.close()
    assert holder.wait(timeout=60) == 0
    assert not server.is_running(), "the last process left the server running"
    assert (data_root / "pg16" / "PG_VERSION").exists()


def test_serve_stops_the_server_it_started_on_sigterm(data_root: Path) -> None:
    # What `systemctl stop`, `docker stop` and `kill` send; uvicorn shuts down gracefully
    # and the process must still run its exit hooks.
    import signal

    env = {
        "DATABASE_URL": "",  # unset: the embedded server
        "EMBEDDED_PG_DIR": str(data_root),
    }
    serve = start_serve(free_port(), env, "--migrate")
    server = EmbeddedPostgres(data_root)
    assert server.is_running()
    serve.send_signal(signal.SIGTERM)
    serve.wait(timeout=60)
    assert not server.is_running(), "serve left the embedded PostgreSQL running"
