"""Production settings: `manage.py check --deploy` is clean, and the security headers are
really sent by the inline middleware that Django's own checks cannot recognize."""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import Client, override_settings

from tests.support import ROOT

# The production environment of the README ("Production"), with a made-up host.
PRODUCTION = {
    "DEBUG": "0",
    "ALLOWED_HOSTS": "audit.example.com",
    "SECURE_SSL_REDIRECT": "1",
    "TRUST_X_FORWARDED_PROTO": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    # Two roles (README, "Database roles"); the check does not connect.
    "DATABASE_URL": "postgres://auditlog_app@db.example.com/auditlog",
    "DATABASE_OWNER_URL": "postgres://auditlog_owner@db.example.com/auditlog",
}


def _check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **env, "SECRET_KEY": secrets.token_urlsafe(50)}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_the_production_settings() -> None:
    result = _check_deploy(PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_when_the_server_connects_as_the_owner() -> None:
    result = _check_deploy({**PRODUCTION, "DATABASE_OWNER_URL": ""})
    assert result.returncode != 0
    assert "core.W100" in result.stderr and "DATABASE_OWNER_URL" in result.stderr


def test_check_deploy_notices_missing_security_middleware() -> None:
    from django.conf import settings

    without = [m for m in settings.MIDDLEWARE if not m.endswith(".SecurityMiddleware")]
    with override_settings(MIDDLEWARE=without), pytest.raises(SystemCheckError) as failed:
        call_command("check", deploy=True, fail_level="WARNING", stdout=io.StringIO())
    assert "core.security.W001" in str(failed.value)


@pytest.mark.django_db
@override_settings(SECURE_HSTS_SECONDS=31536000, SECURE_HSTS_INCLUDE_SUBDOMAINS=True)
def test_responses_carry_the_security_headers() -> None:
    response = Client().post(
        "/graphql/",
        data='{"query": "{ __typename }"}',
        content_type="application/json",
        secure=True,
    )
    assert response.status_code == 200
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
