"""The ip, search and details filters (audit/filters.py), property-based against a
brute-force filter written here in Python: the selector's queryset, both page readers,
the total and the live stream's in-memory test all select exactly the entries the brute
force does, for random addresses and ranges (IPv4, IPv6, IPv4-mapped), words and
containments, combined with the older filters. Another organization holds the same
entries: none of them may ever appear.

The brute force splits details into words as PostgreSQL's ``simple`` text search does for
the text generated here (letters and digits separated by spaces and commas): the
lower-cased runs of letters and digits of every key and string, integers as written,
booleans as ``true`` and ``false``."""

from __future__ import annotations

import ipaddress
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from audit.events import AuditEventType as E
from audit.filters import (
    SEARCH_WORDS_SQL,
    WORDS_SQL,
    AuditLogFilter,
    ip_filter,
    jsonb_contains,
)
from audit.models import AuditLog
from audit.page_sql import audit_log_page_rows
from audit.selectors import audit_log_count, audit_log_list, audit_log_page
from audit.services import AuditEntryDraft, audit_log_bulk_create, audit_log_record
from audit.totals import TotalTooCostly
from core.models import Organization, User

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, tzinfo=UTC)
EVENTS = [E.USER_LOGIN, E.RESOURCE_CREATED, E.ROLE_UPDATED]
V4 = ["203.0.113.7", "203.0.113.200", "203.0.114.1", "198.51.100.9", "10.1.2.3", "0.0.0.1"]
V6 = ["2001:db8::1", "2001:db8:0:1::5", "2001:db9::1", "fe80::1", "::1", "::"]
# Written as mapped addresses; stored unmapped (core/client_ip.py).
MAPPED = ["::ffff:203.0.113.9", "::ffff:198.51.100.200"]
RANGES = [
    "203.0.113.0/24", "203.0.0.0/16", "203.0.113.7", "203.0.113.7/32", "203.0.113.128/25",
    "198.51.100.0/22", "0.0.0.0/0", "10.0.0.0/8", "203.0.113.77/24",
    "2001:db8::/32", "2001:db8::/64", "2001:db8::1", "::/0", "fe80::/10", "::/127",
    "::ffff:203.0.113.0/120", "::ffff:0:0/96", "::ffff:198.51.100.200", "::ffff:0:0/95",
]  # fmt: skip
WORDS = ["vm", "VM12", "alpha", "Beta", "gamma", "42", "delta7", "eu", "West", "x"]
CASES = [str, str.lower, str.upper, str.swapcase]
KEYS = ["resource", "Region", "note", "tags", "owner", "x"]


def _text(rng: random.Random) -> str:
    return rng.choice([" ", ", ", ",", "  "]).join(
        rng.choice(WORDS) for _ in range(rng.randint(1, 3))
    )


def _value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if roll < 0.45 or depth >= 2:
        return _text(rng)
    if roll < 0.6:
        return rng.choice([0, 7, 42, 1000])
    if roll < 0.68:
        return rng.choice([True, False, None])
    if roll < 0.84:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return _details(rng, depth + 1)


def _details(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    return {rng.choice(KEYS): _value(rng, depth) for _ in range(rng.randint(0, 3))}


@dataclass
class Data:
    org: Organization
    entries: list[AuditLog]


@pytest.fixture
def data(admin: User, make_org: Callable[..., Organization]) -> Data:
    org = admin.organization
    assert org is not None
    other = make_org("paid")
    rng = random.Random(18)
    drafts = [
        AuditEntryDraft(
            event=rng.choice(EVENTS).value,
            time=T0 + timedelta(minutes=37 * i),
            user_email=rng.choice(["ann@example.test", "bob@example.test", None]),
            ip=rng.choice([*V4, *V6, None]),
            details=_details(rng),
        )
        for i in range(160)
    ]
    for organization in (org, other):  # the other organization: the same entries
        audit_log_bulk_create(organization=organization, drafts=drafts)
        for address in MAPPED:
            audit_log_record(
                organization=organization,
                event=E.SESSION_EXPIRED,
                actor=None,
                ip=address,
                details={"session_id": "sess vm"},
                time=T0 + timedelta(minutes=5),
            )
    return Data(org=org, entries=list(AuditLog.objects.filter(organization=org)))


# --- the brute force --------------------------------------------------------------------------


def brute_ip(address: str | None, text: str) -> bool:
    if address is None:
        return False
    network = ipaddress.ip_network(text, strict=False)
    stored = ipaddress.ip_address(address)
    if network.version == 6 and network.subnet_of(ipaddress.IPv6Network("::ffff:0:0/96")):  # type: ignore[arg-type]
        # A mapped range: the IPv4 addresses whose mapped form it holds.
        if stored.version != 4:
            return False
        return ipaddress.IPv6Address(int(stored) | 0xFFFF_0000_0000) in network
    return stored.version == network.version and stored in network


def brute_words(value: Any) -> set[str]:
    if isinstance(value, dict):
        found = set()
        for key, member in value.items():
            found |= brute_words(key) | brute_words(member)
        return found
    if isinstance(value, list):
        return set().union(*map(brute_words, value)) if value else set()
    if isinstance(value, bool):
        return {"true" if value else "false"}
    if isinstance(value, int):
        return {str(value)}
    if isinstance(value, str):
        return set(re.findall(r"[a-z0-9]+", value.lower()))
    return set()


def brute_match(entry: AuditLog, request: dict[str, Any]) -> bool:
    if request["event_types"] is not None and entry.event not in request["event_types"]:
        return False
    if request["user_email"] is not None and (
        entry.actor_email is None or request["user_email"].lower() not in entry.actor_email.lower()
    ):
        return False
    if request["time_from"] is not None and entry.time < request["time_from"]:
        return False
    if request["time_to"] is not None and entry.time > request["time_to"]:
        return False
    if request["ip"] is not None and not brute_ip(entry.ip, request["ip"]):
        return False
    if request["search"] is not None:
        wanted = brute_words(request["search"])
        if not wanted <= brute_words(entry.details):
            return False
    return request["details"] is None or jsonb_contains(entry.details, request["details"])


@st.composite
def requests(draw: st.DrawFn, data: Data) -> dict[str, Any]:
    times = [None, *(T0 + timedelta(minutes=m) for m in (0, 5, 400, 2000, 4000, 9000))]
    time_from, time_to = draw(st.sampled_from(times)), draw(st.sampled_from(times))
    if time_from is not None and time_to is not None and time_from > time_to:
        time_from, time_to = time_to, time_from
    # Containments: parts of real entries' details (so some match), and random ones.
    parts = [{key: value} for entry in data.entries[:40] for key, value in entry.details.items()]
    containment = (
        st.sampled_from(parts)
        | st.builds(lambda seed: _details(random.Random(seed)), st.integers(0, 10_000))
        | st.sampled_from([{"tags": []}, {"x": [7]}, {"note": "alpha"}, {"x": {"x": "vm"}}])
    )
    # Words in any case: the search ignores it.
    word = st.builds(lambda w, case: case(w), st.sampled_from(WORDS), st.sampled_from(CASES))
    search = st.lists(word, min_size=1, max_size=3).map(" ".join)
    request = {
        "event_types": draw(st.none() | st.lists(st.sampled_from(EVENTS), min_size=1, max_size=2)),
        "user_email": draw(st.sampled_from([None, "ann", "EXAMPLE"])),
        "time_from": time_from,
        "time_to": time_to,
        "ip": draw(st.none() | st.sampled_from(RANGES)),
        "search": draw(st.none() | search),
        "details": draw(st.none() | containment),
    }
    if all(request[k] is None for k in ("ip", "search", "details")):
        request["ip"] = draw(st.sampled_from(RANGES))
    return request


def _filters(request: dict[str, Any]) -> AuditLogFilter:
    return AuditLogFilter.build(**request)


def test_every_reader_selects_what_the_brute_force_selects(data: Data) -> None:
    by_id = {entry.pk: entry for entry in data.entries}

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(request=requests(data))
    def check(request: dict[str, Any]) -> None:
        note(repr(request))
        filters = _filters(request)
        expected = sorted(
            (e for e in data.entries if brute_match(e, request)),
            key=lambda e: (e.time, e.pk),
            reverse=True,
        )
        expected_ids = [e.pk for e in expected]
        listed = list(
            audit_log_list(organization=data.org, filters=filters).values_list("id", flat=True)
        )
        assert listed == expected_ids
        assert audit_log_count(organization=data.org, filters=filters) == len(expected)
        for first in (3, 100):
            page = audit_log_page(
                organization=data.org, filters=filters, first=first, with_total=True
            )
            rows = audit_log_page_rows(
                organization=data.org, filters=filters, first=first, with_total=True
            )
            assert [e.pk for e in page.entries] == expected_ids[:first]
            assert [r.id for r in rows.entries] == expected_ids[:first]
            assert page.total_count == rows.total_count == len(expected)
            assert page.has_next_page == rows.has_next_page == (len(expected) > first)
        # The live stream's test, with the words as PostgreSQL splits them.
        search_words = None
        with connection.cursor() as cursor:
            if filters.search is not None:
                cursor.execute(SEARCH_WORDS_SQL, [filters.search])
                search_words = frozenset(cursor.fetchone()[0])
            cursor.execute(
                f"SELECT id, {WORDS_SQL.format(details='details')}, UPPER(actor_email) "
                "FROM audit_log WHERE organization_id = %s",
                [data.org.pk],
            )
            streamed = {
                pk
                for pk, words, email_upper in cursor.fetchall()
                if filters.matches(
                    event=by_id[pk].event,
                    actor_email_upper=email_upper,
                    time=by_id[pk].time,
                    user_email_upper=filters.user_email.upper() if filters.user_email else None,
                    ip=by_id[pk].ip,
                    details=by_id[pk].details,
                    words=words,
                    search_words=search_words,
                )
            }
        assert streamed == set(expected_ids)

    check()


def test_mapped_addresses_are_found_by_their_ipv4_range(data: Data) -> None:
    found = {
        text: set(
            audit_log_list(organization=data.org, filters=AuditLogFilter.build(ip=text))
            .filter(event=E.SESSION_EXPIRED)
            .values_list("ip", flat=True)
        )
        for text in (
            "203.0.113.0/24",
            "::ffff:203.0.113.0/120",
            "::ffff:203.0.113.9",
            "2001:db8::/32",
        )
    }
    assert found["203.0.113.0/24"] == {"203.0.113.9"}
    assert found["::ffff:203.0.113.0/120"] == {"203.0.113.9"}
    assert found["::ffff:203.0.113.9"] == {"203.0.113.9"}
    assert found["2001:db8::/32"] == set()


@pytest.mark.parametrize(
    ("text", "meaning"),
    [
        ("203.0.113.7", "203.0.113.7/32"),
        (" 203.0.113.77/24 ", "203.0.113.0/24"),
        ("2001:DB8::1/32", "2001:db8::/32"),
        ("::ffff:203.0.113.0/120", "203.0.113.0/24"),
        ("::ffff:0:0/96", "0.0.0.0/0"),
        ("::ffff:0:0/95", "::fffe:0:0/95"),
        ("", None),
    ],
)
def test_an_ip_filter_means_a_network(text: str, meaning: str | None) -> None:
    network = ip_filter(text)
    assert (str(network) if network is not None else None) == meaning


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ip": "nope"}, "is not an IPv4 or IPv6 address"),
        ({"ip": "203.0.113.0/33"}, "is not an IPv4 or IPv6 address"),
        ({"ip": "256.1.1.1"}, "is not an IPv4 or IPv6 address"),
        ({"ip": "fe80::1%eth0"}, "is not an IPv4 or IPv6 address"),
        ({"ip": "1" * 65}, "at most 64"),
        ({"ip": "203.0.113.\x00"}, "is not an IPv4 or IPv6 address"),
        ({"search": "vm\x00"}, "NUL"),
        ({"search": "vm\ud800"}, "lone surrogate"),
        ({"search": "!!! ---"}, "must contain a word"),
        ({"search": "x" * 201}, "at most 200"),
        ({"details": ["vm"]}, "must be a JSON object"),
        ({"details": "vm"}, "must be a JSON object"),
        ({"details": 7}, "must be a JSON object"),
        ({"details": {"k\x00": 1}}, "NUL"),
        ({"details": {"k": "\udfff"}}, "lone surrogate"),
        ({"details": {"k": float("inf")}}, "NaN, Infinity"),
        ({"details": {"k": "x" * 5000}}, "at most 4096 bytes"),
        ({"details": json.loads("[" * 0 + '{"a":' * 9 + "1" + "}" * 9)}, "nest more than 8"),
    ],
)
def test_bad_filter_values_are_refused_with_a_reason(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        AuditLogFilter.build(**fields)


def test_blank_values_mean_no_filter() -> None:
    assert AuditLogFilter.build(ip="  ", search=" \t ", details={}) == AuditLogFilter()
    assert AuditLogFilter.build(search="  VM   west ").search == "VM west"


def test_a_total_past_the_limit_is_refused_and_the_page_still_reads(
    data: Data, settings: Any
) -> None:
    settings.AUDIT_LOG_SEARCH_TOTAL_MAX = 5
    filters = AuditLogFilter.build(ip="0.0.0.0/0")
    matching = audit_log_list(organization=data.org, filters=filters).count()
    assert matching > 5
    with pytest.raises(TotalTooCostly):
        audit_log_page_rows(organization=data.org, filters=filters, first=2, with_total=True)
    with pytest.raises(TotalTooCostly):
        audit_log_page(organization=data.org, filters=filters, first=2, with_total=True)
    with pytest.raises(TotalTooCostly):
        audit_log_count(organization=data.org, filters=filters)
    assert len(audit_log_page_rows(organization=data.org, filters=filters, first=2).entries) == 2
    settings.AUDIT_LOG_SEARCH_TOTAL_MAX = matching  # exactly the limit: counted
    assert audit_log_count(organization=data.org, filters=filters) == matching


def test_a_search_of_no_words_matches_nothing(data: Data) -> None:
    """PostgreSQL splits some text into no words at all; such a search (which the filter's
    check refuses when it can tell) selects nothing, in SQL as in the live stream's test,
    rather than every entry of the organization."""
    filters = AuditLogFilter(search="!!! ---")
    assert not audit_log_list(organization=data.org, filters=filters).exists()
    assert audit_log_count(organization=data.org, filters=filters) == 0
    assert (
        audit_log_page_rows(organization=data.org, filters=filters, with_total=True).entries == []
    )
    entry = data.entries[0]
    assert not filters.matches(
        event=entry.event,
        actor_email_upper=None,
        time=entry.time,
        user_email_upper=None,
        words=["vm"],
        search_words=frozenset(),
    )
