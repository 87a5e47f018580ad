"""In-process timings behind the profiling notes of docs/PERFORMANCE.md:
``python -m bench.profile`` (after ``make bench`` has built the 1M dataset).

Each figure is the mean of 200 calls (50 for a schema execution) after a warm-up, in one
process, on the ``<name>_bench`` database:

* the API token lookup (core/authentication.py);
* a year's total, written as SQL (audit/totals.py), run alone;
* the page + total of S2 from the selector;
* executing the S1 and S8 documents against the schema, without HTTP, with the caller
  already resolved;
* graphql-core alone executing the S1 document over the S1 response itself: the schema
  of schema.graphql, default resolvers reading the response's dicts. This is the cost of
  the GraphQL execution algorithm for that selection, with no Strawberry, Django or
  database work: a floor under any server written on graphql-core.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import graphql

from bench.__main__ import ROOT, bench_database_urls


def _mean_ms(call: Callable[[], Any], runs: int = 200) -> float:
    call()
    started = time.perf_counter()
    for _ in range(runs):
        call()
    return (time.perf_counter() - started) / runs * 1000


async def _mean_ms_async(call: Callable[[], Awaitable[Any]], runs: int = 50) -> float:
    for _ in range(3):
        await call()
    started = time.perf_counter()
    for _ in range(runs):
        await call()
    return (time.perf_counter() - started) / runs * 1000


def main() -> None:
    bench_url, _, _server = bench_database_urls()
    os.environ.update(DATABASE_URL=bench_url, DEBUG="0")
    os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)  # the bench database may predate a migration
    from django.http import HttpResponse
    from django.test import RequestFactory

    from audit.filters import AuditLogFilter
    from audit.selectors import audit_log_count, audit_log_page
    from bench.shapes import QUERY_PAGE, QUERY_TOTAL
    from core.authentication import BearerCredentials, api_token_authenticate
    from core.models import User
    from core.services import api_token_create
    from graphql_api.context import Caller, GraphQLContext
    from graphql_api.schema import schema

    admin = User.objects.select_related("role", "organization").get(
        email="admin@bench-1000000.test"
    )
    organization = admin.organization
    assert organization is not None
    secret = api_token_create(user=admin, name="profile")[1]
    now = datetime.now(UTC)
    year = AuditLogFilter.build(time_from=now - timedelta(days=365), time_to=now)

    print(
        f"token lookup: {_mean_ms(lambda: api_token_authenticate(BearerCredentials(secret))):.3f} ms"
    )
    print(
        f"total, last 365 days: {_mean_ms(lambda: audit_log_count(organization=organization, filters=year)):.3f} ms"
    )
    print(
        "page of 50 + total (selector): "
        f"{_mean_ms(lambda: audit_log_page(organization=organization, first=50, with_total=True)):.3f} ms"
    )

    request = RequestFactory().post("/graphql/")

    async def execute(document: str) -> Any:
        context = GraphQLContext(request=request, response=HttpResponse())
        context._caller = Caller(user=admin)
        result = await schema.execute(document, context_value=context)
        assert not result.errors, result.errors
        return result.data

    for name, document in (("S1 page of 50", QUERY_PAGE), ("S8 total only", QUERY_TOTAL)):
        took = asyncio.run(_mean_ms_async(lambda d=document: execute(d)))  # type: ignore[misc]
        print(f"schema execution, {name}: {took:.3f} ms")

    response = asyncio.run(execute(QUERY_PAGE))
    plain = graphql.build_schema((ROOT / "schema.graphql").read_text())
    parsed = graphql.parse(QUERY_PAGE)
    assert not graphql.validate(plain, parsed)
    check = graphql.execute(plain, parsed, root_value=response)
    assert not isinstance(check, Awaitable) and check.data == response, "not the same response"
    took = _mean_ms(lambda: graphql.execute(plain, parsed, root_value=response))
    print(f"graphql-core alone, S1 document over its own response: {took:.3f} ms")


if __name__ == "__main__":
    main()
