"""What PostgreSQL spends on each shape's statement: ``python -m bench.plans`` (after
``make bench`` has built its database).

For S1-S8 of bench/shapes.py on the 1M organization, the one statement the compiled read
path sends for the page and its total (audit/page_sql.py, every column of the shapes'
selection; S8 the total alone), run ``BENCH_PLAN_RUNS`` times (25) with ``EXPLAIN
(ANALYZE, TIMING OFF, SUMMARY ON)``: the medians of the planning and execution times
PostgreSQL reports, without the client's share. Run it on two trees to compare the SQL
of a change; the machine's drift is smaller here than under load, not gone.
"""

from __future__ import annotations

import os
import statistics
import sys
from datetime import datetime
from typing import Any

from bench.__main__ import ROOT, use_bench_database


def main() -> None:
    use_bench_database()
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from audit.filters import AuditLogFilter
    from audit.selectors import audit_log_count, audit_log_page
    from bench.compiled import million_shapes
    from graphql_api.cursors import cursor_decode

    _token, org, _deep, shape_list = million_shapes("bench-plans")
    runs = int(os.environ.get("BENCH_PLAN_RUNS", "25"))
    columns = ("id", "time", "event", "ip", "actor_id", "actor_email", "actor_name", "details_json")
    print(f"$ BENCH_PLAN_RUNS={runs} python -m bench.plans")
    print("| shape | planning ms | execution ms |")
    print("|---|---:|---:|")
    for shape in shape_list:
        if shape.name == "S0":
            continue
        raw: dict[str, Any] = dict(shape.variables.get("filter", {}))
        filters = AuditLogFilter.build(
            event_type=raw.get("eventType"),
            user_email=raw.get("userEmail"),
            time_from=datetime.fromisoformat(raw["from"]) if "from" in raw else None,
            time_to=datetime.fromisoformat(raw["to"]) if "to" in raw else None,
        )
        after = shape.variables.get("after")
        with CaptureQueriesContext(connection) as captured:
            if "edges" in shape.query:
                audit_log_page(
                    organization=org,
                    filters=filters,
                    first=50,
                    after=cursor_decode(after, organization_id=org.pk) if after else None,
                    with_total="totalCount" in shape.query,
                    columns=columns,
                )
            else:
                audit_log_count(organization=org, filters=filters)
        sql = captured.captured_queries[-1]["sql"]
        planning, execution = [], []
        with connection.cursor() as cursor:
            for _ in range(runs):
                cursor.execute("EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON, FORMAT JSON) " + sql)
                (report,) = cursor.fetchone()[0]
                planning.append(report["Planning Time"])
                execution.append(report["Execution Time"])
        print(
            f"| {shape.name} {shape.title} | {statistics.median(planning):.3f} | "
            f"{statistics.median(execution):.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
