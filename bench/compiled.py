"""The compiled read path against Strawberry's, in one run: ``python -m bench.compiled``
(after ``make bench`` has built its database).

Serves the working tree twice, ``GRAPHQL_COMPILED_READS=1`` and ``=0`` (graphql_api/
compiled.py), in alternation, ``BENCH_COMPILED_ROUNDS`` times each (2), so that the drift of
the machine falls on both. For every shape of bench/shapes.py on the 1M organization: p50
and p95 with 1 client, requests per second with 8, and the server's CPU time per request
(user + system time of the server's processes over the 8-client run, divided by the
requests served). ``BENCH_DURATION`` seconds per point (5); the workers' resident memory
after each round. Prints a table of the medians of the rounds, with ratios, and one JSON
line; docs/PERFORMANCE.md quotes them.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.__main__ import ROOT, bench_reader_token, rss_mb, serving_process, wrk

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children, living ones included."""
    pids = [pid] + [
        int(p)
        for p in subprocess.run(
            ["ps", "--ppid", str(pid), "-o", "pid="], capture_output=True, text=True
        ).stdout.split()
    ]
    total = 0
    for each in pids:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def measure(url: str, pid: int, body: str, token: str, duration: float) -> dict[str, float]:
    """One shape against one server: p50 and p95 with 1 client, req/s with 8, and the
    server's CPU time per request over the 8-client run."""
    wrk(url, body, token, 1, 1)  # warm up
    c1 = wrk(url, body, token, 1, duration)
    before = cpu_seconds(pid)
    started = time.monotonic()
    c8 = wrk(url, body, token, 8, duration)
    served = c8["rps"] * (time.monotonic() - started)
    cpu = cpu_seconds(pid) - before
    return {
        "p50_ms": c1["p50_ms"],
        "p95_ms": c1["p95_ms"],
        "rps_c8": c8["rps"],
        "cpu_ms": cpu / served * 1000 if served else 0.0,
    }


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def table(
    shape_list: list[Any], runs: dict[str, dict[str, list[dict[str, float]]]], left: str, right: str
) -> tuple[list[str], list[dict[str, Any]]]:
    """The rows of the comparison table (medians of the rounds, ``left`` / ``right``;
    ratios above 1 favour ``left``) and the same figures for the JSON summary."""
    lines, summary = [], []
    for shape in shape_list:
        n = shape.name
        row = {
            key: (
                statistics.median(p[key] for p in runs[left][n]),
                statistics.median(p[key] for p in runs[right][n]),
            )
            for key in ("p50_ms", "p95_ms", "rps_c8", "cpu_ms")
        }
        summary.append({"name": n, "title": shape.title, **row})
        p50, p95, rps, per = row["p50_ms"], row["p95_ms"], row["rps_c8"], row["cpu_ms"]
        lines.append(
            f"| {n} {shape.title} | {p50[0]:.2f} / {p50[1]:.2f} | {p95[0]:.2f} / {p95[1]:.2f} | "
            f"{rps[0]:,.0f} / {rps[1]:,.0f} | {per[0]:.2f} / {per[1]:.2f} | "
            f"{ratio(p50[1], p50[0])} | {ratio(rps[0], rps[1])} | {ratio(per[1], per[0])} |"
        )
    return lines, summary


def million_shapes(name: str) -> tuple[str, Any, Any, list[Any]]:
    """For the side studies: a new API token of the 1M organization's administrator, the
    organization, the entry 10,000 deep, and the shapes of bench/shapes.py for them."""
    token = bench_reader_token(name)
    from django.utils import timezone

    from audit.models import AuditLog
    from audit.selectors import AuditLogPosition
    from bench.dataset import bench_organization
    from bench.shapes import DEEP, shapes
    from core.database import close_all_connections
    from graphql_api.cursors import cursor_encode

    org, _ = bench_organization(1_000_000, seed=0)
    deep = AuditLog.objects.filter(organization=org).order_by("-time", "-id")[DEEP - 1 : DEEP].get()
    deep_cursor = cursor_encode(organization_id=org.pk, position=AuditLogPosition.of(deep))
    shape_list = shapes(timezone.now(), deep_cursor)
    close_all_connections()
    return token, org, deep, shape_list


def main() -> None:
    token, _org, _deep, shape_list = million_shapes("bench-compiled")
    duration = float(os.environ.get("BENCH_DURATION", "5"))
    rounds = int(os.environ.get("BENCH_COMPILED_ROUNDS", "2"))
    base = {**os.environ, "RATE_LIMIT_PER_TOKEN": "1000000000"}
    base["RATE_LIMIT_PER_ADDRESS"] = "1000000000"
    runs: dict[str, dict[str, list[dict[str, float]]]] = {"compiled": {}, "strawberry": {}}
    memory: dict[str, list[list[float]]] = {"compiled": [], "strawberry": []}
    for label in ["compiled", "strawberry"] * rounds:
        env = {**base, "GRAPHQL_COMPILED_READS": "1" if label == "compiled" else "0"}
        with serving_process(ROOT, env) as (url, pid):
            for shape in shape_list:
                body = json.dumps({"query": shape.query, "variables": shape.variables})
                point = measure(url, pid, body, token, duration)
                runs[label].setdefault(shape.name, []).append(point)
                print(
                    f"{label:10} {shape.name}  p50 {point['p50_ms']:6.2f} ms  "
                    f"c8 {point['rps_c8']:6.0f} req/s  CPU {point['cpu_ms']:5.2f} ms/req",
                    file=sys.stderr,
                    flush=True,
                )
            memory[label].append(rss_mb(pid))

    lines = [
        f"$ BENCH_DURATION={duration:g} BENCH_COMPILED_ROUNDS={rounds} python -m bench.compiled",
        "1,000,000-event organization; medians of the rounds, alternated; ratio = "
        "Strawberry / compiled (p50, CPU) or compiled / Strawberry (req/s)",
        "",
        "| shape | p50 ms compiled / Strawberry | p95 ms | req/s at 8 | server CPU ms/req | "
        "p50 ratio | req/s ratio | CPU ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows, summary = table(shape_list, runs, "compiled", "strawberry")
    lines += rows
    lines += [
        "",
        "worker RSS after each round (MB): "
        + "; ".join(f"{label} {memory[label]}" for label in memory),
    ]
    print("\n".join(lines))
    print(
        json.dumps(
            {"rounds": rounds, "duration_s": duration, "shapes": summary, "worker_rss_mb": memory}
        )
    )


if __name__ == "__main__":
    main()
