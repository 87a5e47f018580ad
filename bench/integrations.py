"""Integration figures of the benchmark, run against the scratch database
(``python -m bench.integrations EVENTS SECONDS``, started by bench/__main__.py with
DATABASE_URL set). It serves the app with uvicorn (BENCH_WORKERS workers) and measures:

* ingestion through ``recordAuditEvents``: EVENTS events in batches of 500, by one client
  and by four concurrent clients (HTTP keep-alive), in events per second;
* live delivery latency: 50 WebSocket subscribers (graphql-transport-ws) follow the
  organization while this process records 20 events per second for SECONDS seconds, each
  in its own transaction; the latency of a delivery is the time from the writer's COMMIT
  returning to the subscriber having read and decoded the message, on one clock.

Prints one JSON object.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BATCH = 500
SUBSCRIBERS = 50
RATE = 20  # events per second during the latency run

RECORD = "mutation($e: [AuditEventInput!]!) { recordAuditEvents(events: $e) { events { id } } }"
FOLLOW = "subscription { auditLogCreated { cursor node { id details } } }"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _ingest(port: int, token: str, batches: list[list[dict[str, Any]]]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        for batch in batches:
            body = json.dumps({"query": RECORD, "variables": {"e": batch}})
            connection.request("POST", "/graphql/", body=body, headers=headers)
            reply = json.loads(connection.getresponse().read())
            if "errors" in reply or len(reply["data"]["recordAuditEvents"]["events"]) != len(batch):
                raise SystemExit(f"ingestion failed: {str(reply)[:300]}")
    finally:
        connection.close()


def _details(event: str, n: int) -> dict[str, Any]:
    """Details of the shape ``event`` declares (audit/events.py), and a key of our own."""
    if event == "USER_LOGIN":
        return {"method": "password", "n": n}
    if event == "SESSION_STARTED":
        return {"session_id": f"sess_{n}", "n": n}
    details: dict[str, Any] = {"resource": f"vm-{n % 997}", "n": n}
    if event == "RESOURCE_UPDATED":
        details["changes"] = {"size": {"from": "small", "to": "large"}}
    return details


def _batches(prefix: str, events: int, emails: list[str]) -> list[list[dict[str, Any]]]:
    kinds = ["RESOURCE_CREATED", "RESOURCE_UPDATED", "USER_LOGIN", "SESSION_STARTED"]
    return [
        [
            {
                "idempotencyKey": f"{prefix}-{n}",
                "event": kinds[n % len(kinds)],
                "userEmail": emails[n % len(emails)],
                "ip": f"203.0.113.{n % 250}",
                "details": _details(kinds[n % len(kinds)], n),
            }
            for n in range(start, min(start + BATCH, events))
        ]
        for start in range(0, events, BATCH)
    ]


def ingestion(port: int, token: str, events: int, emails: list[str]) -> dict[str, Any]:
    one = _batches("one", events, emails)
    started = time.perf_counter()
    _ingest(port, token, one)
    one_client = events / (time.perf_counter() - started)

    four = _batches("four", events, emails)
    shares = [four[i::4] for i in range(4)]
    threads = [threading.Thread(target=_ingest, args=(port, token, share)) for share in shares]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    four_clients = events / (time.perf_counter() - started)

    # A retry of a whole batch: nothing new is written, the same ids come back.
    again = one[:10]
    started = time.perf_counter()
    _ingest(port, token, again)
    retry = sum(len(batch) for batch in again) / (time.perf_counter() - started)
    return {
        "ingest_events": events,
        "ingest_batch": BATCH,
        "ingest_events_per_s_1_client": round(one_client),
        "ingest_events_per_s_4_clients": round(four_clients),
        "ingest_retry_events_per_s": round(retry),
    }


async def _follow(
    port: int, token: str, ready: asyncio.Event, count: list[int], receipts: list[tuple[int, float]]
) -> None:
    import websockets

    async with websockets.connect(
        f"ws://127.0.0.1:{port}/graphql/",
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        max_size=None,
    ) as socket:
        await socket.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        )
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        await socket.send(
            json.dumps({"id": "1", "type": "subscribe", "payload": {"query": FOLLOW}})
        )
        count[0] += 1
        if count[0] == SUBSCRIBERS:
            ready.set()
        async for raw in socket:
            message = json.loads(raw)
            if message["type"] == "ping":
                await socket.send(json.dumps({"type": "pong"}))
            elif message["type"] == "next":
                payload = message["payload"]
                if "errors" in payload:
                    raise SystemExit(f"stream error: {payload['errors']}")
                seq = payload["data"]["auditLogCreated"]["node"]["details"].get("seq")
                if seq is not None:
                    receipts.append((seq, time.monotonic()))
            else:
                return


def latency(port: int, token: str, organization: Any, seconds: float) -> dict[str, Any]:
    from django.db import connections, transaction

    from audit.events import AuditEventType as E
    from audit.services import audit_log_record

    receipts: list[tuple[int, float]] = []
    loop = asyncio.new_event_loop()
    ready = asyncio.Event()
    count = [0]

    async def run_all() -> None:
        await asyncio.gather(
            *(_follow(port, token, ready, count, receipts) for _ in range(SUBSCRIBERS))
        )

    everyone = loop.create_task(run_all())

    def run_clients() -> None:
        try:
            loop.run_until_complete(everyone)
        except asyncio.CancelledError:
            pass  # stopped once measured
        finally:
            # The connections' own tasks (keepalive pings) end with them.
            leftover = asyncio.all_tasks(loop)
            for task in leftover:
                task.cancel()
            if leftover:  # gather() of nothing would look for this thread's loop
                loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
            loop.close()

    clients = threading.Thread(target=run_clients, daemon=True)
    clients.start()
    deadline = time.monotonic() + 30
    while count[0] < SUBSCRIBERS and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # let every subscription reach the live part
    committed: dict[int, float] = {}
    total = int(seconds * RATE)
    start = time.monotonic()
    for seq in range(total):
        time.sleep(max(0.0, start + seq / RATE - time.monotonic()))
        with transaction.atomic():
            audit_log_record(
                organization=organization,
                event=E.RESOURCE_UPDATED,
                actor=None,
                ip=None,
                details={"seq": seq},
            )
        committed[seq] = time.monotonic()
    connections.close_all()
    expected = total * SUBSCRIBERS
    deadline = time.monotonic() + 10
    while len(receipts) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    loop.call_soon_threadsafe(everyone.cancel)  # the clients close their sockets
    clients.join(10)
    delays = [(t - committed[seq]) * 1000 for seq, t in list(receipts) if seq in committed]
    if not delays:
        raise SystemExit("no live delivery was received; see the errors above")
    return {
        "stream_subscribers": SUBSCRIBERS,
        "stream_events": total,
        "stream_rate_per_s": RATE,
        "stream_deliveries": len(delays),
        "stream_expected": expected,
        "stream_p50_ms": round(statistics.median(delays), 1),
        "stream_p95_ms": round(_percentile(delays, 95), 1),
        "stream_p99_ms": round(_percentile(delays, 99), 1),
        "stream_max_ms": round(max(delays), 1),
    }


def main(events: int, seconds: float) -> dict[str, Any]:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
    django.setup()
    from core.database import close_all_connections
    from core.models import ApiTokenScope
    from core.services import api_token_create, organization_create, user_create

    org = organization_create(slug="integrations", name="Integrations benchmark", plan="paid")
    admin = user_create(organization=org, email="admin@integrations.test", is_admin=True)
    emails = [
        user_create(organization=org, email=f"member{n}@integrations.test").email for n in range(20)
    ]
    writer = api_token_create(user=admin, scopes=(ApiTokenScope.AUDIT_WRITE,))[1]
    reader = api_token_create(user=admin)[1]
    close_all_connections()

    from bench.__main__ import _free_port, _wait_for

    port = _free_port()
    workers = os.environ.get("BENCH_WORKERS", "2")
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port), "--workers", workers],
        cwd=ROOT,
        env={**os.environ, "LOG_LEVEL": "warning"},
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_for(port, server)
        figures = {"workers": int(workers)}
        figures |= ingestion(port, writer, events, emails)
        figures |= latency(port, reader, org, seconds)
    finally:
        server.terminate()
        server.wait(60)
    return figures


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), float(sys.argv[2]))))
