"""Settings from the environment: parsing, and a clear error without SECRET_KEY."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from core.environment import database_from_url, env_bool, env_networks

ROOT = Path(__file__).resolve().parents[2]


def test_database_url_with_host_port_and_options() -> None:
    db = database_from_url("postgres://app:p%40ss@db.internal:6432/audit?sslmode=require")
    assert db == {
        "NAME": "audit",
        "USER": "app",
        "PASSWORD": "p@ss",
        "HOST": "db.internal",
        "PORT": 6432,
        "OPTIONS": {"sslmode": "require"},
    }


def test_database_url_with_unix_socket() -> None:
    assert (
        database_from_url("postgresql:///audit?host=/run/postgresql")["HOST"] == "/run/postgresql"
    )
    assert database_from_url("postgresql://%2Frun%2Fpg/audit")["HOST"] == "/run/pg"


@pytest.mark.parametrize("url", ["sqlite:///db.sqlite3", "mysql://x/y", "postgres://host/"])
def test_database_url_rejects_other_engines_and_missing_names(url: str) -> None:
    with pytest.raises(ImproperlyConfigured):
        database_from_url(url)


def test_env_bool_and_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAG", "yes")
    assert env_bool("FLAG", False) is True
    monkeypatch.setenv("FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="FLAG"):
        env_bool("FLAG", False)
    monkeypatch.setenv("NETS", "10.0.0.0/8, 192.0.2.1, 2001:db8::/32")
    assert [str(n) for n in env_networks("NETS")] == ["10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32"]
    monkeypatch.setenv("NETS", "10.0.0.0/8,bogus")
    with pytest.raises(ImproperlyConfigured, match="NETS"):
        env_networks("NETS")


def test_missing_secret_key_for_a_named_server_with_debug_off_is_a_one_line_error() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**env, "DEBUG": "0", "DATABASE_URL": "postgres://app@db.internal/auditlog"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    assert "SECRET_KEY must be set when DEBUG is off and DATABASE_URL names" in line


@pytest.mark.parametrize(
    ("urls", "message"),
    [
        ({"DATABASE_OWNER_URL": "postgres://owner@db/auditlog"}, "DATABASE_URL is not"),
        (
            {
                "DATABASE_URL": "postgres://app@db/auditlog",
                "DATABASE_OWNER_URL": "postgres://owner@db/other",
            },
            "same database",
        ),
        (
            {
                "DATABASE_URL": "postgres://db/auditlog",
                "DATABASE_OWNER_URL": "postgres://o@db/auditlog",
            },
            "must name its user",
        ),
    ],
)
def test_the_two_database_urls_are_checked_at_startup(urls: dict[str, str], message: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**env, "SECRET_KEY": "x", **urls},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert message in result.stderr
