"""`make bench`: the performance benchmark of the audit log API (docs/PERFORMANCE.md).

Run as ``python -m bench``; settings come from BENCH_* environment variables
(bench/__main__.py).
"""
