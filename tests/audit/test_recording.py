"""An action and its audit entry commit or roll back together (real transactions)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from audit.context import audit_context
from audit.events import AuditEventType
from audit.models import AuditLog
from audit.services import audit_log_record
from core.models import Organization, Role, User
from core.services import role_create, role_delete, role_update, user_delete, user_update
from tests.support import TRANSACTIONAL

pytestmark = TRANSACTIONAL

# Details of the shape ROLE_CREATED declares (audit/events.py).
ROLE = {"role": {"name": "Auditor"}}


class Boom(Exception):
    pass


def test_rolled_back_action_leaves_no_entry(paid_org: Organization, admin: User) -> None:
    before = AuditLog.objects.count()
    with pytest.raises(Boom), audit_context(actor=admin, ip="203.0.113.7"), transaction.atomic():
        role_create(organization=paid_org, name="Auditor")
        raise Boom
    assert not Role.objects.filter(name="Auditor").exists()
    assert AuditLog.objects.count() == before


def test_committed_action_has_exactly_one_entry_with_actor_ip_details(
    paid_org: Organization, admin: User
) -> None:
    with audit_context(actor=admin, ip="203.0.113.7"):
        role = role_create(organization=paid_org, name="Auditor", description="reads")
    entries = AuditLog.objects.filter(event=AuditEventType.ROLE_CREATED, organization=paid_org)
    assert entries.count() == 1
    entry = entries.get()
    assert entry.actor == admin
    assert entry.actor_email == admin.email
    assert entry.actor_name == "Ada Admin"
    assert entry.ip is not None
    assert ipaddress.ip_address(entry.ip) == ipaddress.ip_address("203.0.113.7")
    assert entry.details == {"role": {"id": role.pk, "name": "Auditor", "is_admin": False}}


def test_failed_service_validation_writes_nothing(paid_org: Organization, admin: User) -> None:
    before = AuditLog.objects.count()
    admin_role = Role.objects.get(organization=paid_org, is_admin=True)
    with pytest.raises(ValidationError):
        role_delete(role=admin_role)
    assert AuditLog.objects.count() == before


@pytest.mark.parametrize(
    ("action", "event"),
    [
        ("update", AuditEventType.USER_UPDATED),
        ("delete", AuditEventType.USER_DELETED),
        ("role_update", AuditEventType.ROLE_UPDATED),
        ("role_delete", AuditEventType.ROLE_DELETED),
    ],
)
def test_each_account_action_records_its_event(
    paid_org: Organization, admin: User, make_user: Callable[..., User], action: str, event: str
) -> None:
    member = make_user(paid_org, name="Mia")
    role = role_create(organization=paid_org, name="Temp")
    with audit_context(actor=admin, ip="2001:db8::1"):
        if action == "update":
            user_update(user=member, name="Mia Updated", is_active=False)
        elif action == "delete":
            user_delete(user=member)
        elif action == "role_update":
            role_update(role=role, name="Renamed")
        else:
            role_delete(role=role)
    entry = AuditLog.objects.filter(event=event).get()
    assert entry.actor == admin
    assert entry.ip == "2001:db8::1"
    if action == "update":
        assert entry.details["changes"] == {
            "name": {"from": "Mia", "to": "Mia Updated"},
            "is_active": {"from": True, "to": False},
        }


def test_update_without_change_records_nothing(paid_org: Organization, admin: User) -> None:
    before = AuditLog.objects.count()
    user_update(user=admin, name=admin.name)
    assert AuditLog.objects.count() == before


def test_organization_registration_and_user_creation_are_recorded(
    make_org: Callable[..., Organization], make_user: Callable[..., User]
) -> None:
    org = make_org("free", slug="newco")
    user = make_user(org, email="new@newco.test")
    registered = AuditLog.objects.get(organization=org, event=AuditEventType.USER_REGISTERED)
    assert registered.details["organization"]["slug"] == "newco"
    assert registered.actor is None  # operator command: no acting user
    created = AuditLog.objects.get(organization=org, event=AuditEventType.USER_CREATED)
    assert created.details["user"]["email"] == user.email


def test_explicit_arguments_win_over_the_context(paid_org: Organization, admin: User) -> None:
    with audit_context(actor=admin, ip="203.0.113.7"):
        entry = audit_log_record(
            organization=paid_org, event=AuditEventType.SESSION_EXPIRED, actor=None, ip=None
        )
    assert entry.actor is None and entry.actor_email is None and entry.ip is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"event": "NOT_AN_EVENT"}, "unknown event type"),
        ({"event": "USER_LOGIN", "ip": "999.1.1.1"}, "not an IP address"),
        ({"event": "USER_LOGIN", "details": ["a"]}, "JSON object"),
    ],
)
def test_record_rejects_bad_input(paid_org: Organization, kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        audit_log_record(organization=paid_org, **kwargs)


def test_login_records_user_login_and_last_login_with_client_ip(
    client: object, admin: User
) -> None:
    from django.test import Client

    assert isinstance(client, Client)
    admin.is_staff = True
    admin.save(update_fields=["is_staff"])
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": admin.email, "password": "a-long-test-password"},
        REMOTE_ADDR="198.51.100.23",
    )
    assert response.status_code == 302
    entry = AuditLog.objects.get(event=AuditEventType.USER_LOGIN)
    assert entry.actor == admin and entry.ip == "198.51.100.23"
    admin.refresh_from_db()
    assert admin.last_login is not None


def test_a_batch_racing_an_uncommitted_copy_of_itself_returns_its_entries(
    paid_org: Organization,
) -> None:
    """The second call waits for the first call's transaction on the idempotency index,
    then returns the entries the first one committed, creating nothing."""
    import threading

    from django.db import connection, transaction

    from audit.services import AuditEventSubmission, audit_log_record_batch

    batch = [
        AuditEventSubmission(idempotency_key=f"race-{n}", event="ROLE_CREATED", details=ROLE)
        for n in range(50)
    ]
    first_inserted = threading.Event()
    release_first = threading.Event()
    results: dict[str, Any] = {}

    def first() -> None:
        try:
            with transaction.atomic():
                results["first"] = audit_log_record_batch(organization=paid_org, submissions=batch)
                first_inserted.set()
                assert release_first.wait(10)
        finally:
            connection.close()

    def second() -> None:
        try:
            results["second"] = audit_log_record_batch(organization=paid_org, submissions=batch)
        finally:
            connection.close()

    a = threading.Thread(target=first)
    a.start()
    assert first_inserted.wait(10)
    b = threading.Thread(target=second)
    b.start()
    b.join(0.5)
    assert b.is_alive(), "the second call must wait for the first transaction"
    release_first.set()
    a.join(10)
    b.join(10)
    assert [r.entry_id for r in results["second"]] == [r.entry_id for r in results["first"]]
    assert all(r.created for r in results["first"]) and not any(
        r.created for r in results["second"]
    )
    assert (
        AuditLog.objects.filter(organization=paid_org, idempotency_key__startswith="race-").count()
        == 50
    )


def test_concurrent_batches_of_the_same_keys_in_any_order_do_not_deadlock(
    paid_org: Organization,
) -> None:
    """Four writers send the same 1,000 keys, each in its own order, at once: every call
    succeeds (the insert takes the keys' index entries in one order, so no two batches
    can wait on each other) and every key is recorded once."""
    import random
    import threading

    from django.db import connection

    from audit.services import AuditEventSubmission, audit_log_record_batch

    rounds = 5
    start = threading.Barrier(4)
    failures: list[BaseException] = []
    results: list[dict[str, int]] = []

    def writer(seed: int) -> None:
        try:
            for round_ in range(rounds):
                # New keys each round: only keys that are not committed yet make writers
                # wait on each other.
                order = [f"shared-{round_}-{n:04}" for n in range(1000)]
                random.Random(seed * rounds + round_).shuffle(order)
                batch = [
                    AuditEventSubmission(idempotency_key=k, event="ROLE_CREATED", details=ROLE)
                    for k in order
                ]
                start.wait(30)
                recorded = audit_log_record_batch(organization=paid_org, submissions=batch)
                results.append({k: r.entry_id for k, r in zip(order, recorded, strict=True)})
        except BaseException as error:  # the test reports what any writer met
            failures.append(error)
            start.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    assert len(results) == 4 * rounds
    for round_ in range(rounds):
        same_round = [r for r in results if next(iter(r)).startswith(f"shared-{round_}-")]
        assert len(same_round) == 4 and all(r == same_round[0] for r in same_round)
    stored = AuditLog.objects.filter(organization=paid_org, idempotency_key__startswith="shared-")
    assert stored.count() == 1000 * rounds


def test_a_batch_keeps_the_order_given_in_its_ids(paid_org: Organization) -> None:
    from audit.services import AuditEventSubmission, audit_log_record_batch

    keys = ["zeta", "alpha", "mu", "beta"]
    batch = [
        AuditEventSubmission(idempotency_key=k, event="ROLE_CREATED", details=ROLE) for k in keys
    ]
    ids = [r.entry_id for r in audit_log_record_batch(organization=paid_org, submissions=batch)]
    assert ids == sorted(ids)


def test_a_batch_chosen_as_a_deadlock_victim_is_retried_and_the_error_is_coded(
    paid_org: Organization,
) -> None:
    """A real deadlock: another transaction holds key 2 and then wants key 1, which the
    batch has taken while it waits for key 2. PostgreSQL cancels the batch (it waited
    first); the server retries it, and it returns what the other transaction recorded.
    The same error, where it cannot be retried, is TRANSACTION_CONFLICT, not the database
    being unavailable."""
    import threading
    import time

    from django.db import OperationalError, connection, transaction

    from audit.services import AuditEventSubmission, audit_log_record_batch
    from graphql_api.errors import ErrorCode, database_failure

    def batch(*keys: str) -> list[AuditEventSubmission]:
        return [
            AuditEventSubmission(idempotency_key=k, event="ROLE_CREATED", details=ROLE)
            for k in keys
        ]

    holds_key_2, batch_waits = threading.Event(), threading.Event()
    results: dict[str, Any] = {}

    def other() -> None:
        try:
            with transaction.atomic():
                audit_log_record_batch(organization=paid_org, submissions=batch("dl-2"))
                holds_key_2.set()
                assert batch_waits.wait(10)
                try:
                    with transaction.atomic():
                        results["other"] = audit_log_record_batch(
                            organization=paid_org, submissions=batch("dl-1")
                        )
                except OperationalError as error:
                    results["other_error"] = error
        finally:
            connection.close()

    def the_batch() -> None:
        try:
            results["batch"] = audit_log_record_batch(
                organization=paid_org, submissions=batch("dl-1", "dl-2")
            )
        except OperationalError as error:
            results["batch_error"] = error
        finally:
            connection.close()

    holder = threading.Thread(target=other)
    holder.start()
    assert holds_key_2.wait(10)
    waiter = threading.Thread(target=the_batch)
    waiter.start()
    time.sleep(0.3)  # the batch now waits for key 2, holding key 1
    batch_waits.set()
    holder.join(30)
    waiter.join(30)
    assert "batch_error" not in results and "other_error" not in results, results
    assert [r.created for r in results["batch"]] == [False, False]
    stored = AuditLog.objects.filter(organization=paid_org, idempotency_key__startswith="dl-")
    assert stored.count() == 2

    # The error itself, unretried: coded as a conflict to retry.
    deadlock = _a_real_deadlock()
    assert database_failure(deadlock) == (ErrorCode.TRANSACTION_CONFLICT, ANY_MESSAGE)


class _AnyMessage:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and "Retry" in other


ANY_MESSAGE: Any = _AnyMessage()


def _a_real_deadlock() -> BaseException:
    """Two sessions lock two rate-limit rows in opposite orders: one of them fails."""
    import threading

    from django.db import OperationalError, connection, transaction

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO rate_limit_window (key, window_start, hits) "
            "VALUES ('dl-a', 0, 0), ('dl-b', 0, 0)"
        )
    both_locked = threading.Barrier(2)
    errors: list[BaseException] = []

    def session(first: str, second: str) -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("UPDATE rate_limit_window SET hits = 1 WHERE key = %s", [first])
                both_locked.wait(10)
                cursor.execute("UPDATE rate_limit_window SET hits = 2 WHERE key = %s", [second])
        except OperationalError as error:
            errors.append(error)
        finally:
            connection.close()

    sessions = [
        threading.Thread(target=session, args=("dl-a", "dl-b")),
        threading.Thread(target=session, args=("dl-b", "dl-a")),
    ]
    for thread in sessions:
        thread.start()
    for thread in sessions:
        thread.join(30)
    (error,) = errors
    return error


def test_recording_after_a_bulk_load_reads_only_its_own_rollup_rows(
    paid_org: Organization, admin: User
) -> None:
    """A session keeps the plans its triggers made the first time they ran. Made while
    the rollups were empty, the cheapest plans read a rollup in full (a sequential scan,
    or a walk along its primary key to join it), and the session went on reading every rollup
    row for every entry after an import had filled them, until the next ANALYZE."""
    from datetime import UTC, datetime, timedelta

    from django.db import connection, transaction

    from audit.services import AuditEntryDraft, audit_log_bulk_create
    from tests.support import refresh_statistics

    rollups = [
        "audit_count_month",
        "audit_count_day",
        "audit_count_hour",
        "audit_count_actor_month",
        "audit_count_actor_day",
        "audit_actor_email",
    ]
    refresh_statistics(*rollups)  # empty, and known to be
    audit_log_record(organization=paid_org, event=AuditEventType.USER_LOGIN)  # plans made now
    start = datetime(2025, 1, 1, tzinfo=UTC)
    audit_log_bulk_create(
        organization=paid_org,
        drafts=(
            AuditEntryDraft(
                event=AuditEventType.values[i % len(AuditEventType.values)],
                time=start + timedelta(hours=i),
                user_email=admin.email if i % 400 == 0 else f"user{i % 400}@example.test",
            )
            for i in range(8_000)
        ),
    )
    with connection.cursor() as cursor:
        # The counters below are this session's, and count from the last flush.
        cursor.execute("SELECT pg_stat_force_next_flush()")
    with transaction.atomic():
        audit_log_record(  # an address among the 400 of the directory: looked up
            organization=paid_org,
            event=AuditEventType.ROLE_CREATED,
            actor=admin,
            time=start + timedelta(days=100),
        )
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT relname, seq_tup_read + coalesce(idx_tup_fetch, 0)"
                " FROM pg_stat_xact_user_tables WHERE relname = ANY(%s) ORDER BY relname",
                [rollups],
            )
            read = dict(cursor.fetchall())
    # Each rollup row of the entry is looked up and updated (or added): a few rows each.
    assert max(read.values()) <= 4, read
