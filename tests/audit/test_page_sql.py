"""audit/page_sql.py against the selector it stands in for: for random filters, cursors,
page sizes and directions, ``audit_log_page_rows`` returns exactly what ``audit_log_page``
returns with the same columns (entries, flags and totals), and it uses the indexes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from audit.events import AuditEventType as E
from audit.filters import AuditLogFilter
from audit.models import AuditLog
from audit.page_sql import COLUMNS, audit_log_page_rows
from audit.selectors import AuditLogPosition, audit_log_page
from audit.services import AuditEntryDraft, audit_log_bulk_create
from core.models import Organization, User

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
EMAILS = ["grace.hopper@example.test", "ada@example.test", "GRACE.K@other.test", "bob@example.test"]
EVENTS = [E.USER_LOGIN, E.ROLE_UPDATED, E.SESSION_STARTED, E.RESOURCE_CREATED]


@dataclass
class Data:
    org: Organization
    positions: list[AuditLogPosition]


@pytest.fixture
def data(
    admin: User, make_org: Callable[..., Organization], make_user: Callable[..., User]
) -> Data:
    org = admin.organization
    assert org is not None
    make_user(org, email=EMAILS[0])
    drafts = [
        AuditEntryDraft(
            event=EVENTS[i % len(EVENTS)].value,
            # Pairs share a time, so the order falls back to the id.
            time=T0 + timedelta(minutes=7 * (i // 2)),
            user_email=None if i % 5 == 0 else EMAILS[i % len(EMAILS)],
            ip="198.51.100.9" if i % 3 else None,
            details={"i": i},
        )
        for i in range(60)
    ]
    audit_log_bulk_create(organization=org, drafts=drafts)
    other = make_org("paid")
    audit_log_bulk_create(
        organization=other,
        drafts=[AuditEntryDraft(event=E.USER_LOGIN.value, time=T0, user_email=EMAILS[0])] * 5,
    )
    positions = [
        AuditLogPosition(time=t, id=pk)
        for t, pk in AuditLog.objects.filter(organization=org).values_list("time", "id")
    ]
    return Data(org=org, positions=sorted(positions))


@st.composite
def requests(draw: st.DrawFn, data: Data) -> dict[str, object]:
    times = [None, *(T0 + timedelta(minutes=m) for m in (-5, 0, 7, 30, 101, 180, 400))]
    time_from, time_to = draw(st.sampled_from(times)), draw(st.sampled_from(times))
    if time_from is not None and time_to is not None and time_from > time_to:
        time_from, time_to = time_to, time_from
    filters = AuditLogFilter.build(
        event_types=draw(st.none() | st.lists(st.sampled_from(EVENTS), min_size=1, max_size=3)),
        user_email=draw(st.sampled_from([None, "grace", "EXAMPLE", "ada@", "nobody", "."])),
        time_from=time_from,
        time_to=time_to,
        ip=draw(st.sampled_from([None, None, "198.51.100.0/24", "198.51.100.9", "2001:db8::/32"])),
        search=draw(st.sampled_from([None, None, "i", "I 7", "nothing"])),
        details=draw(st.sampled_from([None, None, {"i": 3}, {"i": 300}])),
    )
    # Cursors: an entry's own position, or one between entries (no entry has it).
    position = st.sampled_from(data.positions) | st.builds(
        lambda p, d: AuditLogPosition(time=p.time + timedelta(seconds=d), id=p.id),
        st.sampled_from(data.positions),
        st.sampled_from([-30, 30]),
    )
    return {
        "filters": filters,
        "first": draw(st.none() | st.sampled_from([0, 1, 2, 5, 13, 100])),
        "last": draw(st.none() | st.sampled_from([0, 1, 3, 7, 100])),
        "after": draw(st.none() | position),
        "before": draw(st.none() | position),
        "with_total": draw(st.booleans()),
        "columns": tuple(
            draw(st.lists(st.sampled_from(sorted(COLUMNS)), min_size=0, max_size=8, unique=True))
        )
        or ("id", "time"),
    }


def test_the_written_statement_returns_what_the_selector_returns(data: Data) -> None:
    from django.db.models import QuerySet, TextField
    from django.db.models.functions import Cast

    def with_details(queryset: QuerySet[AuditLog]) -> QuerySet[AuditLog]:
        return queryset.annotate(details_json=Cast("details", TextField()))

    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(request=requests(data))
    def check(request: dict[str, object]) -> None:
        note(repr(request))
        expected = audit_log_page(
            organization=data.org,
            prepare=with_details,
            **request,  # type: ignore[arg-type]
        )
        found = audit_log_page_rows(organization=data.org, **request)  # type: ignore[arg-type]
        assert [tuple(e) for e in found.entries] == [tuple(e) for e in expected.entries]
        assert [e._fields for e in found.entries] == [e._fields for e in expected.entries]
        assert (found.has_next_page, found.has_previous_page, found.total_count) == (
            expected.has_next_page,
            expected.has_previous_page,
            expected.total_count,
        )

    check()


def test_sizes_out_of_range_are_refused_alike(data: Data) -> None:
    for size in (-1, 101):
        for name in ("first", "last"):
            with pytest.raises(ValueError, match=name):
                audit_log_page_rows(organization=data.org, **{name: size})  # type: ignore[arg-type]
            with pytest.raises(ValueError, match=name):
                audit_log_page(organization=data.org, **{name: size})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "filters",
    [
        AuditLogFilter(),
        AuditLogFilter.build(event_type=E.USER_LOGIN),
        AuditLogFilter.build(user_email="grace"),
        AuditLogFilter.build(time_from=T0, time_to=T0 + timedelta(days=1)),
    ],
)
def test_the_statement_reads_the_audit_table_by_index(data: Data, filters: AuditLogFilter) -> None:
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        audit_log_page_rows(
            organization=data.org,
            filters=filters,
            first=10,
            after=data.positions[30],
            with_total=True,
            columns=("id", "time", "event"),
        )
    (statement,) = [q["sql"] for q in captured.captured_queries]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + statement)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Seq Scan on audit_log" not in plan, plan


def test_times_read_by_the_statement_are_the_values_django_reads(
    admin: User,
) -> None:
    """The statement's cursor loads timestamptz with psycopg's own loader: each time is the
    value Django's loader gives (same instant, same UTC zone object, same ISO text), for
    whole seconds, microseconds and the ends of Python's range."""
    org = admin.organization
    assert org is not None
    times = [
        datetime(2026, 6, 1, 8, 0, tzinfo=UTC),
        datetime(2026, 6, 1, 8, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 6, 1, 8, 0, 0, 999_999, tzinfo=UTC),
        datetime(2024, 2, 29, 23, 59, 59, 500_000, tzinfo=UTC),
        datetime(1, 1, 1, 0, 0, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    ]
    audit_log_bulk_create(
        organization=org,
        drafts=[AuditEntryDraft(event=E.RESOURCE_DELETED.value, time=t) for t in times],
    )
    page = {"filters": AuditLogFilter.build(event_types=[E.RESOURCE_DELETED]), "first": 50}
    expected = audit_log_page(organization=org, columns=("id", "time"), **page)  # type: ignore[arg-type]
    found = audit_log_page_rows(organization=org, columns=("id", "time"), **page)  # type: ignore[arg-type]
    assert [e.time for e in found.entries] == sorted(times, reverse=True)
    for mine, django in zip(found.entries, expected.entries, strict=True):
        assert mine.time == django.time
        assert mine.time.tzinfo is django.time.tzinfo is UTC
        assert mine.time.isoformat() == django.time.isoformat()


# Addresses of very different activity, so that a page's entries come unevenly from them.
SEARCHED = ["ann@a.test", "anna@a.test", "annie@b.test", "joanne@b.test", "ann.k@c.test"]


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    entries=st.lists(
        st.tuples(
            st.sampled_from([*SEARCHED[:1] * 6, *SEARCHED, None]),  # the first address busiest
            st.integers(0, 40),  # minutes from T0: many entries share a time
            st.sampled_from(EVENTS[:2]),
        ),
        max_size=80,
    ),
    needle=st.sampled_from(["ann", "anne", "a.test", "@"]),
    events=st.none() | st.just([EVENTS[0]]),
    size=st.sampled_from([0, 1, 2, 3, 4, 7, 20, 100]),
    forward=st.booleans(),
    cursor=st.none() | st.integers(0, 79),
)
def test_an_email_search_pages_as_a_brute_force_sort_does(
    admin: User,
    entries: list[tuple[str | None, int, E]],
    needle: str,
    events: list[E] | None,
    size: int,
    forward: bool,
    cursor: int | None,
) -> None:
    """The page of an email search (its bound from a few entries of each address, then
    each address up to it) holds exactly the entries a sort of every matching entry puts
    there, however unevenly the addresses fill it, in both directions and from a cursor."""
    from django.db import transaction

    org = admin.organization
    assert org is not None
    with transaction.atomic():
        audit_log_bulk_create(
            organization=org,
            drafts=[
                AuditEntryDraft(event=e.value, time=T0 + timedelta(minutes=m), user_email=email)
                for email, m, e in entries
            ],
        )
        rows = list(
            AuditLog.objects.filter(organization=org).values("id", "time", "actor_email", "event")
        )
        matching = sorted(
            (
                (r["time"], r["id"])
                for r in rows
                if r["actor_email"] is not None
                and needle.lower() in r["actor_email"].lower()
                and (events is None or r["event"] in events)
            ),
            reverse=True,
        )
        filters = AuditLogFilter.build(user_email=needle, event_types=events)
        position = None
        if cursor is not None and rows:
            row = rows[cursor % len(rows)]
            position = AuditLogPosition(time=row["time"], id=row["id"])
        if forward:
            window = [p for p in matching if position is None or p < (position.time, position.id)]
            expected = [pk for _, pk in window[:size]]
            arguments: dict[str, Any] = {"first": size, "after": position}
        else:
            window = [p for p in matching if position is None or p > (position.time, position.id)]
            expected = [pk for _, pk in window[-size:]] if size else []
            arguments = {"last": size, "before": position}
        note(f"{len(matching)} matching, expected {expected}")
        for read in (audit_log_page_rows, audit_log_page):
            page = read(organization=org, filters=filters, columns=("id", "time"), **arguments)
            assert [e.id for e in page.entries] == expected, read.__name__
            # Whether more lie beyond the page: the one entry past it, found the same way.
            beyond = page.has_next_page if forward else page.has_previous_page
            assert beyond == (len(window) > size), read.__name__
        transaction.set_rollback(True)
