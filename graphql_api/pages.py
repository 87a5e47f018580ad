"""The Audit Logs page, ``/audit-logs/``: the seed's screen, served by this backend.

The view only serves the shell (graphql_api/templates/graphql_api/audit_logs.html) to a
signed-in browser (others go to the sign-in page and come back); the page itself reads
everything through the public GraphQL API with the session (static/graphql_api/
audit-logs.js), so who may see the log is the API's rule and its error codes, not a
second one here. The response carries the pages' Content-Security-Policy (core/csp.py)
and sets the CSRF cookie that the page's POSTs send back.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render

from core.csp import page_csp


@login_required
def audit_logs_page(request: HttpRequest) -> HttpResponse:
    get_token(request)
    response = render(request, "graphql_api/audit_logs.html")
    page_csp(response)
    return response
