"""The Audit Logs page in a real Chromium, against a live server: who sees what, the
table and its total, every filter (dates as whole days in the viewer's time zone),
pagination, state in the URL, hostile values, Live. Expected rows and totals come from
the selectors, the API's own reading of the same filter."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings
from django.utils import timezone
from strawberry import relay

from audit.events import AuditEventType as E
from audit.filters import AuditLogFilter
from audit.models import AuditLog
from audit.selectors import audit_log_count, audit_log_list
from audit.services import AuditEntryDraft, audit_log_bulk_create, audit_log_record
from core.models import Organization, User
from tests.browser.conftest import TIME_ZONE, Visit, sign_in_with_cookie
from tests.support import TRANSACTIONAL

pytestmark = TRANSACTIONAL

PAGE_SIZE = 50
LOCAL = ZoneInfo(TIME_ZONE)
NOW = timezone.now()
EVENTS = [E.USER_LOGIN, E.RESOURCE_CREATED, E.SESSION_STARTED, E.ROLE_UPDATED]
EMAILS = ["grace@acme.test", "bob@acme.test", "GRACIE.h@acme.test"]


@pytest.fixture
def history(admin: User) -> Organization:
    """130 entries over the last ten days (newest first by id as well as by time)."""
    org = admin.organization
    assert org is not None
    audit_log_bulk_create(
        organization=org,
        drafts=[
            AuditEntryDraft(
                event=EVENTS[n % 4],
                time=NOW - timedelta(hours=2 * (130 - n)),
                user_email=EMAILS[n % 3],
                ip=f"203.0.113.{n % 200}",
                details={"n": n, "resource": f"vm-{n}"},
            )
            for n in range(130)
        ],
    )
    return org


def node_ids(org: Organization, filters: AuditLogFilter, count: int = PAGE_SIZE) -> list[str]:
    entries = audit_log_list(organization=org, filters=filters)[:count]
    return [relay.to_base64("AuditLog", e.pk) for e in entries]


def expected_position(org: Organization, filters: AuditLogFilter, page: int = 1) -> str:
    total = audit_log_count(organization=org, filters=filters)
    return f"Page {page} of {max(1, math.ceil(total / PAGE_SIZE))} ({total:,} total)"


def shown(visit: Visit) -> tuple[list[str], str]:
    page = visit.page
    page.wait_for_selector("#entries:not([aria-busy])")
    ids = page.locator("#entries tbody tr").evaluate_all("rows => rows.map(r => r.dataset.id)")
    return ids, page.inner_text("#position")


def after_request(visit: Visit, action: Callable[[], Any]) -> None:
    """Do ``action`` and wait until the page's GraphQL answer has been shown."""
    with visit.page.expect_response(
        lambda r: r.url.endswith("/graphql/") and r.request.method == "POST"
    ):
        action()
    visit.page.wait_for_selector("#entries:not([aria-busy])")
    visit.page.wait_for_timeout(50)


def open_page(visit: Visit, query: str = "") -> None:
    visit.page.goto(f"{visit.site}/audit-logs/{query}")
    visit.page.wait_for_selector(
        "#log:not([hidden]) #entries tbody tr, #paid-plan-required:not([hidden])"
    )


# --- who sees what ---------------------------------------------------------------------------


def test_an_anonymous_visitor_signs_in_and_comes_back(
    visit: Visit, admin: User, history: Organization
) -> None:
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.PBKDF2PasswordHasher"]):
        admin.set_password("a-long-browser-password")
        admin.save(update_fields=["password"])
    page = visit.page
    page.goto(f"{visit.site}/audit-logs/?eventType=USER_LOGIN")
    assert "/accounts/login/" in page.url
    page.fill("#id_username", admin.email)
    page.fill("#id_password", "a-long-browser-password")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/audit-logs/\?eventType=USER_LOGIN$"))
    _, position = shown(visit)
    filters = AuditLogFilter.build(event_type=E.USER_LOGIN)
    assert position == expected_position(history, filters)
    assert page.input_value("#event-type") == "USER_LOGIN"


@pytest.mark.parametrize("who", ["member", "free admin"])
def test_anyone_but_a_paid_admin_sees_paid_plan_required(
    visit: Visit,
    who: str,
    paid_org: Organization,
    make_org: Callable[..., Organization],
    make_user: Callable[..., User],
) -> None:
    user = make_user(paid_org) if who == "member" else make_user(make_org("free"), admin=True)
    sign_in_with_cookie(visit, user)
    open_page(visit)
    notice = visit.page.locator("#paid-plan-required")
    assert notice.is_visible()
    assert notice.inner_text().splitlines()[0] == "Paid Plan Required"
    assert (
        "Audit logs are only available to organization administrators on the Paid plan."
        in notice.inner_text()
    )
    assert not visit.page.locator("#log").is_visible()


def test_a_paid_admin_sees_the_newest_entries_and_the_apis_total(
    visit: Visit, admin: User, history: Organization
) -> None:
    sign_in_with_cookie(visit, admin)
    open_page(visit)
    ids, position = shown(visit)
    everything = AuditLogFilter()
    assert ids == node_ids(history, everything)
    assert position == expected_position(history, everything)
    page = visit.page
    headings = page.locator("#entries thead th").all_text_contents()
    assert headings == ["Event", "User", "IP", "Details", "Time"]
    # The event types come from auditEventTypes, with "All events" first.
    options = page.locator("#event-type option").all_text_contents()
    assert options[0] == "All events" and len(options) == 1 + len(E)
    assert f"USER_LOGIN — {E.USER_LOGIN.label}" in options
    assert page.get_attribute("#user-email", "placeholder") == "Search email..."
    # Time in the viewer's zone, the exact UTC time at hand.
    newest = AuditLog.objects.get(pk=int(relay.from_base64(ids[0])[1]))
    time = page.locator("#entries tbody tr").first.locator("time")
    assert time.get_attribute("datetime") == newest.time.isoformat()
    assert newest.time.astimezone(LOCAL).strftime("%I:%M:%S").lstrip("0") in time.inner_text()
    assert "GMT+13" in time.inner_text() or "GMT+12" in time.inner_text()


# --- filters ---------------------------------------------------------------------------------


def local_day(days_ago: int) -> tuple[str, datetime, datetime]:
    day = (NOW.astimezone(LOCAL) - timedelta(days=days_ago)).date()
    start = datetime(day.year, day.month, day.day, tzinfo=LOCAL)
    end = start + timedelta(days=1) - timedelta(microseconds=1)
    return day.isoformat(), start, end


@pytest.mark.parametrize("case", ["event type", "email", "from", "to", "all together"])
def test_each_filter_alone_and_together_matches_the_api(
    visit: Visit, admin: User, history: Organization, case: str
) -> None:
    sign_in_with_cookie(visit, admin)
    open_page(visit)
    page = visit.page
    from_day, from_start, _ = local_day(6)
    to_day, _, to_end = local_day(2)
    build: dict[str, Any] = {}
    if case in ("event type", "all together"):
        after_request(visit, lambda: page.select_option("#event-type", "RESOURCE_CREATED"))
        build["event_type"] = E.RESOURCE_CREATED
    if case in ("email", "all together"):
        after_request(visit, lambda: page.fill("#user-email", "GRAC"))  # debounced
        build["user_email"] = "GRAC"
    if case in ("from", "all together"):
        after_request(visit, lambda: page.fill("#date-from", from_day))
        build["time_from"] = from_start
    if case in ("to", "all together"):
        after_request(visit, lambda: page.fill("#date-to", to_day))
        build["time_to"] = to_end
    filters = AuditLogFilter.build(**build)
    ids, position = shown(visit)
    assert ids == node_ids(history, filters) and ids
    assert position == expected_position(history, filters)
    # The export link downloads the same filter.
    href = page.get_attribute("#export", "href") or ""
    if "event_type" in build:
        assert "eventType=RESOURCE_CREATED" in href


def test_the_search_box_and_the_ip_field_match_the_api(
    visit: Visit, admin: User, history: Organization
) -> None:
    sign_in_with_cookie(visit, admin)
    open_page(visit)
    page = visit.page
    after_request(visit, lambda: page.fill("#search", "VM-7"))  # the words vm and -7
    ids, position = shown(visit)
    filters = AuditLogFilter.build(search="VM-7")
    assert ids == node_ids(history, filters) and len(ids) == 1
    assert position == expected_position(history, filters) == "Page 1 of 1 (1 total)"
    after_request(visit, lambda: page.fill("#ip", "203.0.113.0/29"))
    assert shown(visit)[0] == ids  # entry 7 came from 203.0.113.7
    after_request(visit, lambda: page.fill("#ip", "203.0.113.8"))
    assert page.inner_text("#state") == "No entries match these filters."
    assert "search=VM-7" in page.url and "ip=203.0.113.8" in page.url
    href = page.get_attribute("#export", "href") or ""
    assert "search=VM-7" in href and "ip=203.0.113.8" in href


def test_an_address_that_is_not_one_is_explained_beside_the_filters(
    visit: Visit, admin: User, history: Organization
) -> None:
    sign_in_with_cookie(visit, admin)
    open_page(visit)
    page = visit.page
    after_request(visit, lambda: page.fill("#ip", "203.0.113.300"))
    problem = page.locator("#filter-problem")
    assert problem.is_visible()
    assert "'203.0.113.300' is not an IPv4 or IPv6 address or CIDR range" in problem.inner_text()
    assert page.locator("#entries tbody tr").count() == 0 and page.is_visible("#filters")
    after_request(visit, lambda: page.fill("#ip", "203.0.113.30"))
    assert not problem.is_visible()
    filters = AuditLogFilter.build(ip="203.0.113.30")
    assert shown(visit) == (node_ids(history, filters), expected_position(history, filters))


def test_a_search_too_broad_to_count_still_pages(
    visit: Visit, admin: User, history: Organization
) -> None:
    """130 entries match and the server counts at most 100 (the site's setting): the page
    shows the entries without a total, and pages on."""
    sign_in_with_cookie(visit, admin)
    open_page(visit)
    page = visit.page
    after_request(visit, lambda: page.fill("#ip", "203.0.0.0/16"))
    filters = AuditLogFilter.build(ip="203.0.0.0/16")
    ids, position = shown(visit)
    assert ids == node_ids(history, filters)
    assert (
        position
        == "Page 1 (too many matches to count; narrow the search or the dates to see a total)"
    )
    assert page.is_enabled("#next")
    after_request(visit, lambda: page.click("#next"))
    ids, position = shown(visit)
    assert ids == node_ids(history, filters, 100)[50:] and position.startswith("Page 2 (")


def test_dates_are_whole_days_in_the_viewers_time_zone(visit: Visit, admin: User) -> None:
    org = admin.organization
    assert org is not None
    day, start, end = local_day(3)
    micro = timedelta(microseconds=1)
    inside = {"first instant": start, "last instant": end}
    outside = {"just before": start - micro, "just after": end + micro}
    audit_log_bulk_create(
        organization=org,
        drafts=[
            AuditEntryDraft(event=E.SESSION_EXPIRED, time=moment, details={"at": label})
            for label, moment in {**inside, **outside}.items()
        ],
    )
    sign_in_with_cookie(visit, admin)
    open_page(visit)
    page = visit.page
    after_request(visit, lambda: page.fill("#date-from", day))
    after_request(visit, lambda: page.fill("#date-to", day))
    details = page.locator("#entries tbody td.details summary").all_inner_texts()
    assert sorted(details) == ["at: first instant", "at: last instant"]
    assert page.inner_text("#position") == "Page 1 of 1 (2 total)"


def test_clear_filters_resets_every_filter_and_the_page(
    visit: Visit, admin: User, history: Organization
) -> None:
    sign_in_with_cookie(visit, admin)
    open_page(visit, "?eventType=USER_LOGIN&userEmail=grace&from=2020-01-01&to=2099-01-01")
    page = visit.page
    assert page.input_value("#user-email") == "grace"
    after_request(visit, lambda: page.click("#clear-filters"))
    assert page.url == f"{visit.site}/audit-logs/"
    assert [
        page.input_value(s) for s in ("#event-type", "#user-email", "#date-from", "#date-to")
    ] == [""] * 4
    ids, position = shown(visit)
    assert ids == node_ids(history, AuditLogFilter())
    assert position == expected_position(history, AuditLogFilter())


# --- pagination and the URL ------------------------------------------------------------------


def test_next_next_previous_previous_and_the_url_keeps_the_position(
    visit: Visit, admin: User, history: Organization
) -> None:
    sign_in_with_cookie(visit, admin)
    open_page(visit)
    page = visit.page
    everything = AuditLogFilter()
    first, position = shown(visit)
    assert page.is_disabled("#previous") and not page.is_disabled("#next")
    all_ids = node_ids(history, everything, count=200)
    after_request(visit, lambda: page.click("#next"))
    second, position = shown(visit)
    assert second == all_ids[50:100] and position.startswith("Page 2 of 3")
    after_request(visit, lambda: page.click("#next"))
    third, position = shown(visit)
    assert third == all_ids[100:150] and position.startswith("Page 3 of 3")
    assert page.is_disabled("#next")  # the last page

    # A reload and a shared link show the same page.
    page.reload()
    assert shown(visit) == (third, position)
    shared = visit.context.new_page()
    shared.goto(page.url)
    shared.wait_for_selector("#entries tbody tr")
    assert shared.inner_text("#position") == position
    shared.close()

    after_request(visit, lambda: page.click("#previous"))
    assert shown(visit)[0] == second
    after_request(visit, lambda: page.click("#previous"))
    assert shown(visit)[0] == first
    assert page.is_disabled("#previous")

    # Back goes through the pages seen, in reverse.
    after_request(visit, lambda: page.go_back())
    assert shown(visit)[0] == second
    after_request(visit, lambda: page.go_back())
    assert shown(visit)[0] == third


def test_changing_a_filter_goes_back_to_page_one(
    visit: Visit, admin: User, history: Organization
) -> None:
    sign_in_with_cookie(visit, admin)
    open_page(visit)
    page = visit.page
    after_request(visit, lambda: page.click("#next"))
    after_request(visit, lambda: page.select_option("#event-type", "USER_LOGIN"))
    _, position = shown(visit)
    assert position.startswith("Page 1 of") and "page=" not in page.url


# --- safety and live -------------------------------------------------------------------------


def test_hostile_values_render_as_text(visit: Visit, admin: User) -> None:
    org = admin.organization
    assert org is not None
    hostile = "<img src=x onerror=alert(1)>"
    audit_log_bulk_create(
        organization=org,
        drafts=[
            AuditEntryDraft(
                event=E.RESOURCE_UPDATED,
                time=NOW,
                user_email="<script>alert(2)</script>@evil.test",
                user_name="<b>bold</b>",
                details={"name": hostile, hostile: "key"},
            )
        ],
    )
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    visit.page.on("dialog", on_dialog)
    sign_in_with_cookie(visit, admin)
    open_page(visit)
    row = visit.page.locator("#entries tbody tr", has_text="evil.test")
    assert "<script>alert(2)</script>@evil.test" in row.inner_text()
    assert "<b>bold</b>" in row.inner_text()
    row.locator("summary").click()
    assert hostile in row.locator("pre").inner_text()
    assert row.locator("img, script, b").count() == 0
    assert dialogs == []


def test_live_shows_an_entry_recorded_while_the_page_is_open(
    visit: Visit, admin: User, history: Organization
) -> None:
    sign_in_with_cookie(visit, admin)
    open_page(visit)
    page = visit.page
    total_before = audit_log_count(organization=history, filters=AuditLogFilter())
    page.check("#live")
    page.locator("#live-status", has_text="Live: new entries appear").wait_for()
    entry = audit_log_record(
        organization=history,
        event=E.CREDENTIAL_CREATED,
        actor=None,
        ip=None,
        details={"live": True},
    )
    node = relay.to_base64("AuditLog", entry.pk)
    page.wait_for_selector(f'#entries tbody tr[data-id="{node}"]', timeout=10_000)
    assert page.locator("#entries tbody tr").first.get_attribute("data-id") == node
    assert f"({total_before + 1:,} total)" in page.inner_text("#position")


def test_a_shared_link_with_a_bad_address_opens_with_the_reason_and_the_filters(
    visit: Visit, admin: User, history: Organization
) -> None:
    sign_in_with_cookie(visit, admin)
    page = visit.page
    page.goto(f"{visit.site}/audit-logs/?ip=not-an-address")
    page.wait_for_selector("#filter-problem:not([hidden])")
    assert "'not-an-address' is not an IPv4 or IPv6 address" in page.inner_text("#filter-problem")
    assert page.input_value("#ip") == "not-an-address" and page.is_visible("#filters")
    after_request(visit, lambda: page.click("#clear-filters"))
    assert shown(visit)[0] == node_ids(history, AuditLogFilter())
