"""GraphiQL is served from this backend's own files: each is the pinned one
(graphql_api/assets.py), and the page names no other origin and sends the pages' CSP.
(It is run in a real browser, offline, in tests/browser/.)"""

from __future__ import annotations

import re

import pytest
from django.test import Client

from core.csp import PAGE_CSP
from graphql_api.assets import ASSETS, DIRECTORY, mismatches

pytestmark = pytest.mark.django_db


def test_every_vendored_file_is_the_pinned_one() -> None:
    assert mismatches() == []
    assert (DIRECTORY / "VERSIONS.txt").is_file()
    for asset in ASSETS:
        assert f"{asset.package} {asset.version}" in (DIRECTORY / "VERSIONS.txt").read_text()


def test_a_changed_file_is_noticed(tmp_path: object) -> None:
    from pathlib import Path

    copy = Path(str(tmp_path))
    for asset in ASSETS:
        (copy / asset.name).write_bytes((DIRECTORY / asset.name).read_bytes())
    (copy / "graphiql.min.js").write_bytes(b"alert(1)")
    assert mismatches(copy) == ["graphiql.min.js"]


def test_the_page_loads_only_this_origins_files_under_the_csp(client: Client) -> None:
    response = client.get("/graphql/", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert response["Content-Security-Policy"] == PAGE_CSP
    html = response.content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(s.startswith("/static/") or s == "data:," for s in sources), sources
    assert "<script>" not in html  # no inline script: the CSP would refuse it
    for asset in ASSETS:
        if asset.name.endswith(".js"):
            assert f"/static/graphiql/{asset.name}" in html
