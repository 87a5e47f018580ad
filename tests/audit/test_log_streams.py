"""Log streams against a real HTTPS receiver on 127.0.0.1 (tests/receiver.py): every
matching entry arrives at least once, in stream order, signed, through HTTP 500s,
timeouts, resets, a receiver that stops for seconds and deliverers that are killed and
restarted; one deliverer per stream at a time across processes; pausing and resuming;
what a destination may be."""

from __future__ import annotations

import base64
import ipaddress
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import log_streams
from audit.details import details_problems
from audit.events import AuditEventType as E
from audit.filters import AuditLogFilter
from audit.models import AuditLog
from audit.services import audit_log_record
from core.models import AuditLogStream, Organization
from tests.receiver import Receiver, running_receiver
from tests.support import (
    ROOT,
    TRANSACTIONAL,
    database_url,
    free_port,
    start_serve,
    valid_details,
)

pytestmark = TRANSACTIONAL


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    with (
        running_receiver(tmp_path) as running,
        override_settings(
            AUDIT_LOG_STREAM_ALLOWED_NETWORKS=[ipaddress.ip_network("127.0.0.1/32")],
            AUDIT_LOG_STREAM_CA_FILE=str(running.cert),
            AUDIT_LOG_STREAM_TIMEOUT_SECONDS=1,
            AUDIT_LOG_STREAM_RETRY_MAX_SECONDS=1,
            AUDIT_LOG_STREAM_BATCH_WAIT_MS=0,
        ),
    ):
        yield running


def _stream(org: Organization, receiver: Receiver, **options: Any) -> AuditLogStream:
    stream, secret = log_streams.audit_log_stream_create(
        organization=org, name=options.pop("name", "siem"), url=receiver.url, **options
    )
    receiver.secrets[str(stream.pk)] = secret
    return stream


def _record(org: Organization, event: str = E.RESOURCE_CREATED, **details: Any) -> AuditLog:
    with transaction.atomic():
        return audit_log_record(
            organization=org, event=event, details=valid_details(event, **details)
        )


def _ids(entries: list[AuditLog]) -> list[str]:
    return [log_streams.entry_json(e)["id"] for e in entries]


def _deliverer_env(receiver: Receiver, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "SECRET_KEY": "test-only-not-secret",
        "DEBUG": "0",
        "DATABASE_URL": database_url(connection.settings_dict),
        "DATABASE_OWNER_URL": "",
        "AUDIT_LOG_STREAM_ALLOWED_NETWORKS": "127.0.0.1/32",
        "AUDIT_LOG_STREAM_CA_FILE": str(receiver.cert),
        "AUDIT_LOG_STREAM_TIMEOUT_SECONDS": "1",
        "AUDIT_LOG_STREAM_RETRY_MAX_SECONDS": "1",
        **extra,
    }


def _deliverer(receiver: Receiver) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "manage.py", "deliver_audit_streams"],
        cwd=ROOT,
        env=_deliverer_env(receiver),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _server(receiver: Receiver, port: int) -> subprocess.Popen[str]:
    env = _deliverer_env(receiver)
    return start_serve(port, {k: env[k] for k in env if k.startswith(("AUDIT_", "DATABASE"))})


def _until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_every_entry_arrives_signed_and_in_order_through_failures_and_restarts(
    receiver: Receiver, make_org: Callable[..., Organization]
) -> None:
    org, other = make_org("paid"), make_org("paid")
    everything = _stream(org, receiver, name="all")
    logins = _stream(
        org, receiver, name="logins", filters=AuditLogFilter.build(event_type="USER_LOGIN")
    )
    elsewhere = _stream(other, receiver, name="other")
    receiver.delay = 0.02
    # A server process (delivering in a thread) and a worker, at once.
    port = free_port()
    deliverers: list[subprocess.Popen[Any]] = [_server(receiver, port), _deliverer(receiver)]
    stop = threading.Event()
    written: list[int] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        from django.db import connections

        try:
            i = 0
            while not stop.is_set():
                event = [E.RESOURCE_CREATED, E.USER_LOGIN, E.SESSION_STARTED][(n + i) % 3]
                entry = _record(org, event, writer=n, i=i)
                with lock:
                    written.append(entry.pk)
                i += 1
                time.sleep(0.01)
        finally:
            connections.close_all()

    writers = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for thread in writers:
        thread.start()
    try:
        time.sleep(1.5)
        for mode in ("500", "hang", "reset"):
            receiver.mode = mode
            time.sleep(2.5)
        receiver.mode = "ok"
        receiver.stop()  # the receiver is down for a few seconds
        deliverers[0].kill()  # and the server dies meanwhile
        deliverers[0].wait()
        time.sleep(3)
        receiver.start()
        deliverers[0] = _server(receiver, port)
        time.sleep(2)
    finally:
        stop.set()
        for thread in writers:
            thread.join()
    _record(other, E.ROLE_CREATED)
    try:
        entries = list(AuditLog.objects.filter(organization=org, pk__in=written))
        assert len(entries) > 100
        ordered = sorted(entries, key=lambda e: (e.stream_txid, e.pk))
        expected = {
            everything.pk: _ids(ordered),
            logins.pk: _ids([e for e in ordered if e.event == E.USER_LOGIN]),
        }

        def arrived(stream: AuditLogStream) -> list[str]:
            # The first arrival of each entry, in arrival order.
            return list(dict.fromkeys(e["id"] for e in receiver.events(stream.pk)))

        _until(lambda: set(expected[everything.pk]) <= set(arrived(everything)), 90)
        _until(lambda: set(expected[logins.pk]) <= set(arrived(logins)), 30)
        _until(lambda: len(arrived(elsewhere)) >= 1, 30)
    finally:
        for process in deliverers:
            process.terminate()
            process.wait(timeout=30)
    for stream in (everything, logins):
        got = [i for i in arrived(stream) if i in set(expected[stream.pk])]
        assert got == expected[stream.pk]  # nothing missing, in stream order
    # The filtered stream got only its events; the other organization's only its own.
    assert {e["event"] for e in receiver.events(logins.pk)} == {"USER_LOGIN"}
    assert set(arrived(elsewhere)).isdisjoint(expected[everything.pk])
    assert receiver.forged == 0  # every request's signature verified
    assert receiver.max_in_flight == 1  # never two deliveries of one stream at once
    # Every kind of failure happened, and was survived.
    assert {"500", "hang", "reset"} <= set(receiver.answered), receiver.answered
    status = AuditLogStream.objects.get(pk=everything.pk)
    assert status.delivered >= len(expected[everything.pk]) and status.failures == 0
    assert status.last_error_at is not None


def test_a_failing_stream_backs_off_pauses_after_the_configured_age_and_resumes(
    receiver: Receiver, paid_org: Organization
) -> None:
    stream = _stream(paid_org, receiver)
    first = _record(paid_org)
    receiver.mode = "500"
    holder = log_streams.new_holder()
    outcome = log_streams.deliver_stream(stream.pk, holder)
    assert outcome.failed == "HTTP 500: down for maintenance"
    stream.refresh_from_db()
    assert stream.failures == 1 and stream.next_attempt_at is not None
    assert stream.next_attempt_at > timezone.now()  # backing off: not due yet
    assert log_streams.deliver_stream(stream.pk, holder).busy
    # Failing for longer than the pause age: the next failure pauses it, and says so.
    AuditLogStream.objects.filter(pk=stream.pk).update(
        failing_since=timezone.now() - timedelta(hours=73), next_attempt_at=None
    )
    assert log_streams.deliver_stream(stream.pk, holder).failed
    stream.refresh_from_db()
    assert stream.paused_at is not None and "HTTP 500" in stream.paused_reason
    paused = AuditLog.objects.filter(organization=paid_org, event=E.AUDIT_LOG_STREAM_PAUSED).get()
    assert (
        paused.details["stream"]["id"] == stream.pk
        and details_problems(paused.event, paused.details) == []
    )
    second = _record(paid_org)
    assert log_streams.deliver_stream(stream.pk, holder).busy  # paused: nothing is sent
    receiver.mode = "ok"
    log_streams.audit_log_stream_update(stream=stream, enabled=True)
    assert log_streams.deliver_pending(holder) == 5
    # Resumed from where it stopped: the stream's own entries too (created, paused, enabled).
    own = [
        AuditLog.objects.get(organization=paid_org, event=event)
        for event in (E.AUDIT_LOG_STREAM_CREATED, E.AUDIT_LOG_STREAM_UPDATED)
    ]
    assert [e["id"] for e in receiver.events(stream.pk)] == _ids(
        [own[0], first, paused, second, own[1]]
    )
    stream.refresh_from_db()
    assert stream.failures == 0 and stream.paused_at is None and stream.last_delivered_at


@pytest.mark.parametrize("fmt", ["JSON", "JSONL", "SPLUNK_HEC"])
def test_each_format_carries_the_entries_as_the_api_reads_them(
    receiver: Receiver, paid_org: Organization, fmt: str
) -> None:
    stream = _stream(paid_org, receiver, format=fmt)
    entries = [_record(paid_org), _record(paid_org, E.USER_LOGIN)]
    assert log_streams.deliver_pending(log_streams.new_holder()) == 3
    (delivery,) = receiver.deliveries
    created = AuditLog.objects.get(event=E.AUDIT_LOG_STREAM_CREATED)
    assert [e["id"] for e in delivery.events] == _ids([created, *entries])
    delivery.events.pop(0)
    assert delivery.events[0]["details"] == entries[0].details
    assert delivery.events[0]["event"] == "RESOURCE_CREATED"
    assert delivery.headers["Content-Type"].startswith(
        {
            "JSON": "application/json",
            "JSONL": "application/x-ndjson",
            "SPLUNK_HEC": "application/json",
        }[fmt]
    )
    assert AuditLogStream.objects.get(pk=stream.pk).last_delivered_entry == entries[-1].pk


def test_redirects_are_not_followed(receiver: Receiver, paid_org: Organization) -> None:
    stream = _stream(paid_org, receiver)
    receiver.mode = "302"
    _record(paid_org)
    outcome = log_streams.deliver_stream(stream.pk, log_streams.new_holder())
    assert outcome.failed == "HTTP 302: redirects are not followed"
    assert receiver.deliveries == []


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://siem.example.com/in", "must start with https://"),
        ("https://user:pw@siem.example.com/in", "must not hold credentials"),
        ("https:///in", "must name a host"),
        ("ftp://siem.example.com/", "must start with https://"),
        ("https://siem.example.com/a b", "must not contain spaces"),
        ("https://siem.example.com:99999/", "not valid"),
    ],
)
def test_destinations_must_be_https_urls_without_credentials(url: str, problem: str) -> None:
    with pytest.raises(log_streams.DestinationRefused, match=problem):
        log_streams.checked_url(url)


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "10.1.2.3", "192.168.0.1", "169.254.169.254", "[::1]",
     "[::ffff:127.0.0.1]", "[fe80::1]", "0.0.0.0", "224.0.0.1"],  # noqa: S104 - refused, never bound
)  # fmt: skip
def test_internal_addresses_are_refused_unless_allowed(host: str, paid_org: Organization) -> None:
    with override_settings(AUDIT_LOG_STREAM_ALLOWED_NETWORKS=[], AUDIT_LOG_STREAM_BATCH_WAIT_MS=0):
        stream, _ = log_streams.audit_log_stream_create(
            organization=paid_org, name="internal", url=f"https://{host}:8443/in"
        )
        _record(paid_org)
        outcome = log_streams.deliver_stream(stream.pk, log_streams.new_holder())
    assert outcome.failed is not None and "internal address" in outcome.failed
    assert log_streams.audit_log_stream_test(stream=stream).error == outcome.failed


def test_the_test_mutation_sends_a_signed_request_without_entries(
    receiver: Receiver, paid_org: Organization
) -> None:
    stream = _stream(paid_org, receiver)
    assert log_streams.audit_log_stream_test(stream=stream) == log_streams.TestOutcome(
        True, 200, None
    )
    (delivery,) = receiver.deliveries
    assert delivery.events == [] and receiver.forged == 0
    receiver.secrets[str(stream.pk)] = "whsec_wrong"
    outcome = log_streams.audit_log_stream_test(stream=stream)
    assert (outcome.ok, outcome.error) == (False, "HTTP 401: bad signature")


def test_changes_are_recorded_and_a_rotated_secret_replaces_the_old_one(
    receiver: Receiver, paid_org: Organization
) -> None:
    stream = _stream(paid_org, receiver)
    old = receiver.secrets[str(stream.pk)]
    stream, secret = log_streams.audit_log_stream_update(
        stream=stream, name="renamed", rotate_secret=True
    )
    assert secret is not None and secret != old and secret.startswith("whsec_")
    assert old not in str(AuditLogStream.objects.filter(pk=stream.pk).values().get())
    log_streams.audit_log_stream_delete(stream=stream)
    entries = list(
        AuditLog.objects.filter(
            organization=paid_org, event__startswith="AUDIT_LOG_STREAM"
        ).order_by("id")
    )
    assert [e.event for e in entries] == [
        E.AUDIT_LOG_STREAM_CREATED,
        E.AUDIT_LOG_STREAM_UPDATED,
        E.AUDIT_LOG_STREAM_DELETED,
    ]
    assert entries[1].details["changes"] == {
        "name": {"from": "siem", "to": "renamed"},
        "secret": {"from": "(hidden)", "to": "(rotated)"},
    }
    for entry in entries:
        assert details_problems(entry.event, entry.details) == []
        assert old not in str(entry.details) and secret not in str(entry.details)


def test_a_credential_header_is_sent_sealed_at_rest_and_never_shown(
    receiver: Receiver, paid_org: Organization
) -> None:
    value = "Splunk 0b1f2c3d-hec-token"
    stream = _stream(paid_org, receiver, credential=("Authorization", value))
    entry = _record(paid_org)
    assert log_streams.deliver_pending(log_streams.new_holder()) == 2
    assert receiver.deliveries[-1].headers["Authorization"] == value
    assert receiver.deliveries[-1].events[-1]["id"] == _ids([entry])[0]
    with connection.cursor() as cursor:
        cursor.execute("SELECT audit_log_stream::text FROM audit_log_stream")
        (row,) = cursor.fetchall()
        cursor.execute("SELECT string_agg(details::text, ' ') FROM audit_log")
        (logged,) = cursor.fetchone()
    assert value not in row[0] and "0b1f2c3d" not in row[0] and "0b1f2c3d" not in logged
    # Another server key cannot read it: the delivery fails, saying what to do.
    with override_settings(SECRET_KEY="another-key-entirely"):
        outcome = log_streams.audit_log_stream_test(stream=stream)
    assert outcome.error == (
        "the stored credential cannot be read with this SECRET_KEY: set the stream's "
        "credential again"
    )
    stream, _ = log_streams.audit_log_stream_update(stream=stream, credential=None)
    assert (stream.credential_header, stream.credential_sealed) == ("", "")
    changed = AuditLog.objects.filter(event=E.AUDIT_LOG_STREAM_UPDATED).get()
    assert changed.details["changes"] == {"credential": {"from": "Authorization", "to": None}}


@pytest.mark.parametrize(
    ("header", "value", "problem"),
    [
        ("Content-Type", "x", "cannot carry a credential"),
        ("X-Audit-Signature", "x", "cannot carry a credential"),
        ("Bad Header", "x", "letters, digits"),
        ("Authorization", "", "1 to 4096"),
        ("Authorization", "a\r\nX-Injected: 1", "control characters"),
        ("Authorization", "snowman \u2603", "ASCII or Latin-1"),
    ],
)
def test_credential_headers_are_checked(
    paid_org: Organization, header: str, value: str, problem: str
) -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match=problem):
        log_streams.audit_log_stream_create(
            organization=paid_org,
            name="c",
            url="https://siem.example.com/",
            credential=(header, value),
        )


@settings(max_examples=50, deadline=None)
@given(st.text(st.characters(codec="latin-1"), max_size=300), st.integers(0, 400))
def test_sealing_round_trips_and_refuses_any_change(value: str, flip: int) -> None:
    sealed = log_streams.seal(value)
    assert log_streams.unseal(sealed) == value
    assert log_streams.seal(value) != sealed  # a new nonce each time
    raw = bytearray(base64.b64decode(sealed))
    raw[flip % len(raw)] ^= 1
    with pytest.raises(ValueError, match="cannot be read"):
        log_streams.unseal(base64.b64encode(bytes(raw)).decode())


def test_a_hanging_destination_does_not_hold_up_the_others(
    receiver: Receiver, make_org: Callable[..., Organization]
) -> None:
    """Each stream is delivered on its own: while one destination keeps every request
    waiting until the timeout, another organization's stream is delivered as usual."""
    slow_org, org = make_org("paid"), make_org("paid")
    slow = _stream(slow_org, receiver, name="slow")
    fast = _stream(org, receiver, name="fast")
    receiver.hanging.add(str(slow.pk))
    receiver.hang_seconds = 6
    deliverer = log_streams.Deliverer(log_streams.new_holder(), threads=4, poll=0.2)
    runner = threading.Thread(target=deliverer.run)
    with override_settings(AUDIT_LOG_STREAM_TIMEOUT_SECONDS=5):
        runner.start()
        try:
            _record(slow_org)
            time.sleep(0.5)  # the slow stream's request is waiting now
            entry = _record(org)
            started = time.monotonic()
            _until(lambda: _ids([entry])[0] in [e["id"] for e in receiver.events(fast.pk)], 10)
            waited = time.monotonic() - started
        finally:
            deliverer.stop.set()
            runner.join(30)
    assert waited < 2, f"the fast stream waited {waited:.1f} s behind the slow one"
