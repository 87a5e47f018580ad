"""Deploy checks for the inline middleware (core/middleware.py).

Django's security checks look for its middleware by dotted path, so our subclasses of
``SecurityMiddleware``, ``XFrameOptionsMiddleware`` and ``CsrfViewMiddleware`` make
``check --deploy`` report them missing (security.W001-W003) and skip every check that
depends on them (HSTS, SSL redirect, nosniff, referrer and opener policies, X-Frame-Options
DENY, the CSRF cookie). Those three warnings are silenced in settings, and this check runs
Django's own checks again with each middleware named by the Django class it extends, so
they all apply; their findings come back under ``core.`` + Django's id.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, register
from django.core.checks.security import base, csrf, sessions
from django.test.utils import override_settings
from django.utils.module_loading import import_string

_DJANGO_CHECKS = (
    base.check_security_middleware,
    base.check_xframe_options_middleware,
    base.check_sts,
    base.check_sts_include_subdomains,
    base.check_sts_preload,
    base.check_content_type_nosniff,
    base.check_ssl_redirect,
    base.check_xframe_deny,
    base.check_referrer_policy,
    base.check_cross_origin_opener_policy,
    csrf.check_csrf_middleware,
    csrf.check_csrf_cookie_secure,
    sessions.check_session_cookie_secure,
    sessions.check_session_cookie_httponly,
)


def _as_django(path: str) -> str:
    """The dotted path of the Django middleware class that ``path``'s class extends, or
    ``path`` itself."""
    for cls in import_string(path).__mro__:
        if cls.__module__.startswith("django.middleware.") or cls.__module__.startswith(
            "django.contrib."
        ):
            return f"{cls.__module__}.{cls.__qualname__}"
    return path


@register(Tags.security, deploy=True)
def check_security_of_inline_middleware(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    with override_settings(MIDDLEWARE=[_as_django(path) for path in settings.MIDDLEWARE]):
        for check in _DJANGO_CHECKS:
            for message in check(app_configs):
                message.id = f"core.{message.id}"
                messages.append(message)
    return messages


@register(Tags.security, deploy=True)
def check_application_role(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """The server should not connect as the owner of the audit tables (core/roles.py)."""
    from django.core.checks import Warning

    from core.roles import app_role_name

    if app_role_name() is not None:
        return []
    return [
        Warning(
            "The server connects to the database as the role that owns the audit tables, "
            "which could disable or drop the append-only trigger.",
            hint="Set DATABASE_OWNER_URL to the owner and DATABASE_URL to a role that owns "
            "nothing (README, 'Database roles').",
            id="core.W100",
        )
    ]
