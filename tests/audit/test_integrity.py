"""Tamper evidence: sealed checkpoints verify on untouched data, and every kind of tampering
by someone with the owner's write access (the append-only trigger switched off) is caught
and names the entry."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections, transaction
from django.test import override_settings
from django.utils import timezone

from audit.events import AuditEventType as E
from audit.models import AuditLog, AuditSeal, AuditVerification
from audit.services import (
    AuditEntryDraft,
    audit_log_bulk_create,
    audit_log_record,
    audit_log_seal,
    audit_log_verify,
)
from core.models import Organization, User
from core.roles import OWNER_ALIAS
from core.services import user_delete
from tests.support import TRANSACTIONAL, as_database_owner

pytestmark = TRANSACTIONAL

BLOCK = 7  # small checkpoints, so that every test spans several


def _record(org: Organization, n: int, **kw: Any) -> list[AuditLog]:
    """``n`` entries, each in its own transaction (so each has its own stream position)."""
    return [
        audit_log_record(
            organization=org, event=E.ROLE_UPDATED, ip="203.0.113.9", details={"n": i}, **kw
        )
        for i in range(n)
    ]


@pytest.fixture
def sealed(paid_org: Organization) -> Iterator[tuple[Organization, list[AuditLog]]]:
    assert AuditLog.objects.filter(organization=paid_org).count() == 1  # its creation
    entries = _record(paid_org, 20)
    outcome = audit_log_seal(organization=paid_org, block=BLOCK)
    assert (outcome.checkpoints, outcome.entries, outcome.busy) == (3, 21, False)
    yield paid_org, entries


def _problem(org: Organization) -> AuditVerification:
    outcome = audit_log_verify(organization=org)
    assert not outcome.ok
    return outcome


def test_untouched_entries_verify_across_checkpoints_and_later_entries(
    sealed: tuple[Organization, list[AuditLog]], make_org: Callable[..., Organization]
) -> None:
    org, _ = sealed
    other = make_org("paid")
    _record(other, 3)  # another organization's entries are another chain
    audit_log_bulk_create(
        organization=org,
        drafts=[
            AuditEntryDraft(event=E.USER_LOGIN, time=timezone.now(), user_email=f"u{n}@x.test")
            for n in range(10)
        ],
    )
    outcome = audit_log_verify(organization=org)
    assert outcome.ok, outcome.problem
    assert (outcome.checkpoints, outcome.entries, outcome.unsealed) == (3, 21, 10)

    assert audit_log_seal(organization=org, block=BLOCK).entries == 10
    outcome = audit_log_verify(organization=org)
    assert outcome.ok, outcome.problem
    assert (outcome.checkpoints, outcome.entries, outcome.unsealed) == (5, 31, 0)
    assert outcome.last_sequence == 5
    assert audit_log_verify(organization=other).unsealed == 3 + 1


def test_clearing_the_actor_of_a_deleted_account_still_verifies(
    paid_org: Organization, make_user: Callable[..., User]
) -> None:
    actor = make_user(paid_org)
    entry = _record(paid_org, 1, actor=actor)[0]
    audit_log_seal(organization=paid_org)
    user_delete(user=actor)
    assert AuditLog.objects.get(pk=entry.pk).actor_id is None
    outcome = audit_log_verify(organization=paid_org)
    assert outcome.ok, outcome.problem


def test_entries_that_predate_the_stream_are_sealed_first(paid_org: Organization) -> None:
    _record(paid_org, 2)
    # Entries recorded before the live stream existed have no stream position.
    as_database_owner(
        (
            "INSERT INTO audit_log (organization_id, event, details, time) "
            "SELECT %s, 'USER_LOGIN', '{}', now() - interval '1 day' FROM generate_series(1, 9)",
            [paid_org.pk],
        ),
        trigger_off=False,
    )
    as_database_owner(("UPDATE audit_log SET stream_txid = NULL WHERE event = 'USER_LOGIN'", []))
    assert audit_log_seal(organization=paid_org, block=4).entries == 1 + 11
    seals = list(AuditSeal.objects.filter(organization=paid_org).order_by("sequence"))
    assert seals[0].last_stream_txid is None and seals[-1].last_stream_txid is not None
    outcome = audit_log_verify(organization=paid_org)
    assert outcome.ok and outcome.entries == 1 + 11


def test_an_altered_entry_is_named(sealed: tuple[Organization, list[AuditLog]]) -> None:
    org, entries = sealed
    victim = entries[9]
    as_database_owner(("UPDATE audit_log SET ip = '10.0.0.1' WHERE id = %s", [victim.pk]))
    outcome = _problem(org)
    assert outcome.problem_entry_id == victim.pk
    assert f"entry {victim.pk} was altered" in outcome.problem
    assert outcome.entries == 1 + 9  # everything before it verified


def test_a_deleted_entry_is_named(sealed: tuple[Organization, list[AuditLog]]) -> None:
    org, entries = sealed
    victim = entries[15]
    as_database_owner(("DELETE FROM audit_log WHERE id = %s", [victim.pk]))
    outcome = _problem(org)
    assert outcome.problem_entry_id == victim.pk
    assert f"entry {victim.pk} is missing" in outcome.problem


def test_a_forged_entry_among_sealed_ones_is_named(
    sealed: tuple[Organization, list[AuditLog]],
) -> None:
    org, entries = sealed
    anchor = entries[4]
    as_database_owner(
        (
            "INSERT INTO audit_log (organization_id, event, details, time, stream_txid) "
            "VALUES (%s, 'USER_DELETED', '{}', %s, %s::text::xid8)",
            [org.pk, anchor.time, str(anchor.stream_txid)],
        ),
        trigger_off=False,
    )
    forged = AuditLog.objects.get(organization=org, event=E.USER_DELETED)
    outcome = _problem(org)
    assert outcome.problem_entry_id == forged.pk
    assert f"entry {forged.pk} was inserted among sealed entries" in outcome.problem


def test_reordered_entries_are_named(sealed: tuple[Organization, list[AuditLog]]) -> None:
    org, entries = sealed
    first, second = entries[3], entries[12]
    swap = "UPDATE audit_log SET stream_txid = %s::text::xid8 WHERE id = %s"
    as_database_owner(
        (swap, [str(second.stream_txid), first.pk]), (swap, [str(first.stream_txid), second.pk])
    )
    outcome = _problem(org)
    assert outcome.problem_entry_id == second.pk
    assert f"entry {second.pk} is out of its sealed place" in outcome.problem
    assert f"entry {first.pk} was expected" in outcome.problem


def test_recomputed_digests_are_caught_by_the_signature(
    sealed: tuple[Organization, list[AuditLog]],
) -> None:
    """An attacker who alters an entry and rewrites the checkpoint's records and head to
    match (everything but the key) still fails the signature."""
    from audit import integrity

    org, entries = sealed
    victim = entries[2]
    as_database_owner(("UPDATE audit_log SET details = '{\"n\": 99}' WHERE id = %s", [victim.pk]))
    seal = AuditSeal.objects.get(organization=org, sequence=1)
    records = [integrity.RECORD.unpack(r) for r in _chunks(bytes(seal.records))]
    with connections["default"].cursor() as cursor:
        cursor.execute(
            f"SELECT {integrity.DIGEST_SQL} FROM audit_log a WHERE a.id = %s", [victim.pk]
        )
        new_digest = bytes(cursor.fetchone()[0])
    forged = b"".join(
        integrity.RECORD.pack(i, t, new_digest if i == victim.pk else d) for i, t, d in records
    )
    head = integrity.next_head(integrity.ZERO_HEAD, forged)
    as_database_owner(
        ("UPDATE audit_seal SET records = %s, head = %s WHERE id = %s", [forged, head, seal.pk]),
        table="audit_seal",
    )
    outcome = _problem(org)
    assert "checkpoint 1 does not match its signature" in outcome.problem


def _chunks(records: bytes) -> Iterator[bytes]:
    from audit.integrity import RECORD

    for start in range(0, len(records), RECORD.size):
        yield records[start : start + RECORD.size]


def test_checkpoints_signed_with_a_key_no_longer_known_do_not_verify(
    paid_org: Organization,
) -> None:
    _record(paid_org, 2)
    with override_settings(AUDIT_SEAL_KEY="first-key"):
        audit_log_seal(organization=paid_org)
        assert audit_log_verify(organization=paid_org).ok
    _record(paid_org, 2)
    # Rotation: the new key signs; the old one, kept as a fallback, still verifies.
    with override_settings(AUDIT_SEAL_KEY="second-key", AUDIT_SEAL_KEY_FALLBACKS=["first-key"]):
        assert audit_log_seal(organization=paid_org).checkpoints == 1
        assert audit_log_verify(organization=paid_org).ok
    with override_settings(AUDIT_SEAL_KEY="second-key"):
        assert "checkpoint 1 is signed with an unknown key" in _problem(paid_org).problem
    # Checkpoints signed by default (a key derived from SECRET_KEY) verify after
    # AUDIT_SEAL_KEY is set.
    _record(paid_org, 1)
    audit_log_seal(organization=paid_org)
    with override_settings(
        AUDIT_SEAL_KEY="third-key", AUDIT_SEAL_KEY_FALLBACKS=["first-key", "second-key"]
    ):
        assert audit_log_verify(organization=paid_org).ok
    with override_settings(
        SECRET_KEY="another-secret", AUDIT_SEAL_KEY_FALLBACKS=["first-key", "second-key"]
    ):
        assert "checkpoint 3 is signed with an unknown key" in _problem(paid_org).problem


def test_a_second_sealer_skips_an_organization_being_sealed(paid_org: Organization) -> None:
    _record(paid_org, 3)
    with transaction.atomic(using=OWNER_ALIAS), connections[OWNER_ALIAS].cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('audit_seal', %s))", [paid_org.pk]
        )
        outcome = audit_log_seal(organization=paid_org)
    assert (outcome.busy, outcome.checkpoints) == (True, 0)
    assert audit_log_seal(organization=paid_org).entries == 1 + 3


def test_sealing_waits_for_an_older_transaction_still_open(paid_org: Organization) -> None:
    """An entry of a transaction that is still open holds back every later one: sealing
    them first would put it, once committed, inside a sealed range."""
    _record(paid_org, 2)
    owner = connections[OWNER_ALIAS]
    with transaction.atomic(using=OWNER_ALIAS), owner.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_log (organization_id, event, details, time) "
            "VALUES (%s, 'USER_LOGIN', '{}', now())",
            [paid_org.pk],
        )
        _record(paid_org, 2)  # committed, but after the open transaction began
        assert audit_log_seal(organization=paid_org).entries == 1 + 2
    assert audit_log_seal(organization=paid_org).entries == 3
    assert audit_log_verify(organization=paid_org).ok


def test_the_commands_report_and_exit_non_zero_on_a_problem(
    sealed: tuple[Organization, list[AuditLog]],
) -> None:
    org, entries = sealed
    _record(org, 2)
    out = io.StringIO()
    call_command("seal_audit_log", "--org", org.slug, stdout=out)
    assert f"{org.slug}: sealed 2 entries in 1 checkpoint(s)" in out.getvalue()
    out = io.StringIO()
    call_command("verify_audit_log", stdout=out)
    assert f"{org.slug}: OK: 23 sealed entries in 4 checkpoint(s)" in out.getvalue()

    as_database_owner(("DELETE FROM audit_log WHERE id = %s", [entries[0].pk]))
    out = io.StringIO()
    with pytest.raises(CommandError, match=f"verification failed for {org.slug}"):
        call_command("verify_audit_log", "--org", org.slug, stdout=out)
    assert f"FAILED: entry {entries[0].pk} is missing" in out.getvalue()
    latest = AuditVerification.objects.filter(organization=org).latest("verified_at")
    assert latest.problem_entry_id == entries[0].pk
    assert latest.verified_at > timezone.now() - timedelta(minutes=1)
    with pytest.raises(CommandError, match="no organization"):
        call_command("verify_audit_log", "--org", "nope")
