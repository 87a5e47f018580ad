"""Read-only Django admin for audit entries: operators can look, never add, change or delete."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from audit.models import AuditLog


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):
    list_display = ("time", "event", "actor_email", "ip", "organization")
    list_filter = ("event", ("time", admin.DateFieldListFilter), "organization")
    search_fields = ("actor_email",)
    date_hierarchy = None
    list_select_related = ("organization",)
    show_full_result_count = False
    ordering = ("-time", "-id")
    readonly_fields = (
        "id",
        "organization",
        "event",
        "actor",
        "actor_email",
        "actor_name",
        "ip",
        "details",
        "time",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
