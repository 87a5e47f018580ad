"""What recordAuditEvents pays for inserting in key order (``python -m bench.batch_order``,
after ``make bench`` has built its database).

Concurrent batches that share idempotency keys deadlocked when each inserted its rows in
the order sent; the insert (audit/services.py, ``_BATCH_INSERT``) now draws the ids in
that order and puts the rows into the index in key order. This times both statements on
the same organization, alternated batch by batch so that drift of the machine falls on
both: ``BENCH_BATCH_ROUNDS`` (20) batches of 1,000 new events each, one client, the whole
transaction (the service's second query for keys already recorded does not run: every key
is new). Prints the median per batch of each, events per second and their ratio.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# The statement as it was before key order: rows in the order given.
_IN_ORDER_GIVEN = """
INSERT INTO audit_log (organization_id, idempotency_key, event, actor_id, actor_email,
                       actor_name, ip, details, time)
SELECT %s, i.key, i.event, i.actor_id, i.actor_email, i.actor_name, i.ip, i.details, i.time
FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[], %s::text[], %s::inet[],
            %s::jsonb[], %s::timestamptz[])
     WITH ORDINALITY AS i(key, event, actor_id, actor_email, actor_name, ip, details, time, n)
ORDER BY i.n
ON CONFLICT (organization_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING idempotency_key, id, time, stream_txid::text
"""


def _columns(size: int) -> list[list[Any]]:
    from django.utils import timezone

    now = timezone.now()
    prefix = uuid.uuid4().hex
    # Keys in no particular order, as integrations send them.
    keys = [f"{prefix}-{(n * 7919) % size:05}" for n in range(size)]
    return [
        keys,
        ["RESOURCE_CREATED"] * size,
        [None] * size,
        [f"user{n % 50}@bench.test" for n in range(size)],
        [None] * size,
        ["203.0.113.9"] * size,
        ['{"resource": "vm-12"}'] * size,
        [now] * size,
    ]


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from bench.__main__ import use_bench_database

    use_bench_database()
    from django.db import connection, transaction

    from audit.services import _BATCH_INSERT
    from core.models import Organization
    from core.services import organization_create

    organization = Organization.objects.filter(slug="batch-order").first() or (
        organization_create(slug="batch-order", name="Batch order", plan="paid")
    )
    rounds = int(os.environ.get("BENCH_BATCH_ROUNDS", "20"))
    size = 1_000
    timings: dict[str, list[float]] = {"order given": [], "key order": []}
    statements = {"order given": _IN_ORDER_GIVEN, "key order": _BATCH_INSERT}
    for round_ in range(rounds + 1):
        for label in list(statements) if round_ % 2 else list(statements)[::-1]:
            columns = _columns(size)
            arguments: list[Any] = (
                [organization.pk, *columns]
                if label == "order given"
                else [*columns, organization.pk]
            )
            started = time.perf_counter()
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(statements[label], arguments)
                assert len(cursor.fetchall()) == size
            if round_:  # the first round warms up
                timings[label].append((time.perf_counter() - started) * 1000)
    given, ordered = (statistics.median(timings[k]) for k in statements)
    print(
        f"recordAuditEvents insert, {rounds} batches of {size:,} new events each, alternated: "
        f"in the order given p50 {given:.1f} ms ({size / given * 1000:,.0f} events/s); "
        f"in key order p50 {ordered:.1f} ms ({size / ordered * 1000:,.0f} events/s); "
        f"key order / order given = {ordered / given:.2f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
