"""Log stream figures of the benchmark (``python -m bench.log_streams EVENTS SECONDS``, run
by ``make bench`` against the scratch database):

* throughput: EVENTS entries already recorded, delivered to each of 10 destinations (an
  HTTPS receiver on 127.0.0.1 that checks every signature, tests/receiver.py), by one
  deliverer with its default settings; entries per second, over all destinations;
* latency: 20 entries a second for SECONDS seconds while the deliverer runs, each timed
  from its commit to its receipt at each of the 10 destinations; p50 and p95.

``BENCH_LOG_STREAM_DESTINATIONS`` sets another number of destinations (10). Prints one
JSON line. The deliverer runs with the defaults (AUDIT_LOG_STREAM_BATCH,
AUDIT_LOG_STREAM_BATCH_WAIT_MS, 4 threads): the latency includes the batch wait.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

DESTINATIONS = int(os.environ.get("BENCH_LOG_STREAM_DESTINATIONS", "10"))
RATE = 20


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(events: int, seconds: float) -> dict[str, Any]:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
    django.setup()
    import ipaddress
    from datetime import timedelta

    from django.conf import settings
    from django.db import connections, transaction
    from django.utils import timezone

    from audit.log_streams import Deliverer, audit_log_stream_create, entry_json, new_holder
    from audit.services import AuditEntryDraft, audit_log_bulk_create, audit_log_record
    from core.models import AuditLogStream
    from core.services import organization_create
    from tests.receiver import running_receiver

    with tempfile.TemporaryDirectory() as tmp, running_receiver(Path(tmp)) as receiver:
        settings.AUDIT_LOG_STREAM_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.1/32")]
        settings.AUDIT_LOG_STREAM_CA_FILE = str(receiver.cert)
        org = organization_create(slug=f"streams{os.getpid()}", name="Streams", plan="paid")
        streams = []
        for n in range(DESTINATIONS):
            stream, secret = audit_log_stream_create(
                organization=org, name=f"siem-{n}", url=receiver.url
            )
            receiver.secrets[str(stream.pk)] = secret
            streams.append(stream)
        now = timezone.now()
        audit_log_bulk_create(
            organization=org,
            drafts=(
                AuditEntryDraft(
                    event="RESOURCE_UPDATED",
                    time=now - timedelta(seconds=events - i),
                    user_email="ops@streams.test",
                    ip="203.0.113.9",
                    details={
                        "resource": f"vm-{i % 997}",
                        "changes": {"size": {"from": "small", "to": "large"}},
                    },
                )
                for i in range(events)
            ),
        )
        connections.close_all()

        def total() -> int:
            with receiver.lock:
                return sum(len(d.events) for d in receiver.deliveries)

        # The streams' own AUDIT_LOG_STREAM_CREATED entries arrive too.
        target = events * DESTINATIONS + DESTINATIONS * (DESTINATIONS + 1) // 2
        deliverer = Deliverer(new_holder())
        runner = threading.Thread(target=deliverer.run)
        started = time.perf_counter()
        runner.start()
        while total() < target and time.perf_counter() - started < 600:
            time.sleep(0.02)
        throughput_seconds = time.perf_counter() - started
        delivered = total()

        # Latency: commits at RATE per second, receipts timed by the receiver.
        committed: dict[str, float] = {}

        def arrivals() -> dict[str, list[float]]:
            found: dict[str, list[float]] = {i: [] for i in committed}
            with receiver.lock:
                for delivery in receiver.deliveries:
                    for event in delivery.events:
                        if event["id"] in found:
                            found[event["id"]].append(delivery.at)
            return found

        count = int(seconds * RATE)
        start = time.monotonic()
        for seq in range(count):
            time.sleep(max(0.0, start + seq / RATE - time.monotonic()))
            with transaction.atomic():
                entry = audit_log_record(
                    organization=org,
                    event="RESOURCE_CREATED",
                    actor=None,
                    ip=None,
                    details={"resource": f"vm-{seq}"},
                )
            committed[entry_json(entry)["id"]] = time.monotonic()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(
            len(times) < DESTINATIONS for times in arrivals().values()
        ):
            time.sleep(0.1)
        received = arrivals()
        deliverer.stop.set()
        runner.join(60)
        AuditLogStream.objects.filter(organization=org).delete()  # the receiver is gone
        connections.close_all()
        # The first receipt of each entry at each destination (a retry may repeat one).
        latencies = [
            (at - committed[i]) * 1000
            for i, times in received.items()
            for at in times[:DESTINATIONS]
        ]
        missing = sum(max(0, DESTINATIONS - len(times)) for times in received.values())
        return {
            "destinations": DESTINATIONS,
            "throughput_events": events,
            "throughput_delivered": delivered,
            "throughput_seconds": round(throughput_seconds, 2),
            "throughput_events_per_s": round(delivered / throughput_seconds),
            "latency_entries": count,
            "latency_receipts": len(latencies),
            "latency_missing": missing,
            "latency_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
            "latency_p95_ms": round(_percentile(latencies, 0.95), 1) if latencies else None,
            "batch": settings.AUDIT_LOG_STREAM_BATCH,
            "batch_wait_ms": settings.AUDIT_LOG_STREAM_BATCH_WAIT_MS,
            "forged": receiver.forged,
        }


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), float(sys.argv[2]))))
