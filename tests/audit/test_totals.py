"""Totals from the rollups equal a brute-force count, for random entries, filters and
boundaries; and writers to one organization and day neither wait for each other nor lose
counts."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections, transaction
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from audit.events import AuditEventType as E
from audit.filters import AuditLogFilter
from audit.models import AuditCountDay, AuditLog
from audit.selectors import audit_log_count
from audit.services import AuditEntryDraft, audit_log_bulk_create, audit_log_record
from audit.totals import DAY, HOUR, MONTH, Span, split
from core.models import Organization, User
from core.services import organization_create, user_create
from tests.support import TRANSACTIONAL

# Entries and window edges over 40 days from T0, so that windows hold whole months (all
# of February), whole days and whole hours, and edges fall on and around each boundary.
T0 = datetime(2026, 1, 20, tzinfo=UTC)
H, D = timedelta(hours=1), timedelta(days=1)
SPAN_HOURS = 40 * 24
EVENTS = [E.USER_LOGIN, E.RESOURCE_CREATED, E.SESSION_EXPIRED]
EMAILS = [None, "Ann@a.test", "bob@b.test", "ann.c@a.test"]

instants = st.one_of(
    st.integers(0, SPAN_HOURS).map(lambda h: T0 + h * H),  # exactly on an hour (or day)
    st.integers(0, SPAN_HOURS * 3600).map(lambda s: T0 + timedelta(seconds=s)),
    st.integers(0, SPAN_HOURS).map(lambda h: T0 + h * H - timedelta(microseconds=1)),
    st.sampled_from([datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)]),
)
entry = st.tuples(st.sampled_from(EVENTS), instants, st.sampled_from(EMAILS))
filters = st.fixed_dictionaries(
    {},
    optional={
        "event_types": st.lists(st.sampled_from(EVENTS), min_size=1, max_size=2),
        "user_email": st.sampled_from(["ann", "B@B", "zzz", "."]),
        "time_from": instants,
        "time_to": instants,
    },
)


def brute_force(org: Organization, f: dict[str, object]) -> int:
    def keep(row: AuditLog) -> bool:
        if "event_types" in f and row.event not in f["event_types"]:  # type: ignore[operator]
            return False
        needle = f.get("user_email")
        if needle is not None and (
            row.actor_email is None or str(needle).lower() not in row.actor_email.lower()
        ):
            return False
        if "time_from" in f and row.time < f["time_from"]:  # type: ignore[operator]
            return False
        return not ("time_to" in f and row.time > f["time_to"])  # type: ignore[operator]

    return sum(1 for row in AuditLog.objects.filter(organization=org) if keep(row))


@pytest.mark.django_db
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    imported=st.lists(entry, max_size=25),
    recorded=st.lists(entry, max_size=6),
    more_imported=st.lists(entry, max_size=10),
    f=filters,
)
@example(
    imported=[
        (E.USER_LOGIN, T0 + D, "Ann@a.test"),
        (E.USER_LOGIN, T0 + D - timedelta(microseconds=1), "Ann@a.test"),
    ],
    recorded=[],
    more_imported=[(E.USER_LOGIN, T0 + 2 * D, None)],
    f={"time_from": T0 + D, "time_to": T0 + 2 * D},
)
def test_rollup_totals_equal_a_brute_force_count(
    db: None,
    imported: list[tuple[str, datetime, str | None]],
    recorded: list[tuple[str, datetime, str | None]],
    more_imported: list[tuple[str, datetime, str | None]],
    f: dict[str, object],
) -> None:
    with transaction.atomic():
        org = organization_create(slug="totals", name="Totals", plan="paid")
        other = organization_create(slug="noise", name="Noise", plan="paid")
        members = {
            email: user_create(organization=org, email=email.lower())
            for email in EMAILS
            if email is not None
        }

        def drafts(rows: list[tuple[str, datetime, str | None]]) -> list[AuditEntryDraft]:
            return [AuditEntryDraft(event=e, time=t, user_email=m) for e, t, m in rows]

        # Entries arrive every way they can: COPY, one by one, COPY again (merging into the
        # rollup rows that exist), and into another organization.
        audit_log_bulk_create(organization=org, drafts=drafts(imported))
        for event, moment, email in recorded:
            actor = members[email] if email is not None else None
            audit_log_record(organization=org, event=event, actor=actor, time=moment)
        audit_log_bulk_create(organization=org, drafts=drafts(more_imported))
        audit_log_bulk_create(organization=other, drafts=drafts(imported))

        if "time_from" in f and "time_to" in f and f["time_from"] > f["time_to"]:  # type: ignore[operator]
            f = {**f, "time_from": f["time_to"], "time_to": f["time_from"]}
        built = AuditLogFilter.build(**f)  # type: ignore[arg-type]
        assert audit_log_count(organization=org, filters=built) == brute_force(org, f)
        transaction.set_rollback(True)


def test_split_into_whole_units_and_edges() -> None:
    start, end = T0 + 90 * timedelta(minutes=1), T0 + 2 * D + timedelta(minutes=5)
    whole, edges = split(Span(start, end), DAY)
    assert whole == Span(T0 + D, T0 + 2 * D)
    assert edges == [Span(start, T0 + D), Span(T0 + 2 * D, end)]
    assert split(Span(None, None), DAY) == (Span(None, None), [])
    assert split(Span(T0, T0 + H), DAY) == (None, [Span(T0, T0 + H)])
    assert split(Span(T0, T0 + D), DAY) == (Span(T0, T0 + D), [])
    assert split(Span(T0 + 30 * H, T0 + 30 * H + H), HOUR) == (Span(T0 + 30 * H, T0 + 31 * H), [])
    feb, mar = datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)
    assert split(Span(T0, mar + D), MONTH) == (Span(feb, mar), [Span(T0, feb), Span(mar, mar + D)])
    december = datetime(2025, 12, 31, 23, tzinfo=UTC)
    assert split(Span(december, T0), MONTH) == (None, [Span(december, T0)])
    assert split(Span(december, None), MONTH) == (
        Span(datetime(2026, 1, 1, tzinfo=UTC), None),
        [Span(december, datetime(2026, 1, 1, tzinfo=UTC))],
    )


@TRANSACTIONAL
def test_concurrent_writers_to_one_day_do_not_wait_and_totals_stay_exact(
    make_org: Callable[..., Organization], make_user: Callable[..., User]
) -> None:
    org = make_org("paid")
    user = make_user(org, email="writer@example.test")
    moment = datetime(2026, 6, 1, 12, tzinfo=UTC)
    before = audit_log_count(organization=org)

    holding = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def slow_writer() -> None:
        # Records an entry and keeps its transaction open, holding its rollup rows.
        try:
            with transaction.atomic():
                audit_log_record(organization=org, event=E.USER_LOGIN, actor=user, time=moment)
                holding.set()
                assert release.wait(30)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)
            holding.set()
        finally:
            connections.close_all()

    thread = threading.Thread(target=slow_writer)
    thread.start()
    assert holding.wait(30)
    # Meanwhile, other writers to the same organization, day, hour and event commit at
    # once: with a lock wait they would block until the slow writer ends.
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '2s'")
    try:
        for _ in range(20):
            audit_log_record(organization=org, event=E.USER_LOGIN, actor=user, time=moment)
        audit_log_bulk_create(
            organization=org,
            drafts=[AuditEntryDraft(event=E.USER_LOGIN, time=moment, user_email=user.email)] * 30,
        )
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
        release.set()
        thread.join(30)
    assert not errors, errors
    assert audit_log_count(organization=org) == before + 51
    day_rows = AuditCountDay.objects.filter(organization=org, day=moment.date(), event=E.USER_LOGIN)
    assert day_rows.count() >= 2  # the busy row was skipped, not waited for
    assert sum(day_rows.values_list("n", flat=True)) == 51


@TRANSACTIONAL
def test_parallel_writers_produce_exact_totals(
    make_org: Callable[..., Organization], make_user: Callable[..., User]
) -> None:
    org = make_org("paid")
    user = make_user(org, email="many@example.test")
    moment = datetime(2026, 6, 2, 8, 30, tzinfo=UTC)
    before = audit_log_count(organization=org)
    per_thread, threads = 40, 6
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for _ in range(per_thread):
                with transaction.atomic():
                    audit_log_record(
                        organization=org, event=E.RESOURCE_CREATED, actor=user, time=moment
                    )
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=writer) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert not errors, errors
    expected = before + per_thread * threads
    assert audit_log_count(organization=org) == expected
    only_this = AuditLogFilter.build(
        event_type=E.RESOURCE_CREATED, user_email="many@", time_from=moment, time_to=moment
    )
    assert audit_log_count(organization=org, filters=only_this) == per_thread * threads
