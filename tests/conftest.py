"""Shared fixtures: organizations by plan, users by role, and the audit context."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Any

import pytest

from core.models import Organization, User
from core.services import organization_create, user_create

_counter = itertools.count(1)

EMBEDDED = not os.environ.get("DATABASE_URL")


@pytest.fixture
def make_org(db: None) -> Callable[..., Organization]:
    def make(plan: str = "paid", slug: str | None = None) -> Organization:
        n = next(_counter)
        return organization_create(slug=slug or f"org{n}", name=f"Org {n}", plan=plan)

    return make


@pytest.fixture
def make_user(db: None) -> Callable[..., User]:
    def make(
        org: Organization, *, admin: bool = False, email: str | None = None, **kw: object
    ) -> User:
        n = next(_counter)
        return user_create(
            organization=org,
            email=email or f"user{n}@{org.slug}.test",
            is_admin=admin,
            **kw,  # type: ignore[arg-type]
        )

    return make


@pytest.fixture
def paid_org(make_org: Callable[..., Organization]) -> Organization:
    return make_org("paid")


@pytest.fixture
def admin(paid_org: Organization, make_user: Callable[..., User]) -> User:
    return make_user(paid_org, admin=True, name="Ada Admin", password="a-long-test-password")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # Password strength is Django's business; tests only need hashing to round-trip.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
