"""`make bench` (``python -m bench``): builds or reuses the dataset, serves the app with
uvicorn under production settings, and measures every shape with wrk at 1 and 8
concurrent clients, next to the raw SQL floor of the statements each request runs.

Settings (environment):

  BENCH_EVENTS    events in the main organization (default 1,000,000); two more hold a
                  fifth and a hundredth of that
  BENCH_SCALE=1   also measure at 100,000, 1,000,000 and 10,000,000 events (ratios to 100k)
  BENCH_DURATION  seconds per shape and concurrency (default 10)
  BENCH_SHAPES    only these shapes, e.g. S1,S9,S10 (default: every shape, S0-S19)
  BENCH_WORKERS   uvicorn worker processes (default 2, one per core)
  BENCH_IMPORT    events for the import measurement (default 1,000,000)
  BENCH_INGEST    events sent through recordAuditEvents in batches of 500 (default 100,000)
  BENCH_STREAM_SECONDS  seconds of live traffic for the stream latency (default 15)
  BENCH_LOG_STREAM_EVENTS  entries delivered to each of 10 log streams (default 20,000)
  BENCH_OUTPUT    where to write the JSON results (default bench-results.json)
  BENCH_PORT      the server's port on 127.0.0.1 (default: a free one)

The data lives in its own database (``<name>_bench`` beside DATABASE_URL's, or
``auditlog_bench`` on the embedded server), so it never mixes with `make run`'s.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
LUA = Path(__file__).with_name("wrk.lua")


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, "").replace("_", "").replace(",", "") or default)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the bench database ---------------------------------------------------------------------


def _with_name(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(name)))


def _ensure_database(admin_url: str, name: str, *, fresh: bool = False) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists and fresh:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = None
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def bench_database_urls() -> tuple[str, str, Any]:
    """(bench URL, scratch URL for write figures, embedded server handle or None)."""
    url = os.environ.get("DATABASE_URL", "").strip()
    server = None
    if not url:
        sys.path.insert(0, str(ROOT))
        from core.embedded_postgres import embedded_postgres

        server = embedded_postgres()
        server.ensure_running()  # held until this process exits
        settings = server.connection_settings()
        url = f"postgresql://{settings['USER']}@{quote(str(settings['HOST']), safe='')}:{settings['PORT']}/{settings['NAME']}"
    name = urlsplit(url).path.lstrip("/")
    bench, scratch = f"{name}_bench", f"{name}_bench_writes"
    _ensure_database(url, bench)
    return _with_name(url, bench), _with_name(url, scratch), server


# --- measuring ------------------------------------------------------------------------------


def statements_of(query: str, variables: dict[str, Any], token: str) -> list[str]:
    """The SQL one request runs, captured in-process through the real view."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    def post() -> Any:
        return Client(HTTP_HOST="127.0.0.1").post(
            "/graphql/",
            data=json.dumps({"query": query, "variables": variables}),
            content_type="application/json",
            headers={"Authorization": f"Bearer {token}"},
        )

    post()  # the token's first use is written once per interval, not on every request
    with CaptureQueriesContext(connection) as captured:
        response = post()
    body = json.loads(response.content)
    if "errors" in body:
        codes = {error.get("extensions", {}).get("code") for error in body["errors"]}
        if codes == {"TOTAL_COUNT_TOO_COSTLY"}:
            raise Refused(body["errors"][0]["message"])
        raise SystemExit(f"the request failed: {body['errors']}")
    return [q["sql"] for q in captured.captured_queries]


class Refused(Exception):
    """The shape's total is refused at this size (AUDIT_LOG_SEARCH_TOTAL_MAX), as designed:
    reported, not measured."""


def sql_floor_ms(statements: list[str], url: str, repeat: int = 30) -> float:
    """Sum over the statements of the median time PostgreSQL takes to run each, measured
    from a client on the same machine: the floor under any server's latency."""
    import psycopg

    total = 0.0
    with psycopg.connect(url, autocommit=True) as conn:
        for sql in statements:
            for _ in range(3):
                conn.execute(sql).fetchall()
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                conn.execute(sql).fetchall()  # reads every row, as the server does
                times.append((time.perf_counter() - started) * 1000)
            total += statistics.median(times)
    return total


def wrk(url: str, body: str, token: str, clients: int, seconds: float) -> dict[str, float]:
    command = [
        "wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
        "-s", str(LUA), url,
    ]  # fmt: skip
    result = subprocess.run(
        command,
        env={**os.environ, "BENCH_BODY": body, "BENCH_TOKEN": token},
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(out for out in result.stdout.splitlines() if out.startswith("BENCH "))
    raw = json.loads(line[len("BENCH ") :])
    if raw["socket_errors"] or raw["non2xx"]:
        raise SystemExit(f"wrk saw errors: {raw}\n{result.stdout}")
    return {
        "p50_ms": raw["p50_us"] / 1000,
        "p95_ms": raw["p95_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
    }


def rss_mb(pid: int) -> list[float]:
    """Resident memory of the serving processes: the workers, or the server itself."""
    children = subprocess.run(
        ["ps", "--ppid", str(pid), "-o", "pid=,rss=,args="], capture_output=True, text=True
    ).stdout.splitlines()
    rows = [c.split(None, 2) for c in children if "spawn_main" in c]
    if not rows:
        rows = [
            subprocess.run(
                ["ps", "-p", str(pid), "-o", "pid=,rss="], capture_output=True, text=True
            ).stdout.split()
        ]
    return [round(int(r[1]) / 1024, 1) for r in rows if len(r) >= 2]


# --- the run --------------------------------------------------------------------------------


def main() -> None:
    events = _env_int("BENCH_EVENTS", 1_000_000)
    scale = os.environ.get("BENCH_SCALE", "") == "1"
    duration = float(os.environ.get("BENCH_DURATION", "10"))
    workers = _env_int("BENCH_WORKERS", 2)
    import_events = _env_int("BENCH_IMPORT", 1_000_000)
    ingest_events = _env_int("BENCH_INGEST", 100_000)
    stream_seconds = float(os.environ.get("BENCH_STREAM_SECONDS", "15"))
    log_stream_events = _env_int("BENCH_LOG_STREAM_EVENTS", 20_000)
    output = Path(os.environ.get("BENCH_OUTPUT", "bench-results.json"))
    sizes = sorted({100_000, 1_000_000, 10_000_000, events}) if scale else [events]
    wanted = {
        name.strip() for name in os.environ.get("BENCH_SHAPES", "").split(",") if name.strip()
    }

    bench_url, scratch_url, _server = bench_database_urls()
    os.environ["DATABASE_URL"] = bench_url
    # Production settings, for this process (which captures each request's SQL) and the
    # server alike.
    os.environ["DEBUG"] = "0"
    os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")
    # This process builds datasets and vacuums 10M-row tables; the servers and the write
    # figures keep the production statement timeout.
    # The rate limiter runs on every request, as in production (its statement is part of
    # the figures), with limits no benchmark client reaches.
    os.environ.setdefault("RATE_LIMIT_PER_TOKEN", "1000000000")
    os.environ.setdefault("RATE_LIMIT_PER_ADDRESS", "1000000000")
    # The stream latency is measured with 50 subscribers sharing one token.
    os.environ.setdefault("AUDIT_STREAM_MAX_PER_HOLDER", "1000")
    statement_timeout = os.environ.get("DB_STATEMENT_TIMEOUT_MS")
    os.environ["DB_STATEMENT_TIMEOUT_MS"] = "0"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from audit.models import AuditLog
    from audit.selectors import AuditLogPosition
    from bench.dataset import bench_organization
    from bench.shapes import DEEP, search_shapes, shapes
    from core.database import close_all_connections
    from core.progress import ProgressBar
    from core.services import api_token_create
    from graphql_api.cursors import cursor_encode

    call_command("migrate", verbosity=0)
    largest = max(sizes)
    for n, size in enumerate([largest // 5, largest // 100, *sizes]):
        started = time.monotonic()
        progress = ProgressBar(size, f"Dataset {size:,}")
        org, _ = bench_organization(size, seed=n + 1, on_progress=progress.update)
        progress.finish()
        took = time.monotonic() - started
        if took > 1:
            log(f"built organization {org.slug} ({size:,} events) in {took:.0f}s")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) audit_log")
        cursor.execute("SELECT count(*) FROM audit_log")
        table_rows = cursor.fetchone()[0]

    targets = []
    for size in sizes:
        org, admin = bench_organization(size, seed=0)
        token = api_token_create(user=admin, name="bench")[1]
        deep = (
            AuditLog.objects.filter(organization=org)
            .order_by("-time", "-id")[DEEP - 1 : DEEP]
            .get()
        )
        cursor_value = cursor_encode(organization_id=org.pk, position=AuditLogPosition.of(deep))
        every = [*shapes(timezone.now(), cursor_value), *search_shapes(timezone.now())]
        targets.append(
            (size, token, [shape for shape in every if shape.name in wanted or not wanted])
        )
    close_all_connections()
    if statement_timeout is None:
        del os.environ["DB_STATEMENT_TIMEOUT_MS"]
    else:
        os.environ["DB_STATEMENT_TIMEOUT_MS"] = statement_timeout

    port = int(os.environ.get("BENCH_PORT", "0")) or _free_port()
    server_env = {
        **os.environ,
        "DATABASE_URL": bench_url,
        "LOG_LEVEL": "warning",
    }
    serve_cmd = [
        sys.executable,
        "manage.py",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    server = subprocess.Popen(serve_cmd, cwd=ROOT, env=server_env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/graphql/"
    try:
        _wait_for(port, server)
        results = []
        for size, token, shape_list in targets:
            for shape in shape_list:
                body = json.dumps({"query": shape.query, "variables": shape.variables})
                try:
                    statements = statements_of(shape.query, shape.variables, token)
                except Refused as refused:
                    results.append(
                        {"name": shape.name, "title": shape.title, "events": size,
                         "refused": "TOTAL_COUNT_TOO_COSTLY"}
                    )  # fmt: skip
                    log(f"{shape.name} {size:>10,}  TOTAL_COUNT_TOO_COSTLY: {refused}")
                    continue
                floor = sql_floor_ms(statements, bench_url)
                wrk(url, body, token, 1, 1)  # warm up
                c1 = wrk(url, body, token, 1, duration)
                c8 = wrk(url, body, token, 8, duration)
                row = {
                    "name": shape.name,
                    "title": shape.title,
                    "events": size,
                    "p50_ms": round(c1["p50_ms"], 3),
                    "p95_ms": round(c1["p95_ms"], 3),
                    "p99_ms": round(c1["p99_ms"], 3),
                    "rps_c1": round(c1["rps"]),
                    "p50_c8_ms": round(c8["p50_ms"], 3),
                    "p95_c8_ms": round(c8["p95_ms"], 3),
                    "rps_c8": round(c8["rps"]),
                    "statements": len(statements),
                    "floor_ms": round(floor, 3),
                    "ratio": round(c1["p50_ms"] / floor, 1) if floor else None,
                }
                results.append(row)
                log(
                    f"{shape.name} {size:>10,}  p50 {row['p50_ms']:6.2f} ms  p95 {row['p95_ms']:6.2f}"
                    f"  {row['rps_c1']:5} req/s  c8 {row['rps_c8']:5} req/s  floor {row['floor_ms']:.2f} ms"
                )
        memory = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(60)

    log("measuring writes (import, single records) in a scratch database")
    _ensure_database(bench_url, urlsplit(scratch_url).path.lstrip("/"), fresh=True)
    scratch_env = {**os.environ, "DATABASE_URL": scratch_url}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=scratch_env, check=True
    )
    writes_out = subprocess.run(
        [sys.executable, "-m", "bench.writes", str(import_events), "2000"],
        cwd=ROOT, env=scratch_env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    writes = json.loads(writes_out.stdout.strip().splitlines()[-1])
    log("measuring integrations (recordAuditEvents, the live stream) in the scratch database")
    integrations_out = subprocess.run(
        [sys.executable, "-m", "bench.integrations", str(ingest_events), str(stream_seconds)],
        cwd=ROOT, env={**scratch_env, "BENCH_WORKERS": str(workers)}, stdout=subprocess.PIPE,
        text=True, check=True,
    )  # fmt: skip
    integrations = json.loads(integrations_out.stdout.strip().splitlines()[-1])
    log("measuring log streams (10 HTTPS destinations on 127.0.0.1) in the scratch database")
    log_streams_out = subprocess.run(
        [sys.executable, "-m", "bench.log_streams", str(log_stream_events), str(stream_seconds)],
        cwd=ROOT, env={**scratch_env, "AUDIT_LOG_STREAM_DELIVER_IN_SERVER": "0"},
        stdout=subprocess.PIPE, text=True, check=True,
    )  # fmt: skip
    log_streams = json.loads(log_streams_out.stdout.strip().splitlines()[-1])

    report = {
        "command": _command_line(),
        "machine": _machine(),
        "dataset": {"sizes": sizes, "table_rows": table_rows, "workers": workers},
        "duration_s": duration,
        "shapes": results,
        "writes": writes,
        "integrations": integrations,
        "log_streams": log_streams,
        "server_rss_mb": memory,
    }
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(render(report))
    log(f"wrote {output}")


def render(report: dict[str, Any]) -> str:
    lines = [
        f"$ {report['command']}",
        f"machine: {report['machine']}",
        f"audit_log rows: {report['dataset']['table_rows']:,}; uvicorn workers: "
        f"{report['dataset']['workers']}; {report['duration_s']:.0f}s per shape and concurrency",
        "",
        "| shape | events | p50 ms | p95 ms | p99 ms | req/s c1 | req/s c8 | p95 c8 ms | SQL stmts | SQL floor ms | p50 / floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["shapes"]:
        if "refused" in r:
            lines.append(
                f"| {r['name']} {r['title']} | {r['events']:,} | {r['refused']} (the total "
                "is refused by design at this size) |" + " |" * 9
            )
            continue
        lines.append(
            f"| {r['name']} {r['title']} | {r['events']:,} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['rps_c1']:,} | {r['rps_c8']:,} | {r['p95_c8_ms']:.2f} | "
            f"{r['statements']} | {r['floor_ms']:.3f} | {r['ratio'] or '-'} |"
        )
    sizes = report["dataset"]["sizes"]
    if len(sizes) > 1:
        base = {
            r["name"]: r["p50_ms"]
            for r in report["shapes"]
            if r["events"] == sizes[0] and "refused" not in r
        }
        lines += ["", f"Scale: p50 at each size / p50 at {sizes[0]:,}", ""]
        lines.append("| shape | " + " | ".join(f"{s:,}" for s in sizes) + " |")
        lines.append("|---|" + "---:|" * len(sizes))
        for name in base:
            cells = [
                f"{r['p50_ms'] / base[name]:.2f}" if "refused" not in r else "refused"
                for s in sizes
                for r in report["shapes"]
                if r["events"] == s and r["name"] == name
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    w = report["writes"]
    lines += [
        "",
        f"import_audit_events: {w['import_events']:,} events in {w['import_seconds']}s = "
        f"{w['import_events_per_s']:,} events/s (validation included)",
        f"recording one event (whole transaction): p50 {w['record_p50_ms']} ms, p95 "
        f"{w['record_p95_ms']} ms; with 4 concurrent writers to one organization and day: p50 "
        f"{w['record_4_writers_p50_ms']} ms, p95 {w['record_4_writers_p95_ms']} ms",
        f"tamper evidence, {w['sealed_entries']:,} entries of one organization: seal_audit_log "
        f"{w['seal_seconds']}s ({w['seal_entries_per_s']:,} entries/s), verify_audit_log "
        f"{w['verify_seconds']}s ({w['verify_entries_per_s']:,} entries/s)",
        *(
            f"export_audit_logs {name}: {e['entries']:,} entries in {e['seconds']}s = "
            f"{e['entries_per_s']:,} entries/s (process start included), peak RSS "
            f"{e['peak_rss_mb']} MB, {e['bytes'] / 2**20:,.1f} MB written"
            for name, e in w["exports"].items()
        ),
        f"server RSS per worker after the run: {', '.join(f'{m} MB' for m in report['server_rss_mb'])}",
    ]
    i = report["integrations"]
    lines += [
        f"recordAuditEvents, {i['ingest_events']:,} events in batches of {i['ingest_batch']} "
        f"({i['workers']} workers): {i['ingest_events_per_s_1_client']:,} events/s with 1 client, "
        f"{i['ingest_events_per_s_4_clients']:,} events/s with 4 clients; a retried batch "
        f"(nothing new written): {i['ingest_retry_events_per_s']:,} events/s",
        f"auditLogCreated, {i['stream_subscribers']} WebSocket subscribers, {i['stream_events']} "
        f"events at {i['stream_rate_per_s']}/s, commit to receipt: p50 {i['stream_p50_ms']} ms, "
        f"p95 {i['stream_p95_ms']} ms, p99 {i['stream_p99_ms']} ms, max {i['stream_max_ms']} ms "
        f"({i['stream_deliveries']:,} of {i['stream_expected']:,} deliveries)",
    ]
    if (ls := report.get("log_streams")) is not None:
        lines.append(
            f"log streams, {ls['destinations']} HTTPS destinations on 127.0.0.1 (signatures "
            f"checked, {ls['forged']} forged): {ls['throughput_events']:,} recorded entries to "
            f"each, {ls['throughput_delivered']:,} delivered in {ls['throughput_seconds']} s = "
            f"{ls['throughput_events_per_s']:,} entries/s; {ls['latency_entries']} entries at "
            f"20/s, commit to receipt: p50 {ls['latency_p50_ms']} ms, p95 "
            f"{ls['latency_p95_ms']} ms ({ls['latency_receipts']:,} receipts, "
            f"{ls['latency_missing']} missing; batch {ls['batch']}, batch wait "
            f"{ls['batch_wait_ms']} ms)"
        )
    return "\n".join(lines)


def _command_line() -> str:
    settings = " ".join(
        f"{k}={shlex.quote(v)}" for k, v in sorted(os.environ.items()) if k.startswith("BENCH_")
    )
    return f"{settings} make bench".strip()


def _machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu or platform.machine()}), Python {platform.python_version()}, {platform.system()} {platform.release()}"


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(port: int, server: subprocess.Popen[bytes]) -> None:
    import socket

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("the server exited during start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the server did not start within 60s")


def use_bench_database() -> None:
    """Point this process at the bench database with production settings, and set Django
    up (for the side studies; the embedded server is held until the process exits)."""
    bench_url, _, _server = bench_database_urls()
    _held.append(_server)
    os.environ.update(
        {
            "DATABASE_URL": bench_url,
            "DEBUG": "0",
            "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-not-secret"),
            "DJANGO_SETTINGS_MODULE": "core.settings",
        }
    )
    import django

    django.setup()


_held: list[Any] = []


def bench_reader_token(name: str) -> str:
    """For the side studies (bench.limiter, bench.compare): point this process at the bench
    database with production settings, and return a new API token of the 1M organization's
    administrator."""
    use_bench_database()
    from bench.dataset import bench_organization
    from core.database import close_all_connections
    from core.services import api_token_create

    _, admin = bench_organization(1_000_000, seed=0)
    token = api_token_create(user=admin, name=name)[1]
    close_all_connections()
    return token


@contextmanager
def serving_process(cwd: Path, env: dict[str, str], workers: int = 2) -> Iterator[tuple[str, int]]:
    """``manage.py serve`` of the tree at ``cwd`` with ``env`` on a free port; its
    /graphql/ URL and the server's pid until the block ends."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port), "--workers", str(workers)],
        cwd=cwd,
        env={**env, "LOG_LEVEL": "warning"},
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_for(port, server)
        yield f"http://127.0.0.1:{port}/graphql/", server.pid
    finally:
        server.terminate()
        server.wait(60)


@contextmanager
def serving(cwd: Path, env: dict[str, str], workers: int = 2) -> Iterator[str]:
    """``serving_process``, its URL only."""
    with serving_process(cwd, env, workers) as (url, _pid):
        yield url


if __name__ == "__main__":
    main()
