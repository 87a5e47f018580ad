"""The ip, search and details filters through the API: auditLogs (both read paths),
coded refusals of bad values, another organization's matching entries never shown, the
refused total, and a log stream keeping its search filter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client, override_settings

from audit.events import AuditEventType as E
from audit.services import AuditEntryDraft, audit_log_bulk_create
from core.models import ApiTokenScope, Organization, User
from core.services import api_token_create
from tests.graphql_api.conftest import GraphQLClient, data_of, error_codes

pytestmark = pytest.mark.django_db

QUERY = """
query Searched($filter: AuditLogFilter) {
  auditLogs(first: 100, filter: $filter) {
    totalCount
    edges { node { ip details } }
  }
}
"""
PAGE_ONLY = """
query Searched($filter: AuditLogFilter) {
  auditLogs(first: 2, filter: $filter) { edges { node { ip } } pageInfo { hasNextPage } }
}
"""
T0 = datetime(2026, 7, 1, tzinfo=UTC)
ADDRESSES = ["203.0.113.5", "203.0.113.77", "203.0.114.5", "2001:db8::7", None]


@pytest.fixture
def entries(admin: User, other_paid_org: Organization) -> None:
    org = admin.organization
    assert org is not None
    for organization in (org, other_paid_org):
        audit_log_bulk_create(
            organization=organization,
            drafts=[
                AuditEntryDraft(
                    event=E.RESOURCE_UPDATED,
                    time=T0 + timedelta(minutes=n),
                    ip=ADDRESSES[n % len(ADDRESSES)],
                    details={
                        "resource": f"vm-{n % 4}",
                        "note": "Rebooted by ops" if n % 3 == 0 else "resized",
                        "org": organization.slug,
                    },
                )
                for n in range(40)
            ],
        )


def _run(gql: GraphQLClient, **fields: Any) -> tuple[int, list[dict[str, Any]]]:
    connection = data_of(gql.post(QUERY, {"filter": fields}))["auditLogs"]
    return connection["totalCount"], [edge["node"] for edge in connection["edges"]]


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "strawberry"])
def test_each_filter_and_their_combination(
    entries: None, admin: User, admin_gql: GraphQLClient, compiled: bool
) -> None:
    slug = admin.organization.slug  # type: ignore[union-attr]
    with override_settings(GRAPHQL_COMPILED_READS=compiled):
        total, nodes = _run(admin_gql, ip="203.0.113.0/24")
        assert total == len(nodes) == 16
        assert {n["ip"] for n in nodes} == {"203.0.113.5", "203.0.113.77"}
        total, nodes = _run(admin_gql, ip="2001:db8::/32")
        assert total == 8 and {n["ip"] for n in nodes} == {"2001:db8::7"}
        total, nodes = _run(admin_gql, search="REBOOTED ops")
        assert total == 14 and all(n["details"]["note"] == "Rebooted by ops" for n in nodes)
        total, nodes = _run(admin_gql, details={"resource": "vm-1"})
        assert total == 10 and all(n["details"]["resource"] == "vm-1" for n in nodes)
        total, nodes = _run(
            admin_gql,
            ip="203.0.113.5",
            search="rebooted",
            details={"resource": "vm-0"},
            eventType="RESOURCE_UPDATED",
            **{"from": T0.isoformat(), "to": (T0 + timedelta(minutes=39)).isoformat()},
        )
        expected = [
            n
            for n in range(40)
            if n % 5 == 0 and n % 3 == 0 and n % 4 == 0  # 203.0.113.5, rebooted, vm-0
        ]
        assert total == len(nodes) == len(expected) == 1
        # Never another organization's entries, though they match as well.
        assert all(n["details"]["org"] == slug for n in nodes)
        total, nodes = _run(admin_gql, search=slug)
        # (The organization's own entries, such as the token's creation, may name it too.)
        tagged = [n["details"]["org"] for n in nodes if "org" in n["details"]]
        assert total == len(nodes) and tagged == [slug] * 40


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ip": "203.0.113.0/40"}, "is not an IPv4 or IPv6 address or CIDR range"),
        ({"ip": "x" * 100}, "ip must be at most 64 characters"),
        ({"search": "ok\u0000"}, "search must not contain the NUL character"),
        ({"search": "..."}, "search must contain a word"),
        ({"details": [1, 2]}, "details must be a JSON object"),
        ({"details": "vm-1"}, "details must be a JSON object"),
        ({"details": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}}, "nest"),
        ({"details": {"k": "v" * 5000}}, "at most 4096 bytes"),
        ({"details": {"k": 10**400}}, None),  # a number PostgreSQL's numeric holds
    ],
)
def test_bad_values_are_bad_user_input(
    entries: None, admin_gql: GraphQLClient, fields: dict[str, Any], message: str | None
) -> None:
    body = admin_gql.post(QUERY, {"filter": fields})
    if message is None:
        assert data_of(body)["auditLogs"]["totalCount"] == 0
        return
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert message in body["errors"][0]["message"]


def test_a_lone_surrogate_in_a_search_is_bad_user_input(
    entries: None, admin_gql: GraphQLClient
) -> None:
    # JSON's \\ud800 escape decodes to a lone surrogate: sent as raw text.
    response = admin_gql.client.post(
        "/graphql/",
        data='{"query": "query($f: AuditLogFilter) { auditLogs(filter: $f) { totalCount } }",'
        ' "variables": {"f": {"search": "vm\\ud800", "details": {"k\\udfff": 1}}}}',
        content_type="application/json",
        headers={"Authorization": f"Bearer {admin_gql.token}"},
    )
    assert response.status_code == 200
    body = response.json()
    assert error_codes(body) == ["BAD_USER_INPUT"] and "surrogate" in body["errors"][0]["message"]


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "strawberry"])
def test_a_total_past_the_limit_is_refused_with_a_code_and_pages_still_read(
    entries: None, admin_gql: GraphQLClient, compiled: bool
) -> None:
    with override_settings(AUDIT_LOG_SEARCH_TOTAL_MAX=10, GRAPHQL_COMPILED_READS=compiled):
        body = admin_gql.post(QUERY, {"filter": {"ip": "203.0.0.0/16"}})
        assert error_codes(body) == ["TOTAL_COUNT_TOO_COSTLY"]
        (error,) = body["errors"]
        assert error["extensions"]["limit"] == 10 and "more than 10 entries" in error["message"]
        page = data_of(admin_gql.post(PAGE_ONLY, {"filter": {"ip": "203.0.0.0/16"}}))
        assert len(page["auditLogs"]["edges"]) == 2 and page["auditLogs"]["pageInfo"]["hasNextPage"]
        # Within the limit, counted exactly; filters the rollups answer are never limited.
        total, _ = _run(admin_gql, ip="203.0.113.77")
        assert total == 8
        total, _ = _run(admin_gql, eventType="RESOURCE_UPDATED")
        assert total == 40


def test_a_log_stream_keeps_its_search_filter(admin: User) -> None:
    token = api_token_create(user=admin, name="streams", scopes=(ApiTokenScope.STREAMS_MANAGE,))
    admin_gql = GraphQLClient(Client(), token=token[1])
    created = data_of(
        admin_gql.post(
            """mutation($input: AuditLogStreamInput!) {
              createAuditLogStream(input: $input) {
                stream { filter { ip search details eventTypes } } } }""",
            {
                "input": {
                    "name": "siem",
                    "url": "https://siem.example.com/in",
                    "format": "JSON",
                    "filter": {
                        "ip": "::ffff:203.0.113.0/120",
                        "search": "  vm-12   ",
                        "details": {"resource": "vm-12"},
                    },
                }
            },
        )
    )["createAuditLogStream"]["stream"]["filter"]
    assert created == {
        "ip": "203.0.113.0/24",
        "search": "vm-12",
        "details": {"resource": "vm-12"},
        "eventTypes": None,
    }
    body = admin_gql.post(
        """mutation($input: AuditLogStreamInput!) {
          createAuditLogStream(input: $input) { secret } }""",
        {
            "input": {
                "name": "bad",
                "url": "https://siem.example.com/in",
                "format": "JSON",
                "filter": {"ip": "nope"},
            }
        },
    )
    assert error_codes(body) == ["BAD_USER_INPUT"]
