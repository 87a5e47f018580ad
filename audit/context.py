"""Who is acting and from where, for the audit entries recorded while handling one request
or job.

``AuditContextMiddleware`` sets it for every HTTP request; code outside a request (jobs,
management commands) uses ``audit_context(actor=..., ip=...)``. ``audit.services`` reads it
when a caller does not pass ``actor`` / ``ip`` explicitly. It lives in a ``ContextVar``,
so concurrent requests -- threads or asyncio tasks -- never see each other's values.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.models import User


@dataclass(frozen=True)
class AuditContext:
    # A callable so that the request's user is resolved only when an entry is recorded
    # (authentication may complete after the middleware ran, e.g. a bearer token).
    actor: Callable[[], Any] | None = None
    ip: str | None = None

    def resolve_actor(self) -> User | None:
        if self.actor is None:
            return None
        user = self.actor()
        if user is None or not getattr(user, "is_authenticated", False):
            return None
        return user  # type: ignore[no-any-return]


_current: ContextVar[AuditContext] = ContextVar(
    "audit_context",
    default=AuditContext(),  # noqa: B039 - frozen, never mutated
)


def audit_context_get() -> AuditContext:
    return _current.get()


@contextlib.contextmanager
def audit_context(
    *, actor: User | Callable[[], Any] | None = None, ip: str | None = None
) -> Iterator[AuditContext]:
    """Set the acting user and client IP for the audit entries recorded inside the block."""
    actor_getter = actor if callable(actor) else (lambda: actor)
    context = AuditContext(actor=actor_getter, ip=ip)
    token = audit_context_activate(context)
    try:
        yield context
    finally:
        audit_context_deactivate(token)


def audit_context_activate(context: AuditContext) -> Token[AuditContext]:
    """Make ``context`` current; pass the token to ``audit_context_deactivate`` afterwards."""
    return _current.set(context)


def audit_context_deactivate(token: Token[AuditContext]) -> None:
    _current.reset(token)
