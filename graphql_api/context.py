"""Per-request GraphQL context: who is calling, resolved once and only when a field asks.

Credentials, in order:

1. ``Authorization: Bearer <token>``: an API token (core/authentication.py). When the header
   is present it alone decides: a session cookie sent alongside is ignored, and a bad
   token is an error, never a fallback to anonymous or to the session.
2. The Django session cookie (browser, GraphiQL). CSRF is checked by the view for
   cookie-authenticated POSTs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.models import AnonymousUser
from django.db import close_old_connections
from strawberry.django.context import StrawberryDjangoContext
from strawberry.types import Info

from core.authentication import (
    CredentialsGuard,
    MalformedAuthorization,
    api_token_authenticate,
    api_token_remembered,
    bearer_credentials,
)
from core.models import ApiToken, User
from core.predicates import user_is_authenticated


@dataclass(frozen=True)
class Caller:
    """The authenticated user (role and organization loaded), the token used if any, and,
    when credentials were sent but refused, why."""

    user: User | None = None
    token: ApiToken | None = None
    rejected: str | None = None


@dataclass
class GraphQLContext(StrawberryDjangoContext):
    _caller: Caller | None = None
    # Request-scoped results, so that a value asked for twice in one request (say, by two
    # aliases of the same field) is computed once. Keys are chosen by the resolvers.
    memo: dict[Any, Any] = field(default_factory=dict)
    # The payload of a WebSocket's connection_init message (graphql_api/websocket.py).
    connection_params: Any = None
    # True for WebSocket operations: no Django request wraps them, so their database
    # work must hand its connection back itself (core.database.run_outside_request).
    outside_request_cycle: bool = False
    # Set by caller_now(remembered=True) when the caller came from memory.
    caller_guard: CredentialsGuard | None = None

    @property
    def resolved_caller(self) -> Caller | None:
        """The caller, if ``caller()`` has resolved it already (else None)."""
        return self._caller

    async def caller(self) -> Caller:
        if self._caller is None:
            if self.outside_request_cycle:
                await sync_to_async(close_old_connections)()
            try:
                self._caller = await resolve_caller(self.request)
            finally:
                if self.outside_request_cycle:
                    await sync_to_async(close_old_connections)()
        return self._caller

    def caller_now(self, *, remembered: bool = False) -> Caller:
        """``caller()`` for synchronous code (the compiled read path runs in a worker
        thread, graphql_api/compiled.py): the same caller, resolved at most once. With
        ``remembered``, a token may come from memory (core/authentication.py), and then
        ``caller_guard`` is the condition the next statement must check."""
        if self._caller is None:
            self._caller, self.caller_guard = resolve_caller_now(
                self.request, remembered=remembered
            )
        return self._caller

    def forget_caller(self) -> None:
        """The caller turned out stale (``StaleCredentials``): look it up again."""
        self._caller = None
        self.caller_guard = None

    async def recheck_caller(self) -> Caller:
        """The caller resolved again from the database, for long-lived operations (the
        live stream): a revoked or expired token, an ended session, a deactivated user or
        a changed role shows here."""
        request = self.request
        if not uses_bearer_token(request):
            session = getattr(request, "session", None)
            key = session.session_key if session is not None else None
            if session is None or key is None or not await session.aexists(key):
                self._caller = Caller(rejected="The session has ended; sign in again.")
                return self._caller
            # django.contrib.auth caches the user on the request; load it afresh.
            request.__dict__.pop("_acached_user", None)
        self._caller = None
        # Long-lived: whatever connection this thread held may have broken since.
        await sync_to_async(close_old_connections)()
        try:
            return await self.caller()
        finally:
            await sync_to_async(close_old_connections)()


def context_of(info: Info[Any, Any]) -> GraphQLContext:
    context = info.context
    assert isinstance(context, GraphQLContext)
    return context


def uses_bearer_token(request: Any) -> bool:
    return "HTTP_AUTHORIZATION" in request.META


def _credentials_caller(request: Any) -> tuple[Caller | None, Any]:
    """The caller decided by the Authorization header alone (a refusal, when malformed),
    or None and the token credentials to look up (None: no header, use the session)."""
    try:
        credentials = bearer_credentials(request.META.get("HTTP_AUTHORIZATION"))
    except MalformedAuthorization as error:
        request.user = AnonymousUser()
        return Caller(rejected=f"Malformed Authorization header: {error}."), None
    return None, credentials


def _token_caller(request: Any, token: ApiToken | None) -> Caller:
    if token is None:
        request.user = AnonymousUser()
        return Caller(rejected="The API token is invalid, expired or revoked.")
    # The audit context (audit/middleware.py) reads the actor from request.user.
    request.user = token.user
    return Caller(user=token.user, token=token)


async def resolve_caller(request: Any) -> Caller:
    decided, credentials = _credentials_caller(request)
    if decided is not None:
        return decided
    if credentials is not None:
        return _token_caller(request, await sync_to_async(api_token_authenticate)(credentials))
    user = await request.auser()
    return Caller(user=user) if user_is_authenticated(user) else Caller()


def resolve_caller_now(
    request: Any, *, remembered: bool = False
) -> tuple[Caller, CredentialsGuard | None]:
    """``resolve_caller`` for synchronous code, on a request that passed Django's
    middleware (``request.user`` is set); with ``remembered``, the token may come from
    memory, with the guard its reader must check."""
    decided, credentials = _credentials_caller(request)
    if decided is not None:
        return decided, None
    if credentials is not None:
        if remembered:
            token, guard = api_token_remembered(credentials)
            return _token_caller(request, token), guard
        return _token_caller(request, api_token_authenticate(credentials)), None
    user = request.user
    return (Caller(user=user) if user_is_authenticated(user) else Caller()), None
