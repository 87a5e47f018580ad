"""The rate limiter's cost (``python -m bench.limiter``, after ``make bench`` has built its
database): ``{ __typename }`` with wrk against ``manage.py serve --workers 2``, with the
limits out of reach and then off (0), twice each in turn, 5 s per point at 1 and 8
clients. Prints one line per run; docs/PERFORMANCE.md quotes them."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from bench.__main__ import bench_reader_token, serving, wrk

    token = bench_reader_token("bench-limiter")
    body = json.dumps({"query": "{ __typename }"})
    for label, limit in [("on", "1000000000"), ("off", "0")] * 2:
        env = {**os.environ, "RATE_LIMIT_PER_TOKEN": limit, "RATE_LIMIT_PER_ADDRESS": limit}
        with serving(ROOT, env) as url:
            wrk(url, body, token, 1, 1)  # warm up
            one, eight = wrk(url, body, token, 1, 5), wrk(url, body, token, 8, 5)
            print(
                f"limiter {label}: p50 {one['p50_ms']:.2f} ms, {one['rps']:,.0f} req/s with 1 "
                f"client, {eight['rps']:,.0f} req/s with 8",
                flush=True,
            )


if __name__ == "__main__":
    main()
