"""The organizations a management command works on: one by slug, or all of them."""

from __future__ import annotations

from django.core.management.base import CommandError

from core.models import Organization


def organizations_named(slug: str | None) -> list[Organization]:
    """``slug``'s organization (CommandError if there is none), or every one by slug."""
    if slug is None:
        return list(Organization.objects.order_by("slug"))
    try:
        return [Organization.objects.get(slug=slug)]
    except Organization.DoesNotExist:
        raise CommandError(f"no organization with slug {slug!r}") from None
