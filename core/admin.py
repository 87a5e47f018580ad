"""Django admin for operators: organizations, roles, users, API tokens and log streams.

Changes to users and roles go through core.services, so they are audited like any other.
Token secrets are never shown, except once, right after a token is created here.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from core import services
from core.models import ApiToken, AuditLogStream, Organization, Role, User


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "plan", "audit_retention_days", "created_at")
    list_filter = ("plan",)
    search_fields = ("slug", "name")

    def save_model(self, request: HttpRequest, obj: Organization, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        created = services.organization_create(
            slug=obj.slug,
            name=obj.name,
            plan=obj.plan,
            audit_retention_days=obj.audit_retention_days,
        )
        obj.pk = created.pk
        obj._state.adding = False


@admin.register(Role)
class RoleAdmin(admin.ModelAdmin):
    list_display = ("name", "organization", "is_admin")
    list_filter = ("is_admin",)
    search_fields = ("name", "organization__slug")
    readonly_fields = ("is_admin",)

    def get_readonly_fields(self, request: HttpRequest, obj: Role | None = None) -> Any:
        return ("organization", "is_admin") if obj else ("is_admin",)

    def save_model(self, request: HttpRequest, obj: Role, form: Any, change: bool) -> None:
        if change:
            services.role_update(
                role=Role.objects.get(pk=obj.pk), name=obj.name, description=obj.description
            )
            return
        created = services.role_create(
            organization=obj.organization, name=obj.name, description=obj.description
        )
        obj.pk = created.pk
        obj._state.adding = False

    def delete_model(self, request: HttpRequest, obj: Role) -> None:
        services.role_delete(role=obj)

    def has_delete_permission(self, request: HttpRequest, obj: Role | None = None) -> bool:
        return super().has_delete_permission(request, obj) and not (obj and obj.is_admin)


class UserCreationForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email", "name", "organization", "role", "is_staff")


class UserEditForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserEditForm
    add_form = UserCreationForm
    list_display = ("email", "name", "organization", "role", "is_active", "is_staff")
    list_filter = ("is_active", "is_staff", "organization")
    search_fields = ("email", "name")
    ordering = ("email",)
    readonly_fields = ("last_login", "date_joined", "organization")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("name", "organization", "role", "is_active")}),
        ("Operator access", {"fields": ("is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": (
                    "email",
                    "name",
                    "organization",
                    "role",
                    "is_staff",
                    "usable_password",
                    "password1",
                    "password2",
                ),
            },
        ),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields if obj else ()

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        if change:
            # Operator fields are saved directly; profile and status go through the
            # (audited) service, so they are saved first as they were.
            original = User.objects.get(pk=obj.pk)
            name, role, active = obj.name, obj.role, obj.is_active
            obj.name, obj.role, obj.is_active = original.name, original.role, original.is_active
            super().save_model(request, obj, form, change)
            services.user_update(user=obj, name=name, role=role, is_active=active)
            return
        if obj.organization is None:
            # An operator account (no organization): nothing to audit.
            super().save_model(request, obj, form, change)
            return
        created = services.user_create(
            organization=obj.organization,
            email=obj.email,
            name=obj.name,
            password=form.cleaned_data.get("password1") or None,
            role=obj.role,
            is_staff=obj.is_staff,
        )
        obj.pk = created.pk
        obj.password = created.password
        obj._state.adding = False

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        services.user_delete(user=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            services.user_delete(user=user)


class ApiTokenAddForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ("user", "name", "expires_at")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = (
        "prefix",
        "name",
        "user",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    )
    list_filter = ("revoked_at",)
    search_fields = ("name", "user__email", "prefix")
    actions = ("revoke",)
    exclude = ("token_hash",)
    readonly_fields = ("prefix", "created_at", "revoked_at", "last_used_at")

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = ApiTokenAddForm
        return super().get_form(request, obj, change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("user", "prefix", "created_at", "revoked_at", "last_used_at") if obj else ()

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        try:
            token, secret = services.api_token_create(
                user=obj.user, name=obj.name, expires_at=obj.expires_at
            )
        except ValidationError as exc:
            messages.error(request, "; ".join(exc.messages))
            raise
        obj.pk = token.pk
        obj._state.adding = False
        messages.warning(
            request, f"Token created. Copy it now, it will not be shown again: {secret}"
        )

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset:
            services.api_token_revoke(token=token)
        messages.success(request, f"Revoked {queryset.count()} token(s).")


@admin.register(AuditLogStream)
class AuditLogStreamAdmin(admin.ModelAdmin):
    """Log streams: created, changed and deleted through audit/log_streams.py (so each
    change is audited); the delivery status is read-only and the secret never shown,
    except once, right after it is made here."""

    list_display = ("name", "organization", "format", "enabled", "paused_at", "last_delivered_at")
    list_filter = ("enabled", "format")
    search_fields = ("name", "organization__slug", "url")
    fields = (
        "organization", "name", "url", "format", "event_types", "user_email", "time_from",
        "time_to", "enabled", "delivered", "last_delivered_at", "last_delivered_entry",
        "failures", "last_error", "last_error_at", "next_attempt_at", "paused_at",
        "paused_reason", "created_at",
    )  # fmt: skip
    readonly_fields = (
        "delivered", "last_delivered_at", "last_delivered_entry", "failures", "last_error",
        "last_error_at", "next_attempt_at", "paused_at", "paused_reason", "created_at",
    )  # fmt: skip

    def get_readonly_fields(self, request: HttpRequest, obj: AuditLogStream | None = None) -> Any:
        return ("organization", *self.readonly_fields) if obj else self.readonly_fields

    def _filters(self, obj: AuditLogStream) -> Any:
        from audit.log_streams import stream_filter

        try:
            return stream_filter(obj)
        except ValueError as error:
            raise ValidationError(str(error)) from None

    def save_model(
        self, request: HttpRequest, obj: AuditLogStream, form: Any, change: bool
    ) -> None:
        from audit import log_streams

        try:
            if change:
                log_streams.audit_log_stream_update(
                    stream=AuditLogStream.objects.get(pk=obj.pk),
                    name=obj.name,
                    url=obj.url,
                    format=obj.format,
                    filters=self._filters(obj),
                    enabled=obj.enabled,
                )
                return
            created, secret = log_streams.audit_log_stream_create(
                organization=obj.organization,
                name=obj.name,
                url=obj.url,
                format=obj.format,
                filters=self._filters(obj),
                enabled=obj.enabled,
            )
        except ValidationError as error:
            self.message_user(request, "; ".join(error.messages), messages.ERROR)
            return
        obj.pk = created.pk
        obj._state.adding = False
        self.message_user(
            request,
            f"The stream's signing secret (shown only now): {secret}",
            messages.WARNING,
        )

    def delete_model(self, request: HttpRequest, obj: AuditLogStream) -> None:
        from audit import log_streams

        log_streams.audit_log_stream_delete(stream=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AuditLogStream]) -> None:
        from audit import log_streams

        for stream in queryset:
            log_streams.audit_log_stream_delete(stream=stream)
