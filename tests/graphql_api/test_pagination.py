"""Keyset pagination of auditLogs: newest first, both directions, exact pageInfo at both
ends, and stable while new entries arrive."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from audit.events import AuditEventType as E
from audit.models import AuditLog
from audit.services import AuditEntryDraft, audit_log_bulk_create, audit_log_record
from core.models import Organization, User
from tests.graphql_api.conftest import GraphQLClient, data_of

pytestmark = pytest.mark.django_db

PAGE = """
query Page($first: Int, $after: String, $last: Int, $before: String, $filter: AuditLogFilter) {
  auditLogs(first: $first, after: $after, last: $last, before: $before, filter: $filter) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id event time } }
  }
}
"""

T0 = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture
def org(admin: User) -> Organization:
    """The admin's organization with 57 more entries; groups of three share a timestamp, so
    the order must fall back to the id."""
    organization = admin.organization
    assert organization is not None
    drafts = [
        AuditEntryDraft(event=E.USER_LOGIN, time=T0 + timedelta(minutes=i // 3)) for i in range(57)
    ]
    audit_log_bulk_create(organization=organization, drafts=drafts)
    return organization


def expected_ids(org: Organization) -> list[int]:
    rows = AuditLog.objects.filter(organization=org).values_list("time", "id")
    return [pk for _, pk in sorted(rows, reverse=True)]


def page(gql: GraphQLClient, **variables: Any) -> dict[str, Any]:
    result: dict[str, Any] = data_of(gql.post(PAGE, variables))["auditLogs"]
    return result


def ids_of(connection: dict[str, Any]) -> list[int]:
    from strawberry.relay import from_base64

    return [int(from_base64(e["node"]["id"])[1]) for e in connection["edges"]]


def walk_forward(gql: GraphQLClient, size: int, **variables: Any) -> list[dict[str, Any]]:
    pages, after = [], None
    while True:
        current = page(gql, first=size, after=after, **variables)
        pages.append(current)
        if not current["pageInfo"]["hasNextPage"]:
            return pages
        after = current["pageInfo"]["endCursor"]


def walk_backward(gql: GraphQLClient, size: int, **variables: Any) -> list[dict[str, Any]]:
    pages, before = [], None
    while True:
        current = page(gql, last=size, before=before, **variables)
        pages.append(current)
        if not current["pageInfo"]["hasPreviousPage"]:
            return pages
        before = current["pageInfo"]["startCursor"]


@pytest.mark.parametrize("size", [1, 7, 20, 100])
def test_forward_then_backward_visits_every_entry_once_in_order(
    admin_gql: GraphQLClient, org: Organization, size: int
) -> None:
    everything = expected_ids(org)
    forward = walk_forward(admin_gql, size)
    assert [i for p in forward for i in ids_of(p)] == everything
    assert all(p["totalCount"] == len(everything) for p in forward)
    assert forward[0]["pageInfo"]["hasPreviousPage"] is False
    assert all(p["pageInfo"]["hasPreviousPage"] for p in forward[1:])
    assert all(p["pageInfo"]["hasNextPage"] for p in forward[:-1])

    backward = walk_backward(admin_gql, size)
    assert [i for p in reversed(backward) for i in ids_of(p)] == everything
    assert backward[0]["pageInfo"]["hasNextPage"] is False
    assert all(p["pageInfo"]["hasNextPage"] for p in backward[1:])
    assert all(p["pageInfo"]["hasPreviousPage"] for p in backward[:-1])


def test_previous_from_the_second_page_returns_the_first_page(
    admin_gql: GraphQLClient, org: Organization
) -> None:
    first = page(admin_gql, first=10)
    second = page(admin_gql, first=10, after=first["pageInfo"]["endCursor"])
    back = page(admin_gql, last=10, before=second["pageInfo"]["startCursor"])
    assert ids_of(back) == ids_of(first)
    assert back["pageInfo"]["hasPreviousPage"] is False
    assert back["pageInfo"]["hasNextPage"] is True


def test_entries_inserted_while_paging_do_not_shift_or_repeat(
    admin_gql: GraphQLClient, org: Organization, admin: User
) -> None:
    before_walk = expected_ids(org)
    seen: list[int] = []
    after = None
    newest = T0 + timedelta(days=1)
    while True:
        current = page(admin_gql, first=8, after=after)
        seen.extend(ids_of(current))
        # New entries land at the head, behind the walk.
        newest += timedelta(seconds=1)
        audit_log_record(organization=org, event=E.SESSION_STARTED, actor=admin, time=newest)
        if not current["pageInfo"]["hasNextPage"]:
            break
        after = current["pageInfo"]["endCursor"]
    assert seen == before_walk
    assert len(set(seen)) == len(seen)
    # The totals moved with the inserts; the pages did not.
    assert page(admin_gql, first=1)["totalCount"] == len(expected_ids(org))


def test_backward_walk_while_entries_are_inserted(
    admin_gql: GraphQLClient, org: Organization, admin: User
) -> None:
    # Walking from the oldest towards the newest, entries recorded behind the walk (here
    # back-dated, as an import may do) must not appear; the walk sees the set as it began.
    everything = expected_ids(org)
    seen: list[int] = []
    before = None
    oldest = T0
    while True:
        current = page(admin_gql, last=9, before=before)
        seen[:0] = ids_of(current)
        oldest -= timedelta(seconds=1)
        audit_log_record(organization=org, event=E.SESSION_STARTED, actor=admin, time=oldest)
        if not current["pageInfo"]["hasPreviousPage"]:
            break
        before = current["pageInfo"]["startCursor"]
    assert seen == everything


def test_without_first_or_last_the_first_fifty(admin_gql: GraphQLClient, org: Organization) -> None:
    connection = page(admin_gql)
    assert ids_of(connection) == expected_ids(org)[:50]
    assert connection["pageInfo"]["hasNextPage"] is True


def test_first_zero_returns_no_edges_but_the_total(
    admin_gql: GraphQLClient, org: Organization
) -> None:
    connection = page(admin_gql, first=0)
    assert connection["edges"] == []
    assert connection["totalCount"] == len(expected_ids(org))
    assert connection["pageInfo"] == {
        "hasNextPage": True,
        "hasPreviousPage": False,
        "startCursor": None,
        "endCursor": None,
    }


def test_last_without_before_is_the_oldest_entries(
    admin_gql: GraphQLClient, org: Organization
) -> None:
    connection = page(admin_gql, last=5)
    assert ids_of(connection) == expected_ids(org)[-5:]
    assert connection["pageInfo"]["hasNextPage"] is False
    assert connection["pageInfo"]["hasPreviousPage"] is True


def test_first_and_last_together_slice_per_relay(
    admin_gql: GraphQLClient, org: Organization
) -> None:
    everything = expected_ids(org)
    connection = page(admin_gql, first=10, last=3)
    assert ids_of(connection) == everything[7:10]
    assert connection["pageInfo"]["hasPreviousPage"] is True
    assert connection["pageInfo"]["hasNextPage"] is True


def test_after_and_before_bound_a_window(admin_gql: GraphQLClient, org: Organization) -> None:
    everything = expected_ids(org)
    edges = page(admin_gql, first=30)["edges"]
    window = page(admin_gql, first=100, after=edges[4]["cursor"], before=edges[20]["cursor"])
    assert ids_of(window) == everything[5:20]
    assert window["pageInfo"]["hasPreviousPage"] is True


def test_cursors_survive_a_change_of_filter_and_flags_stay_exact(
    admin_gql: GraphQLClient, org: Organization
) -> None:
    # A cursor is a position, valid under any filter; the flags look at the filtered set.
    audit_log_record(organization=org, event=E.ROLE_DELETED, time=T0 - timedelta(days=1))
    cursor = page(admin_gql, first=1)["pageInfo"]["endCursor"]
    only_deleted = {"eventType": "ROLE_DELETED"}
    result = page(admin_gql, first=5, after=cursor, filter=only_deleted)
    assert [e["node"]["event"] for e in result["edges"]] == ["ROLE_DELETED"]
    assert result["pageInfo"]["hasPreviousPage"] is False
    assert result["pageInfo"]["hasNextPage"] is False
    assert result["totalCount"] == 1


def test_the_last_page_of_a_walk_knows_it_is_last(
    admin_gql: GraphQLClient, org: Organization
) -> None:
    total = len(expected_ids(org))
    pages = walk_forward(admin_gql, total)  # exactly one full page
    assert len(pages) == 1
    assert pages[0]["pageInfo"]["hasNextPage"] is False
    assert len(pages[0]["edges"]) == total


def test_flags_are_exact_with_any_cursor_combination(
    admin_gql: GraphQLClient, org: Organization
) -> None:
    everything = expected_ids(org)
    edges = page(admin_gql, first=40)["edges"]
    # first + before: the newest entries older than the cursor; newer ones exist.
    below = page(admin_gql, first=5, before=edges[10]["cursor"])
    assert ids_of(below) == everything[:5]
    assert below["pageInfo"]["hasPreviousPage"] is False
    assert below["pageInfo"]["hasNextPage"] is True
    # last + after: the oldest entries, all older than `after`; newer ones exist.
    oldest = page(admin_gql, last=5, after=edges[-1]["cursor"])
    assert ids_of(oldest) == everything[-5:]
    assert oldest["pageInfo"]["hasNextPage"] is False
    assert oldest["pageInfo"]["hasPreviousPage"] is True
    # A window between two cursors, exhausted: entries exist on both sides of it.
    window = page(admin_gql, first=50, after=edges[4]["cursor"], before=edges[8]["cursor"])
    assert ids_of(window) == everything[5:8]
    assert window["pageInfo"]["hasPreviousPage"] is True
    assert window["pageInfo"]["hasNextPage"] is True
    backwards_window = page(admin_gql, last=50, after=edges[4]["cursor"], before=edges[8]["cursor"])
    assert ids_of(backwards_window) == everything[5:8]
    assert backwards_window["pageInfo"]["hasPreviousPage"] is True
    assert backwards_window["pageInfo"]["hasNextPage"] is True


def test_an_email_search_pages_both_ways(
    admin_gql: GraphQLClient, org: Organization, make_user: Any
) -> None:
    # Several matching addresses with interleaved, tied times: the page is merged from each
    # address's own index range and must still be one exact newest-first order.
    drafts = [
        AuditEntryDraft(
            event=E.USER_LOGIN if i % 3 else E.ROLE_UPDATED,
            time=T0 + timedelta(minutes=i // 2),
            user_email=f"{['grace', 'Grace.h', 'ada'][i % 3]}@example.test",
        )
        for i in range(60)
    ]
    audit_log_bulk_create(organization=org, drafts=drafts)
    search = {"userEmail": "grace"}
    matching = [
        pk
        for t, pk, email in sorted(
            AuditLog.objects.filter(organization=org).values_list("time", "id", "actor_email"),
            reverse=True,
        )
        if email and "grace" in email.lower()
    ]
    assert len(matching) == 40
    forward = walk_forward(admin_gql, 7, filter=search)
    assert [i for p in forward for i in ids_of(p)] == matching
    assert all(p["totalCount"] == 40 for p in forward)
    backward = walk_backward(admin_gql, 6, filter=search)
    assert [i for p in reversed(backward) for i in ids_of(p)] == matching
    with_type = walk_forward(admin_gql, 5, filter={**search, "eventType": "ROLE_UPDATED"})
    expected = [pk for pk in matching if AuditLog.objects.get(pk=pk).event == "ROLE_UPDATED"]
    assert [i for p in with_type for i in ids_of(p)] == expected


def test_a_field_selected_twice_under_one_key_merges_its_selections(
    admin_gql: GraphQLClient, org: Organization
) -> None:
    # Two selections of the same response key (same arguments) are one field whose
    # sub-selections merge: the total asked for by the second must be there.
    data = data_of(
        admin_gql.post(
            "{ auditLogs(first: 2) { edges { cursor } } auditLogs(first: 2) { totalCount } }"
        )
    )
    assert data["auditLogs"]["totalCount"] == AuditLog.objects.filter(organization=org).count()
    assert len(data["auditLogs"]["edges"]) == 2
    # And through a fragment.
    data = data_of(
        admin_gql.post(
            "{ auditLogs(first: 1) { edges { cursor } } ...T }"
            " fragment T on Query { auditLogs(first: 1) { totalCount } }"
        )
    )
    assert data["auditLogs"]["totalCount"] == AuditLog.objects.filter(organization=org).count()
