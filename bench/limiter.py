"""The rate limiter's cost (``python -m bench.limiter``, after ``make bench`` has built its
database): ``{ __typename }`` with wrk against ``manage.py serve --workers 2``, with the
limits out of reach and then off (0), twice each in turn, 5 s per point at 1 and 8
clients. Prints one line per run; docs/PERFORMANCE.md quotes them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from bench.__main__ import _free_port, _wait_for, bench_database_urls, wrk

    bench_url, _, _server = bench_database_urls()
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
    from bench.dataset import bench_organization
    from core.database import close_all_connections
    from core.services import api_token_create

    _, admin = bench_organization(1_000_000, seed=0)
    token = api_token_create(user=admin, name="bench-limiter")[1]
    close_all_connections()
    body = json.dumps({"query": "{ __typename }"})
    for label, limit in [("on", "1000000000"), ("off", "0")] * 2:
        port = _free_port()
        env = {**os.environ, "LOG_LEVEL": "warning"}
        env |= {"RATE_LIMIT_PER_TOKEN": limit, "RATE_LIMIT_PER_ADDRESS": limit}
        server = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port), "--workers", "2"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        try:
            _wait_for(port, server)
            url = f"http://127.0.0.1:{port}/graphql/"
            wrk(url, body, token, 1, 1)  # warm up
            one, eight = wrk(url, body, token, 1, 5), wrk(url, body, token, 8, 5)
            print(
                f"limiter {label}: p50 {one['p50_ms']:.2f} ms, {one['rps']:,.0f} req/s with 1 "
                f"client, {eight['rps']:,.0f} req/s with 8",
                flush=True,
            )
        finally:
            server.terminate()
            server.wait(60)


if __name__ == "__main__":
    main()
