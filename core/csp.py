"""The Content-Security-Policy of this backend's own pages (the Audit Logs page, GraphiQL,
sign-in): scripts, styles, fonts and connections from this origin only, so that a value
rendered by mistake as markup could not run, and no request leaves the server's origin.
Styles also allow inline ``style`` attributes, which React (GraphiQL) sets; fonts and
images also ``data:`` URIs, which GraphiQL's stylesheet embeds.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http.response import HttpResponseBase

PAGE_CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def page_csp(response: HttpResponseBase) -> HttpResponseBase:
    response["Content-Security-Policy"] = PAGE_CSP
    return response


def with_page_csp(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """``view``, its responses carrying the pages' policy (for views not written here)."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> HttpResponseBase:
        return page_csp(view(*args, **kwargs))

    return wrapped
