"""Shared fixtures: the test database, organizations by plan, users by role."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest

from core.models import Organization, User
from core.roles import APP_ALIAS, OWNER_ALIAS
from core.services import organization_create, user_create

_counter = itertools.count(1)

EMBEDDED = not os.environ.get("DATABASE_URL")


def _close_with_pool(wrapper: Any) -> None:
    wrapper.close()
    wrapper.close_pool()


@pytest.fixture(scope="session")
def django_db_setup(
    request: pytest.FixtureRequest, django_test_environment: None, django_db_blocker: Any
) -> Iterator[None]:
    """The test database, created and migrated by the owner; the application's connection
    then uses it as its own role, so every test runs with the server's privileges."""
    from django.conf import settings
    from django.db import connections
    from django.test.utils import setup_databases, teardown_databases

    verbosity = request.config.option.verbose
    with django_db_blocker.unblock():
        config = setup_databases(
            verbosity=verbosity,
            interactive=False,
            aliases=cast(Any, {OWNER_ALIAS}),  # django-stubs says Mapping; any container works
            serialized_aliases=set(),
        )
        name = connections[OWNER_ALIAS].settings_dict["NAME"]
        app = connections[APP_ALIAS]
        _close_with_pool(app)
        app.settings_dict["NAME"] = settings.DATABASES[APP_ALIAS]["NAME"] = name
    yield
    with django_db_blocker.unblock():
        _close_with_pool(app)
        teardown_databases(config, verbosity=verbosity)


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
