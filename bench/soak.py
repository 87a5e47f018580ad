"""`make soak` (``python -m bench.soak``): load and a database restart at once, then proof
that nothing was lost, duplicated or leaked.

For SOAK_SECONDS (default 120), against ``manage.py serve`` with 2 workers on 127.0.0.1:

* SOAK_READERS (8) clients page through ``auditLogs`` with ``totalCount``;
* SOAK_WRITERS (4) clients send ``recordAuditEvents`` batches of 50 with idempotency keys,
  and retry a batch, unchanged, after any error until it is acknowledged;
* SOAK_SUBSCRIBERS (20) WebSocket clients follow ``auditLogCreated`` (half of them only the
  event types the writers send least), and after any error or disconnection resume with
  the cursor of the last entry they received;
* halfway, PostgreSQL is restarted: fast shutdown, SOAK_DOWN_SECONDS (3) down, start.

At the end it checks, prints and exits non-zero on any failure:

* every event a writer saw acknowledged is stored exactly once, and no key twice;
* every subscriber received every stored event of its filter exactly once;
* during the outage, clients got coded errors (SERVICE_UNAVAILABLE, or TIMEOUT), never a
  500 or an uncoded error, and no call hung past the client timeout (15 s);
* service recovered by itself within 10 s of the database being back;
* each server worker's memory at the end is within 20% of its level after warm-up.

The restart needs the embedded PostgreSQL (no DATABASE_URL), or SOAK_RESTART_COMMAND: a
shell command that restarts the server named by DATABASE_URL. The data goes to its own
database, ``<name>_soak``, created afresh each run.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
CLIENT_TIMEOUT = 15.0
BATCH = 50
RARE_EVENTS = ["CREDENTIAL_DELETED", "ROLE_DELETED"]
EVENTS = ["RESOURCE_UPDATED", "USER_LOGIN", "SESSION_STARTED", *RARE_EVENTS]
# Each event type's declared details (audit/events.py); the writers add keys of their own.
SHAPES: dict[str, dict[str, Any]] = {
    "RESOURCE_UPDATED": {"resource": "vm-1", "changes": {"size": {"from": "s", "to": "m"}}},
    "USER_LOGIN": {"method": "password"},
    "SESSION_STARTED": {"session_id": "sess_1"},
    "CREDENTIAL_DELETED": {"credential": "cred_1"},
    "ROLE_DELETED": {"role": {"name": "Auditor"}},
}
PAGE = """query Page($after: String) { auditLogs(first: 50, after: $after) {
  totalCount pageInfo { hasNextPage endCursor } edges { node { id event time } } } }"""
RECORD = "mutation($e: [AuditEventInput!]!) { recordAuditEvents(events: $e) { events { id } } }"
MARKER = RECORD.replace("{ id }", "{ id cursor }")
FOLLOW = """subscription Follow($after: String, $filter: AuditLogFilter) {
  auditLogCreated(after: $after, filter: $filter) { cursor node { id event } } }"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Outcomes:
    """What the clients saw, shared by every thread (guarded by ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    slowest: float = 0.0
    acknowledged: dict[str, str] = field(default_factory=dict)  # key -> entry id
    last_ok: float = 0.0  # when a reader last got a good page

    def note(self, seconds: float, codes: list[str], problem: str | None = None) -> None:
        with self.lock:
            self.calls += 1
            self.slowest = max(self.slowest, seconds)
            self.codes.update(codes)
            if problem is not None and len(self.violations) < 50:
                self.violations.append(problem)


class Client:
    """One keep-alive HTTP connection to the server, reopened after any failure."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token
        self.connection: http.client.HTTPConnection | None = None

    def post(self, query: str, variables: dict[str, Any], outcomes: Outcomes) -> Any:
        body = json.dumps({"query": query, "variables": variables})
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        started = time.monotonic()
        try:
            if self.connection is None:
                self.connection = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=CLIENT_TIMEOUT
                )
            self.connection.request("POST", "/graphql/", body=body, headers=headers)
            response = self.connection.getresponse()
            status, text = response.status, response.read().decode()
        except (OSError, http.client.HTTPException) as error:
            if self.connection is not None:
                self.connection.close()
            self.connection = None
            seconds = time.monotonic() - started
            problem = (
                f"no answer within {seconds:.1f}s: {error!r}" if seconds >= CLIENT_TIMEOUT else None
            )
            outcomes.note(seconds, ["(connection error)"], problem)
            return None
        seconds = time.monotonic() - started
        try:
            reply = json.loads(text)
        except ValueError:
            outcomes.note(seconds, [f"HTTP {status}"], f"HTTP {status}, not JSON: {text[:200]}")
            return None
        errors = reply.get("errors") or []
        codes = [(e.get("extensions") or {}).get("code") or "(none)" for e in errors]
        problem = None
        if status >= 500 and status != 503:
            problem = f"HTTP {status}: {text[:200]}"
        elif "(none)" in codes or "INTERNAL_SERVER_ERROR" in codes:
            problem = f"uncoded or internal error: {text[:200]}"
        outcomes.note(seconds, codes, problem)
        return None if errors else reply["data"]


def reader(port: int, token: str, outcomes: Outcomes, stop: threading.Event) -> None:
    client, cursor = Client(port, token), None
    while not stop.is_set():
        data = client.post(PAGE, {"after": cursor}, outcomes)
        if data is None:
            time.sleep(0.2)
            continue
        with outcomes.lock:
            outcomes.last_ok = time.monotonic()
        info = data["auditLogs"]["pageInfo"]
        cursor = info["endCursor"] if info["hasNextPage"] else None


def writer(
    n: int, port: int, token: str, outcomes: Outcomes, stop: threading.Event, rng: random.Random
) -> None:
    client, batch_number = Client(port, token), 0
    while not stop.is_set():
        events = [rng.choice(EVENTS) for _ in range(BATCH)]
        batch = [
            {
                "idempotencyKey": f"w{n}-{batch_number}-{i}",
                "event": event,
                "userEmail": f"member{rng.randrange(20)}@soak.test",
                "details": {**SHAPES[event], "writer": n, "batch": batch_number},
            }
            for i, event in enumerate(events)
        ]
        while True:  # the same batch until it is acknowledged
            data = client.post(RECORD, {"e": batch}, outcomes)
            if data is not None:
                ids = [e["id"] for e in data["recordAuditEvents"]["events"]]
                with outcomes.lock:
                    outcomes.acknowledged.update(
                        zip((str(e["idempotencyKey"]) for e in batch), ids, strict=True)
                    )
                break
            time.sleep(0.3)
        batch_number += 1


@dataclass
class Subscriber:
    rare_only: bool
    cursor: str
    received: list[str] = field(default_factory=list)
    reconnects: int = 0
    error_codes: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)

    def error(self, code: str, detail: Any) -> None:
        self.error_codes[code] += 1
        if len(self.samples) < 3:
            self.samples.append(f"{code}: {str(detail)[:300]}")


async def follow(port: int, token: str, subscriber: Subscriber, stop: asyncio.Event) -> None:
    import websockets

    variables: dict[str, Any] = (
        {"filter": {"eventTypes": RARE_EVENTS}} if subscriber.rare_only else {}
    )
    while not stop.is_set():
        try:
            async with websockets.connect(
                f"ws://127.0.0.1:{port}/graphql/",
                subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                open_timeout=CLIENT_TIMEOUT,
            ) as socket:
                init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
                await socket.send(json.dumps(init))
                await socket.recv()
                payload = {"query": FOLLOW, "variables": {**variables, "after": subscriber.cursor}}
                await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
                while not stop.is_set():
                    try:
                        raw = await asyncio.wait_for(socket.recv(), timeout=1.0)
                    except TimeoutError:
                        continue
                    message = json.loads(raw)
                    if message["type"] == "ping":
                        await socket.send(json.dumps({"type": "pong"}))
                    elif message["type"] == "next" and message["payload"].get("errors"):
                        for error in message["payload"]["errors"]:
                            code = (error.get("extensions") or {}).get("code") or "(none)"
                            subscriber.error(code, error)
                        break
                    elif message["type"] == "next":
                        edge = message["payload"]["data"]["auditLogCreated"]
                        subscriber.received.append(edge["node"]["id"])
                        subscriber.cursor = edge["cursor"]
                    elif message["type"] == "error":
                        for error in message["payload"]:
                            code = (error.get("extensions") or {}).get("code") or "(none)"
                            subscriber.error(code, error)
                        break
                    else:
                        subscriber.error(f"({message['type']})", message)
                        break
        except Exception as error:
            subscriber.error(type(error).__name__, error)
        if not stop.is_set():
            subscriber.reconnects += 1
            await asyncio.sleep(0.5)


def worker_rss(server: subprocess.Popen[bytes]) -> list[float]:
    import psutil

    children = psutil.Process(server.pid).children(recursive=True)
    workers = [p for p in children if "python" in (p.name() or "")] or children
    return sorted(round(p.memory_info().rss / 2**20, 1) for p in workers)


def main() -> int:
    seconds = float(os.environ.get("SOAK_SECONDS", "120"))
    readers = int(os.environ.get("SOAK_READERS", "8"))
    writers = int(os.environ.get("SOAK_WRITERS", "4"))
    subscribers = int(os.environ.get("SOAK_SUBSCRIBERS", "20"))
    down_seconds = float(os.environ.get("SOAK_DOWN_SECONDS", "3"))
    restart_command = os.environ.get("SOAK_RESTART_COMMAND", "").strip()

    sys.path.insert(0, str(ROOT))
    from bench.__main__ import (
        _ensure_database,
        _free_port,
        _wait_for,
        _with_name,
        bench_database_urls,
    )

    bench_url, _, embedded = bench_database_urls()
    if embedded is None and not restart_command:
        log("make soak needs the embedded PostgreSQL (no DATABASE_URL) or SOAK_RESTART_COMMAND")
        return 2
    name = urlsplit(bench_url).path.lstrip("/").removesuffix("_bench") + "_soak"
    soak_url = _with_name(bench_url, name)
    _ensure_database(bench_url, name, fresh=True)
    os.environ.update(
        {
            "DATABASE_URL": soak_url,
            "DEBUG": "0",
            "SECRET_KEY": os.environ.get("SECRET_KEY", "soak-only-not-secret"),
            "DJANGO_SETTINGS_MODULE": "core.settings",
            # A load test of faults, not of the limits: every client comes from 127.0.0.1.
            "RATE_LIMIT_PER_TOKEN": "0",
            "RATE_LIMIT_PER_ADDRESS": "0",
            "AUDIT_STREAM_MAX_PER_HOLDER": str(subscribers + 5),
            # Requests during the outage fail after this, rather than queueing.
            "DB_POOL_TIMEOUT": "3",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    from core.database import close_all_connections
    from core.models import ApiTokenScope
    from core.services import api_token_create, organization_create, user_create

    call_command("migrate", verbosity=0)
    org = organization_create(slug="soak", name="Soak", plan="paid")
    admin = user_create(organization=org, email="admin@soak.test", is_admin=True)
    for n in range(20):
        user_create(organization=org, email=f"member{n}@soak.test")
    read_token = api_token_create(user=admin, name="soak-read")[1]
    write_token = api_token_create(
        user=admin, name="soak-write", scopes=(ApiTokenScope.AUDIT_WRITE,)
    )[1]
    close_all_connections()

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port), "--workers", "2"],
        cwd=ROOT,
        env={**os.environ, "LOG_LEVEL": "error"},
        stdout=subprocess.DEVNULL,
    )
    outcomes = Outcomes()
    stop = threading.Event()
    try:
        _wait_for(port, server)
        # Subscribers start after a marker event, so they cannot miss what follows it.
        marker = Client(port, write_token).post(
            MARKER,
            {
                "e": [
                    {
                        "idempotencyKey": "marker",
                        "event": "USER_LOGIN",
                        "details": SHAPES["USER_LOGIN"],
                    }
                ]
            },
            outcomes,
        )
        if marker is None:
            log("could not record the marker event")
            return 1
        marker_id = marker["recordAuditEvents"]["events"][0]["id"]
        cursor = marker["recordAuditEvents"]["events"][0]["cursor"]

        followers = [Subscriber(rare_only=i % 2 == 1, cursor=cursor) for i in range(subscribers)]
        loop = asyncio.new_event_loop()
        stop_follow = asyncio.Event()

        async def follow_all() -> None:
            await asyncio.gather(*(follow(port, read_token, s, stop_follow) for s in followers))

        follow_thread = threading.Thread(target=lambda: loop.run_until_complete(follow_all()))
        follow_thread.start()
        rng = random.Random(7)
        threads = [
            threading.Thread(target=reader, args=(port, read_token, outcomes, stop))
            for _ in range(readers)
        ] + [
            threading.Thread(
                target=writer,
                args=(n, port, write_token, outcomes, stop, random.Random(rng.random())),
            )
            for n in range(writers)
        ]
        for thread in threads:
            thread.start()
        log(
            f"soak: {readers} readers, {writers} writers, {subscribers} subscribers for {seconds:.0f}s"
        )

        rss_series: list[tuple[float, list[float]]] = []
        sampler_stop = threading.Event()

        def sample_memory() -> None:
            started = time.monotonic()
            while not sampler_stop.wait(5.0):
                rss_series.append((round(time.monotonic() - started), worker_rss(server)))

        sampler = threading.Thread(target=sample_memory, daemon=True)
        sampler.start()
        time.sleep(min(10.0, seconds / 5))
        rss_warm = worker_rss(server)
        time.sleep(max(0.0, seconds / 2 - min(10.0, seconds / 5)))

        calls_before, codes_before = outcomes.calls, Counter(outcomes.codes)
        log(f"restarting PostgreSQL ({down_seconds:.0f}s down)")
        outage_started = time.monotonic()
        if restart_command:
            subprocess.run(["/bin/sh", "-c", restart_command], check=True)
        else:
            embedded.restart(down_seconds=down_seconds)
        back = time.monotonic()
        deadline = back + 30
        while time.monotonic() < deadline:
            with outcomes.lock:
                if outcomes.last_ok > back:
                    break
            time.sleep(0.1)
        with outcomes.lock:
            recovered_after = outcomes.last_ok - back if outcomes.last_ok > back else None
        outage_calls = outcomes.calls - calls_before
        outage_codes = outcomes.codes - codes_before
        log(
            f"database back after {back - outage_started:.1f}s; service recovered after "
            f"{recovered_after if recovered_after is None else round(recovered_after, 2)}s"
        )

        time.sleep(max(0.0, outage_started + seconds / 2 - time.monotonic()))
        stop.set()
        for thread in threads:
            thread.join(60)
        # Let the subscribers catch up with the last acknowledged batches.
        expected = _expected(org.pk, marker_id)
        catch_up_deadline = time.monotonic() + 30
        while time.monotonic() < catch_up_deadline and not all(
            len(s.received) >= len(expected[s.rare_only]) for s in followers
        ):
            time.sleep(0.2)
        loop.call_soon_threadsafe(stop_follow.set)
        follow_thread.join(30)
        rss_end = worker_rss(server)
        sampler_stop.set()
        log(f"worker RSS every 5 s: {rss_series}")
    finally:
        stop.set()
        server.terminate()
        server.wait(60)

    return _report(
        outcomes=outcomes,
        followers=followers,
        expected=_expected(org.pk, marker_id),
        stored=_stored(org.pk),
        outage_calls=outage_calls,
        outage_codes=outage_codes,
        recovered_after=recovered_after,
        rss=(rss_warm, rss_end),
        seconds=seconds,
    )


def _expected(organization_id: int, marker_id: str) -> dict[bool, list[str]]:
    """The ids each kind of subscriber must receive: every entry after the marker."""
    from strawberry import relay

    from audit.models import AuditLog

    marker_pk = int(relay.from_base64(marker_id)[1])
    marker = AuditLog.objects.get(pk=marker_pk)
    after = AuditLog.objects.filter(
        organization_id=organization_id, stream_txid__isnull=False
    ).exclude(pk=marker_pk)
    after = after.filter(stream_txid__gte=marker.stream_txid).exclude(
        stream_txid=marker.stream_txid, id__lte=marker_pk
    )
    rows = list(after.order_by("stream_txid", "id").values_list("id", "event"))
    to_id = lambda pk: relay.to_base64("AuditLog", pk)  # noqa: E731
    return {
        False: [to_id(pk) for pk, _ in rows],
        True: [to_id(pk) for pk, event in rows if event in RARE_EVENTS],
    }


def _stored(organization_id: int) -> dict[str, int]:
    from django.db.models import Count

    from audit.models import AuditLog

    rows = (
        AuditLog.objects.filter(organization_id=organization_id, idempotency_key__isnull=False)
        .values_list("idempotency_key")
        .annotate(n=Count("id"))
        .values_list("idempotency_key", "n")
    )
    return {str(key): int(n) for key, n in rows}


def _report(
    *,
    outcomes: Outcomes,
    followers: list[Subscriber],
    expected: dict[bool, list[str]],
    stored: dict[str, int],
    outage_calls: int,
    outage_codes: Counter[str],
    recovered_after: float | None,
    rss: tuple[list[float], list[float]],
    seconds: float,
) -> int:
    failures = list(outcomes.violations)
    acknowledged = outcomes.acknowledged
    missing = [k for k in acknowledged if stored.get(k, 0) != 1]
    twice = [k for k, n in stored.items() if n > 1]
    if missing:
        failures.append(
            f"{len(missing)} acknowledged events not stored exactly once, e.g. {missing[:3]}"
        )
    if twice:
        failures.append(f"{len(twice)} keys stored more than once, e.g. {twice[:3]}")
    delivered_ok = 0
    for n, s in enumerate(followers):
        want = expected[s.rare_only]
        if len(s.received) != len(set(s.received)):
            failures.append(
                f"subscriber {n} received {len(s.received) - len(set(s.received))} duplicates"
            )
        if set(s.received) != set(want):
            failures.append(
                f"subscriber {n}: {len(set(want) - set(s.received))} missed, "
                f"{len(set(s.received) - set(want))} unexpected (of {len(want)})"
            )
        else:
            delivered_ok += 1
    good_outage = {"SERVICE_UNAVAILABLE", "TIMEOUT", "(connection error)"}
    if not outage_codes or not set(outage_codes) & {"SERVICE_UNAVAILABLE"}:
        failures.append(f"no SERVICE_UNAVAILABLE seen during the outage: {dict(outage_codes)}")
    bad = {c: n for c, n in outage_codes.items() if c not in good_outage}
    if bad:
        failures.append(f"unexpected codes during the outage: {bad}")
    if recovered_after is None or recovered_after > 10:
        failures.append(
            f"service did not recover within 10 s of the database (took {recovered_after})"
        )
    if outcomes.slowest >= CLIENT_TIMEOUT:
        failures.append(
            f"a call took {outcomes.slowest:.1f}s (client timeout {CLIENT_TIMEOUT:.0f}s)"
        )
    warm, end = rss
    for before, after in zip(warm, end, strict=False):
        if after > before * 1.2:
            failures.append(f"worker memory grew from {before} MB to {after} MB (> 20%)")

    lines = [
        f"$ SOAK_SECONDS={seconds:.0f} make soak",
        f"calls: {outcomes.calls:,} HTTP (slowest {outcomes.slowest:.2f}s); during the outage "
        f"{outage_calls:,}, answered with {dict(outage_codes)}",
        f"events acknowledged: {len(acknowledged):,}; stored once each: "
        f"{len(acknowledged) - len(missing):,}; keys stored twice: {len(twice)}",
        f"subscribers: {delivered_ok}/{len(followers)} received exactly their "
        f"{len(expected[False]):,} (all) or {len(expected[True]):,} (rare types) events; "
        f"reconnects: {sum(s.reconnects for s in followers)}; their errors: "
        f"{dict(sum((s.error_codes for s in followers), Counter()))}",
        f"recovered {recovered_after if recovered_after is None else round(recovered_after, 2)}s "
        f"after the database came back",
        f"worker RSS after warm-up {warm} MB, at the end {end} MB",
        *(f"  e.g. {sample}" for sample in sorted({x for s in followers for x in s.samples})[:5]),
        "all checks passed" if not failures else "FAILED:\n  " + "\n  ".join(failures),
    ]
    print("\n".join(lines))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
