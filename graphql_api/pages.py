"""The Audit Logs page, ``/audit-logs/``: the seed's screen, served by this backend; and
the JSON Schema of event details, ``/schemas/audit-details.json``.

The view only serves the shell (graphql_api/templates/graphql_api/audit_logs.html) to a
signed-in browser (others go to the sign-in page and come back); the page itself reads
everything through the public GraphQL API with the session (static/graphql_api/
audit-logs.js), so who may see the log is the API's rule and its error codes, not a
second one here. The response carries the pages' Content-Security-Policy (core/csp.py)
and sets the CSRF cookie that the page's POSTs send back.
"""

from __future__ import annotations

from functools import cache

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.views.decorators.http import require_safe

from audit.details import json_schema_text
from core.csp import page_csp


@login_required
def audit_logs_page(request: HttpRequest) -> HttpResponse:
    get_token(request)
    response = render(request, "graphql_api/audit_logs.html")
    page_csp(response)
    return response


@cache
def _details_schema() -> bytes:
    return json_schema_text().encode()


@require_safe
def details_schema(request: HttpRequest) -> HttpResponse:
    """The JSON Schema of every event type's details (audit/details.py), the same text as
    the repository's audit-details.schema.json. Public: it describes the API, not data."""
    response = HttpResponse(_details_schema(), content_type="application/schema+json")
    response["Cache-Control"] = "public, max-age=3600"
    response["Access-Control-Allow-Origin"] = "*"
    return response
