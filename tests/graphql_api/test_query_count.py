"""The SQL cost of a request is constant: no query per entry (N+1), none per user, and
totalCount rides in the page's own statement (as sums over rollups). Counts are after the
rate limiter's statements, which some requests make first."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from audit.events import AuditEventType as E
from audit.services import audit_log_record
from core.models import Organization, User
from tests.graphql_api.conftest import GraphQLClient, data_of

pytestmark = pytest.mark.django_db

WITH_TOTAL = """
query($first: Int) { auditLogs(first: $first) {
  totalCount pageInfo { hasNextPage endCursor }
  edges { cursor node { id event ip details time user { id email name } } }
} }
"""
WITHOUT_TOTAL = WITH_TOTAL.replace("totalCount", "")
TOTAL_ONLY = "{ auditLogs { totalCount } }"


@pytest.fixture
def many_actors(admin: User, make_user: Callable[..., User]) -> Organization:
    org = admin.organization
    assert org is not None
    for n in range(60):
        actor = make_user(org)
        audit_log_record(organization=org, event=E.USER_LOGIN, actor=actor, ip=f"203.0.113.{n}")
    return org


def statements(gql: GraphQLClient, query: str, first: int | None = None) -> list[str]:
    """The statements of one request, after the rate limiter's (core/rate_limit.py),
    which come first when it adds its counts to PostgreSQL (at most every FLUSH_SECONDS
    per key): one upsert, plus one delete of past windows at most once per window."""
    with CaptureQueriesContext(connection) as captured:
        data = data_of(gql.post(query, {"first": first} if first is not None else {}))
    if first is not None:
        assert len(data["auditLogs"]["edges"]) == first
    sql = [q["sql"] for q in captured.captured_queries]
    counted = [s for s in sql if "rate_limit_window" in s]
    assert sum(s.lstrip().startswith("INSERT") for s in counted) <= 1
    assert sql[: len(counted)] == counted and len(counted) <= 2
    return sql[len(counted) :]


@pytest.mark.parametrize("query", [WITH_TOTAL, WITHOUT_TOTAL])
def test_a_token_request_costs_the_same_statements_whatever_the_page_size(
    admin_gql: GraphQLClient, many_actors: Organization, query: str
) -> None:
    admin_gql.post(TOTAL_ONLY)  # records the token's first use (a write, once per interval)
    small = statements(admin_gql, query, first=2)
    large = statements(admin_gql, query, first=50)
    assert len(small) == 2  # the token with its user, then the page
    assert "core_apitoken" in small[0]
    assert "audit_log" in small[1]
    if settings.GRAPHQL_COMPILED_READS:
        # From then on the process remembers the token, and the page's own statement
        # checks that nothing about it changed (core/authentication.py): one statement.
        assert len(large) == 1 and "core_apitoken" in large[0] and "audit_log" in large[0]
    else:
        assert len(large) == 2
    assert ("audit_total" in large[-1]) == ("totalCount" in query)


def test_session_request_costs_three_statements(admin: User, many_actors: Organization) -> None:
    client = Client()
    client.force_login(admin)
    gql = GraphQLClient(client)
    small, large = statements(gql, WITH_TOTAL, first=3), statements(gql, WITH_TOTAL, first=60)
    assert len(small) == len(large) == 3  # the session, the user with role and org, the page


def test_the_total_alone_reads_rollups_not_entries(
    admin_gql: GraphQLClient, many_actors: Organization
) -> None:
    admin_gql.post(TOTAL_ONLY)
    sql = statements(admin_gql, TOTAL_ONLY)
    assert len(sql) == 2
    assert "audit_count_month" in sql[1] and '"audit_log"' not in sql[1]


def test_the_total_is_counted_once_per_request(
    admin_gql: GraphQLClient, many_actors: Organization
) -> None:
    admin_gql.post(TOTAL_ONLY)
    twice = "{ a: auditLogs(first: 1) { totalCount } b: auditLogs(first: 2) { totalCount edges { cursor } } }"
    with CaptureQueriesContext(connection) as captured:
        data = data_of(admin_gql.post(twice))
    assert data["a"]["totalCount"] == data["b"]["totalCount"]
    counts = [q["sql"] for q in captured.captured_queries if "audit_total" in q["sql"]]
    assert len(counts) == 1


def test_unselected_columns_are_not_read(
    admin_gql: GraphQLClient, many_actors: Organization
) -> None:
    admin_gql.post(TOTAL_ONLY)
    sql = statements(admin_gql, "{ auditLogs(first: 5) { edges { node { event } } } }")
    page = sql[1]
    assert '"audit_log"."event"' in page
    assert '"audit_log"."details"' not in page
    assert '"audit_log"."actor_email"' not in page
