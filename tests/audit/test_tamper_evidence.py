"""Tamper evidence that cannot be talked around, by someone with the owner's access (the
append-only triggers switched off):

* a removal counts as retention only with a signed prune record that names exactly what
  it removed, respects the retention floor and agrees with its AUDIT_LOG_PRUNED entry;
* cutting the newest checkpoints off the chain (and rewriting what they covered) is a
  rollback: verification compares with the head it recorded before, and with an external
  witness file; sealing refuses to continue such a chain.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.utils import timezone

from audit.events import AuditEventType as E
from audit.models import AuditLog, AuditPrune, AuditSeal, AuditVerification
from audit.services import (
    AuditEntryDraft,
    ChainBehind,
    audit_log_bulk_create,
    audit_log_prune,
    audit_log_record,
    audit_log_seal,
    audit_log_verify,
)
from audit.witness import Witness, WitnessError, witness_read
from core.models import Organization
from tests.support import TRANSACTIONAL, as_database_owner

pytestmark = TRANSACTIONAL

BLOCK = 7
NOW = timezone.now()


def _record(org: Organization, n: int) -> list[AuditLog]:
    return [
        audit_log_record(organization=org, event=E.ROLE_UPDATED, ip=None, details={"n": i})
        for i in range(n)
    ]


@pytest.fixture
def sealed(paid_org: Organization) -> Iterator[tuple[Organization, list[AuditLog]]]:
    entries = _record(paid_org, 20)
    assert audit_log_seal(organization=paid_org, block=BLOCK).checkpoints == 3
    yield paid_org, entries


def _failed(org: Organization, **kw: Any) -> AuditVerification:
    outcome = audit_log_verify(organization=org, **kw)
    assert not outcome.ok, "verification passed"
    return outcome


def _insert_prune(org: Organization, **columns: Any) -> None:
    names = ["organization_id", "before", "entries", "pruned_at", *columns]
    values = [org.pk, timezone.now(), 1, timezone.now(), *columns.values()]
    as_database_owner(
        (
            f"INSERT INTO audit_prune ({', '.join(names)}) VALUES "
            f"({', '.join(['%s'] * len(names))})",
            values,
        ),
        trigger_off=False,
    )


def _delete_entry(entry: AuditLog) -> None:
    as_database_owner(("DELETE FROM audit_log WHERE id = %s", [entry.pk]))


# --- prune records ---------------------------------------------------------------------------


def test_a_forged_prune_record_does_not_hide_a_deletion(
    sealed: tuple[Organization, list[AuditLog]],
) -> None:
    org, entries = sealed
    victim = entries[5]
    _delete_entry(victim)
    # What an owner could write before records were signed: it now excuses nothing.
    _insert_prune(org)
    outcome = _failed(org)
    assert outcome.problem_entry_id == victim.pk and "deleted" in outcome.problem


def test_a_prune_record_with_a_made_up_signature_is_reported(
    sealed: tuple[Organization, list[AuditLog]],
) -> None:
    from audit.integrity import pack_ids, signing_key

    org, entries = sealed
    victim = entries[5]
    _delete_entry(victim)
    _insert_prune(
        org,
        retention_days=365,
        entry_ids=pack_ids([victim.pk]),
        key_id=signing_key()[0],
        signature=b"\x00" * 32,
        log_entry_id=entries[0].pk,
    )
    outcome = _failed(org)
    assert "does not match its signature" in outcome.problem


def _pruned_history(org: Organization, *, days: int = 40, retention: int = 30) -> datetime:
    audit_log_bulk_create(
        organization=org,
        drafts=[
            AuditEntryDraft(event=E.USER_LOGIN, time=NOW - timedelta(hours=12 * n + 1))
            for n in range(days * 2)
        ],
    )
    audit_log_seal(organization=org, block=BLOCK)
    before = NOW - timedelta(days=retention)
    assert audit_log_prune(organization=org, before=before, retention_days=retention).entries
    return before


def test_a_genuine_prune_verifies_and_its_record_holds_exactly_what_went(
    paid_org: Organization,
) -> None:
    from audit.integrity import pack_ids

    audit_log_bulk_create(
        organization=paid_org,
        drafts=[
            AuditEntryDraft(event=E.USER_LOGIN, time=NOW - timedelta(hours=12 * n + 1))
            for n in range(80)
        ],
    )
    audit_log_seal(organization=paid_org, block=BLOCK)
    before = NOW - timedelta(days=30)
    expected = set(
        AuditLog.objects.filter(organization=paid_org, time__lt=before).values_list("pk", flat=True)
    )
    assert audit_log_prune(organization=paid_org, before=before, retention_days=30, batch=8)
    records = list(AuditPrune.objects.filter(organization=paid_org).order_by("id"))
    assert sum(r.entries for r in records) == len(expected) == 20
    held = b"".join(bytes(r.entry_ids or b"") for r in records)
    assert sorted(held) == sorted(pack_ids(sorted(expected)))  # the same ids, as bytes
    for record in records:
        assert record.log_entry_id is not None
        entry = AuditLog.objects.get(pk=record.log_entry_id)
        assert entry.event == E.AUDIT_LOG_PRUNED and entry.details["entries"] == record.entries
    outcome = audit_log_verify(organization=paid_org)
    assert outcome.ok, outcome.problem
    assert outcome.pruned == 20


def test_a_genuine_record_does_not_cover_a_newer_deletion(paid_org: Organization) -> None:
    _pruned_history(paid_org)
    newer = AuditLog.objects.filter(organization=paid_org, event=E.USER_LOGIN).order_by("time")[0]
    _delete_entry(newer)
    outcome = _failed(paid_org)
    assert outcome.problem_entry_id == newer.pk and "deleted" in outcome.problem


def test_a_prune_below_the_retention_floor_is_reported(paid_org: Organization) -> None:
    with override_settings(AUDIT_RETENTION_MIN_DAYS=1):
        _pruned_history(paid_org, retention=10)
        assert audit_log_verify(organization=paid_org).ok
    outcome = _failed(paid_org)  # the floor is 30 days again
    assert "AUDIT_RETENTION_MIN_DAYS 30" in outcome.problem


def test_a_prune_record_whose_entry_is_gone_or_altered_is_reported(
    paid_org: Organization,
) -> None:
    _pruned_history(paid_org)
    (record,) = AuditPrune.objects.filter(organization=paid_org)
    as_database_owner(
        (
            "UPDATE audit_log SET details = details || '{\"entries\": 1}' WHERE id = %s",
            [record.log_entry_id],
        )
    )
    assert "does not agree with its AUDIT_LOG_PRUNED entry" in _failed(paid_org).problem
    as_database_owner(("DELETE FROM audit_log WHERE id = %s", [record.log_entry_id]))
    outcome = _failed(paid_org)
    assert "is not in the log" in outcome.problem
    assert outcome.problem_entry_id == record.log_entry_id


# --- rollbacks -------------------------------------------------------------------------------


def _cut_newest_checkpoint(org: Organization, altered: AuditLog) -> None:
    """Remove checkpoint 3 and change an entry it covered: what a rollback looks like."""
    as_database_owner(
        ("DELETE FROM audit_seal WHERE organization_id = %s AND sequence = 3", [org.pk]),
        table="audit_seal",
    )
    as_database_owner(("UPDATE audit_log SET details = '{\"n\": 999}' WHERE id = %s", [altered.pk]))


def test_cutting_off_the_newest_checkpoint_is_a_rollback(
    sealed: tuple[Organization, list[AuditLog]],
) -> None:
    org, entries = sealed
    assert audit_log_verify(organization=org).ok  # records checkpoint 3's head
    _cut_newest_checkpoint(org, entries[-1])
    outcome = _failed(org)
    assert "checkpoint 3 (verified at" in outcome.problem and "cut short" in outcome.problem
    # Sealing would seal the rewritten entries over it: it refuses.
    with pytest.raises(ChainBehind, match="checkpoint 3"):
        audit_log_seal(organization=org, block=BLOCK)
    assert not AuditSeal.objects.filter(organization=org, sequence=3).exists()


def test_the_seal_command_refuses_a_chain_behind_and_exits_non_zero(
    sealed: tuple[Organization, list[AuditLog]],
) -> None:
    org, entries = sealed
    assert audit_log_verify(organization=org).ok
    _cut_newest_checkpoint(org, entries[-1])
    err = io.StringIO()
    with pytest.raises(CommandError, match=f"sealing refused for {org.slug}"):
        call_command("seal_audit_log", "--org", org.slug, stdout=io.StringIO(), stderr=err)
    assert "checkpoint 3" in err.getvalue()


@pytest.fixture
def witness_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "witness.jsonl"
    with override_settings(AUDIT_WITNESS_FILE=str(path)):
        yield path


def test_each_checkpoint_is_witnessed_once_committed(
    paid_org: Organization, witness_file: Path
) -> None:
    _record(paid_org, 20)
    audit_log_seal(organization=paid_org, block=BLOCK)
    lines = [json.loads(line) for line in witness_file.read_text().splitlines()]
    seals = AuditSeal.objects.filter(organization=paid_org).order_by("sequence")
    assert [(x["organization"], x["sequence"], x["head"]) for x in lines] == [
        (paid_org.pk, s.sequence, bytes(s.head).hex()) for s in seals
    ]
    assert lines[0]["slug"] == paid_org.slug and len(lines) == 3
    assert set(witness_read(witness_file)[paid_org.pk]) == {1, 2, 3}


def test_the_witness_catches_a_rollback_that_also_removed_the_verifications(
    paid_org: Organization, witness_file: Path
) -> None:
    entries = _record(paid_org, 20)
    audit_log_seal(organization=paid_org, block=BLOCK)
    assert audit_log_verify(organization=paid_org, witnessed=Witness.read(witness_file)).ok
    _cut_newest_checkpoint(paid_org, entries[-1])
    as_database_owner(
        ("DELETE FROM audit_verification WHERE organization_id = %s", [paid_org.pk]),
        table="audit_verification",
    )
    # Inside the database nothing disagrees any more.
    with override_settings(AUDIT_WITNESS_FILE=""):
        assert audit_log_verify(organization=paid_org).ok
    as_database_owner(
        ("DELETE FROM audit_verification WHERE organization_id = %s", [paid_org.pk]),
        table="audit_verification",
    )
    outcome = _failed(paid_org, witnessed=Witness.read(witness_file))
    assert f"witnessed in {witness_file} line 3" in outcome.problem
    with pytest.raises(ChainBehind, match="witnessed"):
        audit_log_seal(organization=paid_org, block=BLOCK)


def test_a_chain_rewritten_and_sealed_again_differs_from_its_witness(
    paid_org: Organization, witness_file: Path, tmp_path: Path
) -> None:
    entries = _record(paid_org, 20)
    audit_log_seal(organization=paid_org, block=BLOCK)
    _cut_newest_checkpoint(paid_org, entries[-1])
    # The attacker holds the key too (it is the server's) and seals the rewritten entries,
    # with no witness in reach.
    with override_settings(AUDIT_WITNESS_FILE=""):
        assert audit_log_seal(organization=paid_org, block=BLOCK).checkpoints == 1
        assert audit_log_verify(organization=paid_org).ok
    outcome = _failed(paid_org, witnessed=Witness.read(witness_file))
    assert "checkpoint 3 differs from the one witnessed" in outcome.problem

    out = io.StringIO()
    with pytest.raises(CommandError, match="verification failed"):
        call_command(
            "verify_audit_log", "--org", paid_org.slug, "--witness", str(witness_file), stdout=out
        )
    assert "FAILED: checkpoint 3 differs" in out.getvalue()


def test_an_edited_witness_line_is_refused(paid_org: Organization, witness_file: Path) -> None:
    _record(paid_org, 10)
    audit_log_seal(organization=paid_org, block=BLOCK)
    lines = witness_file.read_text().splitlines()
    edited = json.loads(lines[1])
    edited["head"] = "00" * 32
    witness_file.write_text("\n".join([lines[0], json.dumps(edited)]) + "\n")
    with pytest.raises(WitnessError, match=r"line 2 .* does not match its signature"):
        witness_read(witness_file)
    with pytest.raises(CommandError, match="line 2"):
        call_command("verify_audit_log", "--witness", str(witness_file), stdout=io.StringIO())
    witness_file.write_text("not json\n")
    with pytest.raises(WitnessError, match="line 1 is not a witness line"):
        witness_read(witness_file)
