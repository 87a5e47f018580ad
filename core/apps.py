from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from django.contrib.auth import models as auth_models
        from django.contrib.auth.signals import user_logged_in
        from django.db.models.signals import post_migrate, pre_migrate

        from core import checks  # noqa: F401 - registers the deploy checks
        from core.database import lift_statement_timeout
        from core.roles import grant_app_role_after_migrate

        pre_migrate.connect(lift_statement_timeout, dispatch_uid="core_lift_statement_timeout")
        post_migrate.connect(grant_app_role_after_migrate, dispatch_uid="core_grant_app_role")

        # Sign-in records last_login and USER_LOGIN together (core.services.user_record_login),
        # so Django's own last_login receiver is replaced rather than run beside it.
        user_logged_in.disconnect(auth_models.update_last_login, dispatch_uid="update_last_login")
        user_logged_in.connect(_record_login, dispatch_uid="core_record_login")


def _record_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    from core.services import user_record_login

    # This backend's one way to sign in is the password form (core/backends.py).
    user_agent = request.META.get("HTTP_USER_AGENT", "") if request is not None else ""
    user_record_login(user=user, method="password", user_agent=user_agent)
