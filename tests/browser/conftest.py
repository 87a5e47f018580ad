"""Browser tests: Playwright for Python driving Debian's ``chromium`` (never a browser
download) against a real uvicorn process serving the test database.

The browser runs in a time zone far from UTC (``TIME_ZONE``), and its network is limited
to the server: every request (WebSockets included) to another origin is refused and
recorded, and each test ends by checking that there was none.

Without Chromium the tests are skipped, saying how to enable them (``apt-get install
chromium``, or ``CHROMIUM=/path/to/chrome``); with ``REQUIRE_BROWSER=1`` (as in CI) a
missing browser fails them instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.graphql_api.conftest import serving_test_database

TIME_ZONE = "Pacific/Auckland"  # UTC+13 in December, +12 in June
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium_path() -> str | None:
    configured = os.environ.get("CHROMIUM")
    if configured:
        return configured
    return next(
        (path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))),
        None,
    )


@pytest.fixture(scope="session")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        message = (
            "browser tests need Chromium: apt-get install chromium (or set CHROMIUM to a "
            "Chrome or Chromium executable)"
        )
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {message}")
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def site(django_db_setup: None) -> Iterator[str]:
    """The app, served on the test database (plain HTTP on loopback, so cookies without
    the Secure flag). A search counts at most 100 entries, so that the page's uncounted
    state is reached with the test's 130."""
    with serving_test_database(
        SECURE_COOKIES="0", AUDIT_STREAM_RECHECK_SECONDS="1", AUDIT_LOG_SEARCH_TOTAL_MAX="100"
    ) as url:
        yield url


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, which Django takes
    # for an async context; the tests' own ORM calls are plain synchronous code.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(executable_path=chromium, args=LAUNCH_ARGS)
            yield launched
            launched.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@dataclass
class Visit:
    """A browser context limited to the site, and what it tried to reach elsewhere."""

    context: Any
    page: Any
    site: str
    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def visit(browser: Any, site: str) -> Iterator[Visit]:
    context = browser.new_context(timezone_id=TIME_ZONE, locale="en-US")
    visit = Visit(context=context, page=None, site=site)
    ws_site = site.replace("http://", "ws://")

    def http(route: Any) -> None:
        if route.request.url.startswith(site + "/"):
            route.continue_()
        else:
            visit.outside.append(route.request.url)
            route.abort()

    def websocket(ws: Any) -> None:
        if ws.url.startswith(ws_site + "/"):
            ws.connect_to_server()
        else:
            visit.outside.append(ws.url)
            ws.close()

    context.route("**/*", http)
    context.route_web_socket("**/*", websocket)
    visit.page = context.new_page()
    visit.page.on("pageerror", lambda error: visit.errors.append(str(error)))
    try:
        yield visit
        assert visit.outside == [], f"requests left the server's origin: {visit.outside}"
        assert visit.errors == [], f"errors in the page: {visit.errors}"
    finally:
        context.close()


def sign_in_with_cookie(visit: Visit, user: Any) -> None:
    """A signed-in browser, by a session made here (the form is tested on its own)."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    visit.context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "url": visit.site,
            }
        ]
    )
