"""Puts the request's actor and real client IP into the audit context (audit/context.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

from audit.context import AuditContext, audit_context_activate, audit_context_deactivate
from core.client_ip import client_ip


class AuditContextMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        token = audit_context_activate(request_audit_context(request))
        try:
            return self.get_response(request)
        finally:
            audit_context_deactivate(token)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        token = audit_context_activate(request_audit_context(request))
        try:
            response: Awaitable[HttpResponseBase] = self.get_response(request)
            return await response
        finally:
            audit_context_deactivate(token)


def request_audit_context(request: HttpRequest) -> AuditContext:
    ip = client_ip(
        request.META.get("REMOTE_ADDR"),
        request.META.get("HTTP_X_FORWARDED_FOR"),
        settings.TRUSTED_PROXIES,
    )
    return AuditContext(actor=lambda: getattr(request, "user", None), ip=ip)
