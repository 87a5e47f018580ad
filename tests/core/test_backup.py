"""backup_db and restore_db: a round trip through pg_dump and pg_restore brings back every
entry, the rollups, the append-only rule, the server role's privileges, and checkpoints
that verify."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from audit.events import AuditEventType as E
from audit.services import (
    AuditEntryDraft,
    audit_log_bulk_create,
    audit_log_record,
    audit_log_seal,
)
from core.backups import libpq_parameters
from core.models import User
from core.roles import OWNER_ALIAS, app_role_name
from tests.support import ROOT, TRANSACTIONAL, database_url

pytestmark = TRANSACTIONAL

RESTORED = "auditlog_restore_test"
# Every column of every entry, and every rollup, in a stable order: equal text, equal data.
FINGERPRINTS = {
    "audit_log": "SELECT md5(string_agg(a::text, '|' ORDER BY id)) FROM audit_log a",
    "audit_count_day": "SELECT sum(n), count(DISTINCT (organization_id, day, event)) FROM audit_count_day",
    "audit_count_actor_month": "SELECT sum(n) FROM audit_count_actor_month",
    "audit_actor_email": "SELECT md5(string_agg(email, '|' ORDER BY email)) FROM audit_actor_email",
}


def _connect(database: str, alias: str = "default") -> psycopg.Connection:
    """As the application's role, unless ``alias`` says otherwise."""
    return psycopg.connect(**{**libpq_parameters(alias), "dbname": database}, autocommit=True)


def _fingerprints(conn: psycopg.Connection) -> dict[str, object]:
    return {name: conn.execute(sql).fetchone() for name, sql in FINGERPRINTS.items()}


@pytest.fixture
def restored_name() -> Iterator[str]:
    yield RESTORED
    with _connect("postgres", OWNER_ALIAS) as owner:
        owner.execute(f'DROP DATABASE IF EXISTS "{RESTORED}" WITH (FORCE)')


def test_a_backup_restores_every_entry_and_the_append_only_rule(
    admin: User, tmp_path: Path, restored_name: str
) -> None:
    org = admin.organization
    assert org is not None
    for n in range(20):
        audit_log_record(
            organization=org, event=E.ROLE_UPDATED, actor=admin, ip="203.0.113.5", details={"n": n}
        )
    from django.utils import timezone

    audit_log_bulk_create(
        organization=org,
        drafts=[
            AuditEntryDraft(event="USER_LOGIN", time=timezone.now(), user_email=f"u{n}@x.test")
            for n in range(500)
        ],
    )
    audit_log_seal(organization=org, block=100)
    audit_log_record(organization=org, event=E.ROLE_UPDATED, actor=admin)  # not yet sealed
    dump = tmp_path / "backup.dump"
    out = io.StringIO()
    call_command("backup_db", "-o", str(dump), stdout=out)
    assert "Backed up 5" in out.getvalue() and dump.stat().st_size > 0
    call_command("restore_db", str(dump), "--database", restored_name, stdout=io.StringIO())

    with _connect(connection.settings_dict["NAME"]) as original, _connect(restored_name) as copy:
        assert _fingerprints(copy) == _fingerprints(original)
        assert copy.execute("SELECT count(*) FROM audit_log").fetchone() == (
            original.execute("SELECT count(*) FROM audit_log").fetchone()
        )
        if app_role_name() is not None:  # the application's role got its privileges back
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                copy.execute("DELETE FROM audit_log")
            copy.execute("UPDATE rate_limit_window SET hits = hits")
    # The tamper-evidence verification passes on the copy, as the server's role would run it.
    verified = subprocess.run(
        [sys.executable, "manage.py", "verify_audit_log", "--org", org.slug],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": database_url(connection.settings_dict, restored_name),
            "DATABASE_OWNER_URL": "",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"{org.slug}: OK: " in verified.stdout and "; 1 not yet sealed" in verified.stdout
    with _connect(restored_name, OWNER_ALIAS) as owner_copy:
        with pytest.raises(psycopg.errors.RestrictViolation):
            owner_copy.execute("UPDATE audit_log SET event = 'USER_LOGIN'")
        with pytest.raises(psycopg.errors.RestrictViolation):
            owner_copy.execute("DELETE FROM audit_log")


def test_a_restore_never_writes_over_an_existing_database(tmp_path: Path, db: None) -> None:
    dump = tmp_path / "backup.dump"
    call_command("backup_db", "-o", str(dump), stdout=io.StringIO())
    with pytest.raises(CommandError, match="exists already"):
        call_command("restore_db", str(dump), "--database", connection.settings_dict["NAME"])
    with pytest.raises(CommandError, match="letters, digits"):
        call_command("restore_db", str(dump), "--database", 'x"; DROP DATABASE y; --')
