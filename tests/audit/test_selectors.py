"""audit_log_list: organization scope, each filter alone and combined, inclusive bounds."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from audit.events import AuditEventType as E
from audit.models import AuditLog
from audit.selectors import AuditLogFilter, audit_log_count, audit_log_list
from audit.services import audit_log_record
from core.models import Organization, User

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def org_with_entries(
    make_org: Callable[..., Organization], make_user: Callable[..., User]
) -> tuple[Organization, list[AuditLog]]:
    org, other = make_org("paid"), make_org("paid")
    alice = make_user(org, email="alice@example.test")
    weird = make_user(org, email="a_b%c@example.test")
    outsider = make_user(other, email="alice@other.test")
    base = list(audit_log_list(organization=org))
    rows = [
        audit_log_record(organization=org, event=E.USER_LOGIN, actor=alice, time=T0),
        audit_log_record(
            organization=org, event=E.RESOURCE_CREATED, actor=alice, time=T0 + timedelta(hours=1)
        ),
        audit_log_record(
            organization=org, event=E.CREDENTIAL_CREATED, actor=weird, time=T0 + timedelta(hours=2)
        ),
        audit_log_record(
            organization=org, event=E.SESSION_EXPIRED, actor=None, time=T0 + timedelta(hours=2)
        ),
        audit_log_record(organization=other, event=E.USER_LOGIN, actor=outsider, time=T0),
    ]
    return org, [*rows[:4], *base]


def ids(org: Organization, **kw: object) -> list[int]:
    filters = AuditLogFilter.build(**kw)  # type: ignore[arg-type]
    listed = [e.pk for e in audit_log_list(organization=org, filters=filters)]
    assert audit_log_count(organization=org, filters=filters) == len(listed)
    return listed


def test_scoped_to_the_organization_and_newest_first(
    org_with_entries: tuple[Organization, list[AuditLog]],
) -> None:
    org, entries = org_with_entries
    listed = list(audit_log_list(organization=org))
    assert {e.pk for e in listed} == {e.pk for e in entries}
    assert all(e.organization_id == org.pk for e in listed)
    keys = [(e.time, e.pk) for e in listed]
    assert keys == sorted(keys, reverse=True)


def test_event_type_and_event_types_are_a_union(
    org_with_entries: tuple[Organization, list[AuditLog]],
) -> None:
    org, (login, resource, credential, expired, *_) = org_with_entries
    assert ids(org, event_type=E.USER_LOGIN) == [login.pk]
    assert ids(org, event_types=[E.RESOURCE_CREATED, E.CREDENTIAL_CREATED]) == [
        credential.pk,
        resource.pk,
    ]
    assert ids(org, event_type=E.USER_LOGIN, event_types=[E.SESSION_EXPIRED]) == [
        expired.pk,
        login.pk,
    ]
    with pytest.raises(ValueError, match="at least one event type"):
        AuditLogFilter.build(event_types=[])


def test_user_email_is_a_case_insensitive_substring_with_literal_wildcards(
    org_with_entries: tuple[Organization, list[AuditLog]],
) -> None:
    org, (login, resource, credential, *_) = org_with_entries
    assert set(ids(org, user_email="ALICE@")) >= {login.pk, resource.pk}
    assert credential.pk not in ids(org, user_email="alice")
    assert ids(org, user_email="_b%") == [credential.pk]
    assert ids(org, user_email="a%c") == []  # % is not a wildcard
    assert ids(org, user_email="a_b") == [credential.pk] and ids(org, user_email="axb") == []


def test_time_bounds_are_inclusive(org_with_entries: tuple[Organization, list[AuditLog]]) -> None:
    org, (login, resource, credential, expired, *_) = org_with_entries
    hour = timedelta(hours=1)
    assert ids(org, time_from=T0, time_to=T0) == [login.pk]
    assert ids(org, time_from=T0 + hour, time_to=T0 + 2 * hour) == [
        expired.pk,
        credential.pk,
        resource.pk,
    ]
    assert ids(org, time_from=T0 + 2 * hour, event_type=E.SESSION_EXPIRED) == [expired.pk]
    assert ids(
        org, time_from=T0, time_to=T0 + hour, user_email="alice", event_types=[E.RESOURCE_CREATED]
    ) == [resource.pk]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"time_from": T0, "time_to": T0 - timedelta(seconds=1)}, "from must not be after to"),
        ({"user_email": "x" * 255}, "at most 254"),
        ({"event_type": "NOPE"}, "NOPE"),
    ],
)
def test_bad_filters_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AuditLogFilter.build(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "filters",
    [
        AuditLogFilter(),
        AuditLogFilter.build(event_type="USER_LOGIN"),
        AuditLogFilter.build(event_types=["RESOURCE_CREATED", "CREDENTIAL_CREATED"]),
        AuditLogFilter.build(user_email="ALICE"),
        AuditLogFilter.build(user_email="_b%"),
        AuditLogFilter.build(user_email="straße"),
        AuditLogFilter.build(user_email="ÉLO"),
        AuditLogFilter.build(time_from=T0 + timedelta(hours=1), time_to=T0 + timedelta(hours=2)),
        AuditLogFilter.build(event_type="SESSION_EXPIRED", time_to=T0 + timedelta(hours=2)),
    ],
)
def test_the_in_memory_filter_of_the_live_stream_agrees_with_the_sql(
    filters: AuditLogFilter,
    org_with_entries: tuple[Organization, list[AuditLog]],
) -> None:
    org, _ = org_with_entries
    from audit.services import AuditEntryDraft, audit_log_bulk_create

    # Addresses of people outside the organization are kept as sent, in any case.
    audit_log_bulk_create(
        organization=org,
        drafts=[
            AuditEntryDraft(event="USER_LOGIN", time=T0, user_email=email)
            for email in ("Straße@Example.test", "élodie@example.test", "ÉLO@example.test")
        ],
    )
    from django.db.models.functions import Upper

    selected = {e.pk for e in audit_log_list(organization=org, filters=filters)}
    needle = None
    if filters.user_email is not None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT UPPER(%s)", [filters.user_email])
            needle = cursor.fetchone()[0]
    in_memory = {
        e.pk
        for e in AuditLog.objects.filter(organization=org).annotate(upper=Upper("actor_email"))
        if filters.matches(
            event=e.event, actor_email_upper=e.upper, time=e.time, user_email_upper=needle
        )
    }
    assert in_memory == selected
