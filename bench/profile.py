"""In-process timings behind the profiling notes of docs/PERFORMANCE.md:
``python -m bench.profile`` (after ``make bench`` has built the 1M dataset).

Each figure is the mean of 200 calls (50 for a schema execution) after a warm-up, in one
process, on the ``<name>_bench`` database:

* the API token lookup (core/authentication.py);
* a year's total, written as SQL (audit/totals.py), run alone;
* the page + total of S2 from the selector;
* the same page as plain rows, the statement written directly (audit/page_sql.py), and
  the pages + totals of S4 (an email search) and S6 (every filter) the same way;
* recording one entry (``audit_log_record`` in a transaction rolled back, so the bench
  data stays as built): the CPU time of this process per entry;
* one trip to a worker thread (``sync_to_async``, not thread-sensitive): what the direct
  route pays once per request to run its synchronous database work;
* executing the S1 and S8 documents against the schema, without HTTP, with the caller
  already resolved;
* the compiled plan of S1 (graphql_api/compiled.py), caller included (a remembered token);
* S0 and S1 through the ASGI application in-process (CPU time of this process per
  request): through Django's handler alone, and as served (the direct route);
* graphql-core alone executing the S1 document over the S1 response itself: the schema
  of schema.graphql, default resolvers reading the response's dicts. This is the cost of
  the GraphQL execution algorithm for that selection, with no Strawberry, Django or
  database work: a floor under any server written on graphql-core.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import graphql
from asgiref.sync import sync_to_async

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


def _asgi_cpu_ms(app: Any, body: bytes, secret: str, runs: int = 300) -> float:
    """CPU time of this process per POST /graphql/ sent to an ASGI application."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/graphql/", "raw_path": b"/graphql/", "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 5555), "server": ("127.0.0.1", 8000),
        "headers": [
            (b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {secret}".encode()),
            (b"content-length", str(len(body)).encode()),
        ],
    }  # fmt: skip

    async def once() -> None:
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        sent: list[Any] = []

        async def receive() -> Any:
            if messages:
                return messages.pop()
            await asyncio.sleep(3600)  # the client stays; Django stops listening when done
            return {"type": "http.disconnect"}

        async def send(message: Any) -> None:
            sent.append(message)

        await app(scope, receive, send)
        assert sent[0]["status"] == 200, sent

    async def many() -> float:
        for _ in range(20):
            await once()
        started = time.process_time()
        for _ in range(runs):
            await once()
        return (time.process_time() - started) / runs * 1000

    return asyncio.run(many())


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
    from bench.dataset import DATASET_VERSION
    from bench.shapes import EMAIL_SEARCH, QUERY_PAGE, QUERY_TOTAL
    from core.authentication import BearerCredentials, api_token_authenticate
    from core.models import User
    from core.services import api_token_create
    from graphql_api import compiled
    from graphql_api.context import Caller, GraphQLContext
    from graphql_api.schema import schema

    admin = User.objects.select_related("role", "organization").get(
        email=f"admin@bench{DATASET_VERSION}-1000000.test"
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

    columns = ("id", "time", "event", "ip", "actor_id", "actor_email", "actor_name", "details_json")
    rows = _mean_ms(
        lambda: audit_log_page(
            organization=organization, first=50, with_total=True, columns=columns
        )
    )
    print(f"page of 50 + total as plain rows (page_sql): {rows:.3f} ms")
    # S6's window, as bench/shapes.py writes it.
    since, until = now - timedelta(days=60, minutes=17), now - timedelta(days=30, minutes=43)
    for name, search in (
        ("S4, userEmail", AuditLogFilter.build(user_email=EMAIL_SEARCH)),
        (
            "S6, every filter",
            AuditLogFilter.build(
                event_type="USER_LOGIN", user_email=EMAIL_SEARCH, time_from=since, time_to=until
            ),
        ),
    ):
        rows = _mean_ms(
            lambda f=search: audit_log_page(  # type: ignore[misc]
                organization=organization, filters=f, first=50, with_total=True, columns=columns
            )
        )
        print(f"page of 50 + total as plain rows, {name} (page_sql): {rows:.3f} ms")

    from django.db import transaction

    from audit.services import audit_log_record

    def record_one() -> None:
        with transaction.atomic():
            audit_log_record(
                organization=organization,
                event="RESOURCE_UPDATED",
                actor=admin,
                ip="203.0.113.9",
                details={"resource": "vm-12"},
            )
            transaction.set_rollback(True)  # the bench data stays as built

    record_one()
    cpu = time.process_time()
    for _ in range(500):
        record_one()
    print(
        "recording one entry (audit_log_record, rolled back), CPU of this process: "
        f"{(time.process_time() - cpu) / 500 * 1000:.3f} ms"
    )

    hop = sync_to_async(lambda: None, thread_sensitive=False)
    took = asyncio.run(_mean_ms_async(hop, runs=2000))
    print(f"one worker-thread trip (sync_to_async, thread_sensitive=False): {took * 1000:.0f} us")

    prepared = compiled.prepare(query=QUERY_PAGE, variables={}, operation_name=None)
    assert prepared is not None

    def run_plan() -> Any:
        bearer = RequestFactory().post("/graphql/", HTTP_AUTHORIZATION=f"Bearer {secret}")
        answer = prepared.run(GraphQLContext(request=bearer, response=HttpResponse()))
        assert answer is not None
        return answer

    print(f"compiled plan of S1, caller included: {_mean_ms(run_plan):.3f} ms")

    from core import asgi

    for name, document in (("S0", "{ __typename }"), ("S1", QUERY_PAGE)):
        for label, app in (
            ("Django's handler", asgi.http_application),
            ("as served", asgi.application),
        ):
            cpu = _asgi_cpu_ms(app, json.dumps({"query": document}).encode(), secret)
            print(f"{name} through the ASGI application, {label}: {cpu:.3f} ms of CPU")

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
