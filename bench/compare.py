"""Is a change in the figures the code or the machine? ``python -m bench.compare REV``
(after ``make bench`` has built its database) serves the code of git revision REV and the
working tree in turn, with the same Python environment and the same bench database, and
measures the shapes of bench/shapes.py named by ``BENCH_COMPARE_SHAPES`` (``S0,S1``;
``all`` for S0-S19) with wrk: p50 with 1 client, req/s with 8 and the server's CPU time per
request (bench/compiled.py's ``measure``), 5 s each, each tree ``BENCH_COMPARE_ROUNDS``
times (2), alternated so that drift of the machine falls on both.

With ``BENCH_COMPARE_INGEST=N``, each round also runs bench/integrations.py of that tree
(N events through ``recordAuditEvents`` in batches of 500, by 1 and 4 clients, then the
live stream's delivery latency for ``BENCH_COMPARE_STREAM_SECONDS``, 10) in a scratch
database made afresh and migrated by that tree.

With ``BENCH_COMPARE_WRITES=N``, each round also runs bench/writes.py of that tree (an
import of N events, 2,000 single records by one writer and by four, sealing and
verifying them, and the exports with their peak memory), in a scratch database made
afresh and migrated by that tree.

REV must need the same installed packages (requirements.lock) and read the current
schema (later migrations may add tables and columns, not take any away). Prints one line
per round; docs/PERFORMANCE.md quotes them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def main(revision: str) -> None:
    sys.path.insert(0, str(ROOT))
    from django.utils import timezone

    from bench.__main__ import serving_process
    from bench.compiled import measure, million_shapes
    from bench.shapes import search_shapes

    token, _org, _deep, every_shape = million_shapes("bench-compare")
    every_shape = [*every_shape, *search_shapes(timezone.now())]
    # As make bench runs the current code: the limiter on, out of reach.
    env = {**os.environ, "RATE_LIMIT_PER_TOKEN": "1000000000"}
    env["RATE_LIMIT_PER_ADDRESS"] = "1000000000"
    named = os.environ.get("BENCH_COMPARE_SHAPES", "S0,S1")
    wanted = {shape.name for shape in every_shape} if named == "all" else set(named.split(","))
    shapes = [shape for shape in every_shape if shape.name in wanted]
    if {shape.name for shape in shapes} != wanted:
        sys.exit(f"BENCH_COMPARE_SHAPES: no such shape in {named} (S0-S19, or all)")
    rounds = int(os.environ.get("BENCH_COMPARE_ROUNDS", "2"))
    ingest = int(os.environ.get("BENCH_COMPARE_INGEST", "0"))
    writes = int(os.environ.get("BENCH_COMPARE_WRITES", "0"))

    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-q", str(other), revision],
            cwd=ROOT,
            check=True,
        )
        try:
            trees = {revision: other, "working tree": ROOT}
            for label in list(trees) * rounds:
                with serving_process(trees[label], env) as (url, pid):
                    figures = []
                    for shape in shapes:
                        body = json.dumps({"query": shape.query, "variables": shape.variables})
                        m = measure(url, pid, body, token, 5)
                        figures.append(
                            f"{shape.name} p50 {m['p50_ms']:.2f} ms, {m['rps_c8']:,.0f} req/s "
                            f"with 8 clients, CPU {m['cpu_ms']:.2f} ms/req"
                        )
                    print(f"{label}: " + "; ".join(figures), flush=True)
                if writes:
                    w = in_scratch(trees[label], env, ["bench.writes", str(writes), "2000"])
                    exports = "; ".join(
                        f"export {name} {e['entries_per_s']:,} entries/s, {e['peak_rss_mb']} MB"
                        for name, e in w["exports"].items()
                    )
                    print(
                        f"{label}: import {w['import_events_per_s']:,} events/s; one record "
                        f"p50 {w['record_p50_ms']} ms, p95 {w['record_p95_ms']} ms, with 4 "
                        f"writers p50 {w['record_4_writers_p50_ms']} ms, p95 "
                        f"{w['record_4_writers_p95_ms']} ms; {exports}; rows read by sequential "
                        f"scans while recording {w.get('record_rows_read_by_sequential_scans', '-')}, "
                        f"rollup rows read per record {w.get('record_rollup_rows_read_per_record', '-')}",
                        flush=True,
                    )
                if ingest:
                    seconds = os.environ.get("BENCH_COMPARE_STREAM_SECONDS", "10")
                    i = in_scratch(trees[label], env, ["bench.integrations", str(ingest), seconds])
                    print(
                        f"{label}: recordAuditEvents {i['ingest_events_per_s_1_client']:,} events/s "
                        f"with 1 client, {i['ingest_events_per_s_4_clients']:,} with 4; stream "
                        f"p50 {i['stream_p50_ms']} ms, p95 {i['stream_p95_ms']} ms "
                        f"({i['stream_deliveries']:,} of {i['stream_expected']:,} deliveries)",
                        flush=True,
                    )
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(other)], cwd=ROOT, check=False
            )


def in_scratch(tree: Path, env: dict[str, str], module: list[str]) -> dict[str, Any]:
    """``python -m MODULE ARGS...`` of ``tree`` (bench/integrations.py or bench/writes.py),
    in a scratch database made afresh for it and migrated by that tree: its JSON line."""
    from urllib.parse import urlsplit

    from bench.__main__ import _ensure_database, _with_name

    bench_url = env["DATABASE_URL"]
    name = urlsplit(bench_url).path.lstrip("/") + "_compare"
    _ensure_database(bench_url, name, fresh=True)
    # As make bench runs it: the 50 subscribers share one token.
    scratch = {
        **env,
        "DATABASE_URL": _with_name(bench_url, name),
        "AUDIT_STREAM_MAX_PER_HOLDER": "1000",
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=tree, env=scratch, check=True
    )
    out = subprocess.run(
        [sys.executable, "-m", *module], cwd=tree, env=scratch, stdout=subprocess.PIPE,
        text=True, check=True,
    )  # fmt: skip
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bench.compare REV")
    main(sys.argv[1])
