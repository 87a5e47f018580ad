"""The organizations a management command works on: one by slug, or all of them."""

from __future__ import annotations

from django.core.management.base import CommandError

from core.models import Organization


def organization_named(slug: str) -> Organization:
    """``slug``'s organization; CommandError if there is none."""
    try:
        return Organization.objects.get(slug=slug)
    except Organization.DoesNotExist:
        raise CommandError(f"no organization with slug {slug!r}") from None


def organizations_named(slug: str | None) -> list[Organization]:
    """``slug``'s organization, or every one by slug when ``slug`` is None."""
    if slug is None:
        return list(Organization.objects.order_by("slug"))
    return [organization_named(slug)]
