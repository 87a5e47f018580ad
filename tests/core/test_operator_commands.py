"""The operator commands of PRODUCT.md, run exactly as written (``python manage.py ...``,
no DEBUG, no SECRET_KEY) beside a running server, as on a fresh clone after ``make run``:
a copy of the checkout with its own embedded PostgreSQL, served as ``make run`` serves it.
The system's ``python`` has no Django: manage.py runs the command with the checkout's
.venv. The server and the commands share one key (``.data/secret-key``): a token made by
one works with the other, and checkpoints sealed by a command verify in another. Without
SECRET_KEY against a named database server, the error is one line that says what to set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT, free_port, stop_serve

PYTHON = shutil.which("python") or shutil.which("python3") or "python3"
# What the operator's shell has: none of the settings a test run or a server sets.
CLEAN_ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in ("SECRET_KEY", "DEBUG", "DATABASE_URL", "DATABASE_OWNER_URL")
    and not k.startswith(("DJANGO_", "PYTEST_"))
}
# The checkout's virtualenv must not leak into the operator's shell.
CLEAN_ENV.pop("VIRTUAL_ENV", None)
CLEAN_ENV["PATH"] = os.pathsep.join(
    p for p in CLEAN_ENV.get("PATH", "").split(os.pathsep) if ".venv" not in p
)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A copy of the checkout (its tracked files, and the same .venv) served as ``make
    run`` serves it; the copy's path and the server's base URL."""
    copy = tmp_path_factory.mktemp("fresh-clone") / "auditlog"
    files = subprocess.run(
        [
            shutil.which("git") or "git",
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file():
            target = copy / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (copy / ".venv").symlink_to(ROOT / ".venv")
    port = free_port()
    log = (copy / "serve.log").open("w")
    server = subprocess.Popen(
        [PYTHON, "manage.py", "serve", "--migrate", "--seed-demo-if-empty", "--port", str(port)],
        cwd=copy,
        env={**CLEAN_ENV, "DEBUG": "1"},  # what make run sets
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(url, server, copy / "serve.log")
        yield copy, url
    finally:
        stop_serve(server)  # type: ignore[arg-type]
        log.close()


def _wait_for(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    import time

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the server exited:\n{log.read_text()}")
        try:
            urllib.request.urlopen(url + "/graphql/?query=%7B__typename%7D", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the server did not start:\n{log.read_text()}")


def run(
    copy: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python manage.py ARGS`` in the copy, as an operator types it."""
    return subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=copy,
        env=env or CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def graphql(url: str, token: str, query: str) -> dict[str, Any]:
    request = urllib.request.Request(
        url + "/graphql/",
        data=json.dumps({"query": query}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body: dict[str, Any] = json.loads(response.read())
    return body


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def test_a_python_without_django_runs_the_command_with_the_checkouts_venv(
    checkout: tuple[Path, str],
) -> None:
    probe = subprocess.run(
        [PYTHON, "-c", "import django"], env=CLEAN_ENV, capture_output=True, check=False
    )
    if probe.returncode == 0:
        pytest.skip(f"{PYTHON} has Django installed: manage.py has no reason to switch")
    copy, _ = checkout
    out = ok(run(copy, "shell", "-c", "import sys; print(sys.prefix)"))
    assert Path(out.strip().splitlines()[-1]).resolve() == (copy / ".venv").resolve()


def test_product_commands_run_as_written_beside_the_server(checkout: tuple[Path, str]) -> None:
    copy, url = checkout
    ok(run(copy, "create_org", "initech", "--name", "Initech", "--plan", "paid"))
    ok(
        run(
            copy,
            "create_user",
            "ops@initech.test",
            "--org",
            "initech",
            "--admin",
            "--password",
            "pw-ops-12345",
        )
    )
    out = ok(run(copy, "create_api_token", "ops@initech.test"))
    (token,) = out.splitlines()  # the token alone on stdout
    assert token.startswith("alog_")

    events = copy / "events.jsonl"
    events.write_text(
        json.dumps(
            {"event": "USER_LOGIN", "user_email": "a@acme.test", "ip": "203.0.113.5",
             "details": {"method": "sso"}, "time": "2026-01-31T12:00:00Z"}
        )
        + "\n"
    )  # fmt: skip
    ok(run(copy, "import_audit_events", "initech", str(events)))
    ok(run(copy, "seed_demo"))  # idempotent beside the seeded server

    # The server sees what the commands wrote, and accepts the token they made.
    body = graphql(url, token, "{ auditLogs(first: 5) { totalCount edges { node { event ip } } } }")
    assert "errors" not in body, body
    nodes = [e["node"] for e in body["data"]["auditLogs"]["edges"]]
    assert {"event": "USER_LOGIN", "ip": "203.0.113.5"} in nodes

    # One key for the checkout: what a command seals, the server's role verifies and reports.
    ok(run(copy, "seal_audit_log", "--org", "initech"))
    assert "initech: OK" in ok(run(copy, "verify_audit_log", "--org", "initech"))
    status = graphql(url, token, "{ auditLogIntegrity { status } }")
    assert status["data"]["auditLogIntegrity"]["status"] == "VERIFIED", status
    secret = copy / ".data" / "secret-key"
    assert secret.stat().st_mode & 0o777 == 0o600


def test_without_secret_key_against_a_named_server_the_error_says_what_to_set(
    checkout: tuple[Path, str],
) -> None:
    copy, _ = checkout
    result = run(
        copy, "create_api_token", "ops@initech.test",
        env={**CLEAN_ENV, "DATABASE_URL": "postgres://auditlog_app@db.internal/auditlog"},
    )  # fmt: skip
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "SECRET_KEY must be set" in line and "DATABASE_URL" in line
