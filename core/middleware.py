"""Django's stock middleware, without a thread hop per hook under ASGI.

Under ASGI, Django runs each hook of a sync middleware (``process_request``,
``process_response``, ``process_view``) through ``sync_to_async``: a trip to a worker
thread and back. With the eight middlewares of a request that was 13 trips; with no
middleware at all, `{ __typename }` took 1.4 ms instead of 3.1 ms (profiling notes in
docs/PERFORMANCE.md). The hooks of these middlewares do
no I/O -- they read and write headers, cookies and lazy objects -- so they run inline on
the event loop here. The exceptions go to a thread only when they can touch the
database: ``SessionMiddleware`` when the session changed (to save it), and
``MessageMiddleware`` when there are messages to store (they may spill into the session).

To add a middleware here, check that none of its hooks can block (database, files,
network); otherwise leave Django's own in ``MIDDLEWARE``.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.middleware import clickjacking, common, csrf, security


class InlineHooks:
    """Run ``process_request`` / ``process_response`` inline when serving ASGI."""

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)  # type: ignore[attr-defined]
        if hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response


class SecurityMiddleware(InlineHooks, security.SecurityMiddleware):
    pass


class CommonMiddleware(InlineHooks, common.CommonMiddleware):
    pass


class CsrfViewMiddleware(InlineHooks, csrf.CsrfViewMiddleware):
    # CSRF_USE_SESSIONS is off, so the token comes from a cookie, never the database.
    async def process_view(  # type: ignore[override]
        self, request: HttpRequest, callback: Any, callback_args: Any, callback_kwargs: Any
    ) -> HttpResponseBase | None:
        return super().process_view(request, callback, callback_args, callback_kwargs)


class AuthenticationMiddleware(InlineHooks, auth.AuthenticationMiddleware):
    pass  # only sets the lazy request.user and request.auser


class MessageMiddleware(messages.MessageMiddleware):
    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        self.process_request(request)  # a lazy message store
        response = await self.get_response(request)  # type: ignore[misc]
        storage = getattr(request, "_messages", None)
        if storage is not None and (storage.used or storage.added_new):
            # Storing messages may spill from the cookie into the session, which may
            # have to be loaded from the database first.
            return await sync_to_async(self.process_response, thread_sensitive=True)(
                request, response
            )
        return self.process_response(request, response)


class XFrameOptionsMiddleware(InlineHooks, clickjacking.XFrameOptionsMiddleware):
    pass


class SessionMiddleware(sessions.SessionMiddleware):
    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        self.process_request(request)  # a lazy session store, loaded on first use
        response = await self.get_response(request)  # type: ignore[misc]
        session = getattr(request, "session", None)
        saves = session is not None and (session.modified or settings.SESSION_SAVE_EVERY_REQUEST)
        if saves:
            return await sync_to_async(self.process_response, thread_sensitive=True)(
                request, response
            )
        return self.process_response(request, response)
