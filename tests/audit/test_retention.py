"""Retention: prune_audit_logs removes exactly the entries past the period, through the one
path the append-only trigger allows, keeps every total exact, records that it pruned, and
leaves a chain that verifies as pruned."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.core.management import call_command
from django.db import IntegrityError, ProgrammingError, connections, transaction
from django.test import override_settings
from django.utils import timezone

from audit.events import AuditEventType as E
from audit.filters import AuditLogFilter
from audit.models import AuditLog, AuditPrune
from audit.retention import retention_policy
from audit.selectors import audit_log_count, audit_log_list
from audit.services import (
    AuditEntryDraft,
    audit_log_bulk_create,
    audit_log_prune,
    audit_log_seal,
    audit_log_verify,
)
from core.backups import libpq_parameters
from core.models import Organization
from core.roles import OWNER_ALIAS, app_role_name
from tests.support import TRANSACTIONAL, as_database_owner

pytestmark = TRANSACTIONAL

NOW = timezone.now()
EVENTS = [E.USER_LOGIN, E.RESOURCE_UPDATED, E.ROLE_CREATED]


def _history(org: Organization, days: int = 400, per_day: int = 2) -> None:
    """``per_day`` entries a day over the last ``days`` days, mixed events and users."""
    audit_log_bulk_create(
        organization=org,
        drafts=[
            AuditEntryDraft(
                event=EVENTS[n % 3],
                time=NOW - timedelta(hours=24 // per_day * n + 1),
                user_email=f"user{n % 4}@example.test" if n % 5 else None,
            )
            for n in range(days * per_day)
        ],
    )


FILTERS = [
    AuditLogFilter(),
    AuditLogFilter.build(event_type=E.USER_LOGIN),
    AuditLogFilter.build(user_email="USER1@"),
    AuditLogFilter.build(time_from=NOW - timedelta(days=380), time_to=NOW - timedelta(days=300)),
    AuditLogFilter.build(event_types=[E.ROLE_CREATED], time_from=NOW - timedelta(days=500)),
]


def _totals_are_exact(org: Organization) -> None:
    for filters in FILTERS:
        expected = audit_log_list(organization=org, filters=filters).count()
        assert audit_log_count(organization=org, filters=filters) == expected, filters


def test_the_period_comes_from_the_organization_or_its_plan(
    make_org: Callable[..., Organization],
) -> None:
    paid, free = make_org("paid"), make_org("free")
    with override_settings(AUDIT_RETENTION_DAYS_PAID=365, AUDIT_RETENTION_DAYS_FREE=90):
        assert (retention_policy(paid).days, retention_policy(paid).source) == (365, "plan")
        assert retention_policy(free).days == 90
        paid.audit_retention_days = 0
        assert retention_policy(paid).forever
        paid.audit_retention_days = 7
        policy = retention_policy(paid)
        assert (policy.days, policy.source, policy.below_minimum) == (7, "organization", True)
        cutoff = policy.cutoff(datetime(2026, 1, 8, tzinfo=UTC))
        assert cutoff == datetime(2026, 1, 1, tzinfo=UTC)


def test_pruning_removes_exactly_the_old_entries_and_keeps_totals_exact(
    make_org: Callable[..., Organization],
) -> None:
    org, other = make_org("paid"), make_org("paid")
    _history(org)
    _history(other, days=50)
    before = NOW - timedelta(days=365)
    old = set(
        AuditLog.objects.filter(organization=org, time__lt=before).values_list("pk", flat=True)
    )
    kept = set(
        AuditLog.objects.filter(organization=org, time__gte=before).values_list("pk", flat=True)
    )
    others = AuditLog.objects.filter(organization=other).count()
    assert len(old) == 70 and kept
    _totals_are_exact(org)

    done: list[int] = []
    outcome = audit_log_prune(
        organization=org, before=before, retention_days=365, batch=16, progress=done.append
    )
    assert (outcome.entries, outcome.busy) == (70, False)
    assert done == [16, 16, 16, 16, 6]  # batches of at most 16, one transaction each
    remaining = set(AuditLog.objects.filter(organization=org).values_list("pk", flat=True))
    assert not old & remaining and kept <= remaining
    assert AuditLog.objects.filter(organization=other).count() == others
    _totals_are_exact(org)

    # Each batch, in its own transaction, records its entry and its signed prune record.
    records = AuditLog.objects.filter(organization=org, event=E.AUDIT_LOG_PRUNED).order_by("id")
    assert [r.details["entries"] for r in records] == [16, 16, 16, 16, 6]
    for record in records:
        assert record.details["before"] == before.isoformat()
        assert record.details["retentionDays"] == 365 and record.actor_id is None
    prunes = AuditPrune.objects.filter(organization=org).order_by("id")
    assert [p.log_entry_id for p in prunes] == [r.pk for r in records]
    assert [p.entries for p in prunes] == [16, 16, 16, 16, 6]
    assert {p.before for p in prunes} == {before} and all(p.signature for p in prunes)
    # Caught up: nothing more to do, and nothing more recorded.
    assert audit_log_prune(organization=org, before=before, retention_days=365).entries == 0
    assert AuditLog.objects.filter(organization=org, event=E.AUDIT_LOG_PRUNED).count() == 5


def test_the_chain_verifies_with_pruned_entries_and_still_catches_tampering(
    paid_org: Organization,
) -> None:
    _history(paid_org, days=40)
    audit_log_seal(organization=paid_org, block=9)
    before = NOW - timedelta(days=30)
    pruned = audit_log_prune(organization=paid_org, before=before, retention_days=30).entries
    assert pruned == 20
    outcome = audit_log_verify(organization=paid_org)
    assert outcome.ok, outcome.problem
    assert (outcome.pruned, outcome.unsealed) == (20, 1)  # the AUDIT_LOG_PRUNED entry

    newer = AuditLog.objects.filter(organization=paid_org, time__gte=before).order_by("time")[0]
    as_database_owner(("DELETE FROM audit_log WHERE id = %s", [newer.pk]))
    outcome = audit_log_verify(organization=paid_org)
    assert not outcome.ok and outcome.problem_entry_id == newer.pk


def test_nobody_else_deletes_old_entries(paid_org: Organization) -> None:
    _history(paid_org, days=3)
    oldest = AuditLog.objects.filter(organization=paid_org).order_by("time")[0]
    with (
        pytest.raises(IntegrityError, match="append-only"),
        transaction.atomic(using=OWNER_ALIAS),
        connections[OWNER_ALIAS].cursor() as cursor,
    ):
        cursor.execute("DELETE FROM audit_log WHERE id = %s", [oldest.pk])
    if app_role_name() is not None:
        with (
            pytest.raises(ProgrammingError, match="permission denied for function"),
            transaction.atomic(),
            connections["default"].cursor() as cursor,
        ):
            cursor.execute("SELECT audit_log_prune(%s, now(), 10)", [paid_org.pk])
        with (
            pytest.raises(ProgrammingError, match="permission denied"),
            transaction.atomic(),
            connections["default"].cursor() as cursor,
        ):
            cursor.execute("SET LOCAL auditlog.prune_organization = %s", [str(paid_org.pk)])
            cursor.execute("SET LOCAL auditlog.prune_before = 'infinity'")
            cursor.execute("DELETE FROM audit_log WHERE id = %s", [oldest.pk])
    assert AuditLog.objects.filter(pk=oldest.pk).exists()


def test_a_second_run_leaves_an_organization_being_pruned_alone(paid_org: Organization) -> None:
    _history(paid_org, days=3)
    params = libpq_parameters(OWNER_ALIAS)
    with psycopg.connect(**params, autocommit=True) as other_run:
        other_run.execute(
            "SELECT pg_advisory_lock(hashtextextended('audit_prune', %s))", [paid_org.pk]
        )
        outcome = audit_log_prune(organization=paid_org, before=NOW, retention_days=1)
        assert (outcome.busy, outcome.entries) == (True, 0)
        # Released here: closing the connection releases it only once the server has
        # ended that session, which may be after the next line has asked for it.
        other_run.execute(
            "SELECT pg_advisory_unlock(hashtextextended('audit_prune', %s))", [paid_org.pk]
        )
    assert audit_log_prune(organization=paid_org, before=NOW, retention_days=1).entries == 6


def test_the_command_prunes_each_organization_by_its_policy(
    make_org: Callable[..., Organization],
) -> None:
    keep, short, tiny = make_org("paid"), make_org("paid"), make_org("paid")
    for org in (keep, short, tiny):
        _history(org, days=100, per_day=1)
    keep.audit_retention_days = 0
    short.audit_retention_days = 60
    tiny.audit_retention_days = 2
    for org in (keep, short, tiny):
        org.save()

    out, err = io.StringIO(), io.StringIO()
    call_command("prune_audit_logs", "--dry-run", stdout=out, stderr=err)
    assert f"{short.slug}: would remove 40 entries older than" in out.getvalue()
    assert f"{keep.slug}: kept forever (organization setting)" in out.getvalue()
    assert f"{tiny.slug}: skipped: its retention of 2 day(s) is below" in err.getvalue()
    assert AuditLog.objects.filter(organization=short).count() == 100 + 1

    out = io.StringIO()
    call_command("prune_audit_logs", "--org", short.slug, stdout=out, stderr=io.StringIO())
    assert f"{short.slug}: removed 40 entries older than" in out.getvalue()
    assert "(60 days, organization)" in out.getvalue()
    assert (
        AuditLog.objects.filter(organization=short, time__lt=NOW - timedelta(days=60)).count() == 0
    )
    assert AuditLog.objects.filter(organization=keep).count() == 100 + 1


def test_a_stream_resumed_from_a_pruned_entry_misses_nothing_newer(
    paid_org: Organization,
) -> None:
    """The live stream resumes by position, not by looking the entry up: a cursor whose
    entry retention removed still resumes exactly after it."""
    from audit.selectors import audit_log_stream

    _history(paid_org, days=10)  # one transaction: one stream_txid, ids in order
    in_order = list(
        AuditLog.objects.filter(organization=paid_org, stream_txid__isnull=False).order_by(
            "stream_txid", "id"
        )
    )
    mark = next(e for e in in_order if e.time < NOW - timedelta(days=5))
    assert mark.stream_txid is not None
    later = audit_log_bulk_create(  # after the mark in the stream, and kept
        organization=paid_org,
        drafts=[AuditEntryDraft(event=E.USER_LOGIN, time=NOW) for _ in range(3)],
    )
    assert later == 3
    in_order = list(
        AuditLog.objects.filter(organization=paid_org, stream_txid__isnull=False).order_by(
            "stream_txid", "id"
        )
    )
    position = (mark.stream_txid, mark.pk)
    audit_log_prune(organization=paid_org, before=NOW - timedelta(days=5), retention_days=5)
    assert not AuditLog.objects.filter(pk=mark.pk).exists()
    survivors = set(AuditLog.objects.filter(organization=paid_org).values_list("pk", flat=True))
    record = AuditLog.objects.get(organization=paid_org, event=E.AUDIT_LOG_PRUNED)
    expected = [e.pk for e in in_order if (e.stream_txid, e.pk) > position and e.pk in survivors]
    assert len(expected) == 3
    resumed = audit_log_stream(organization_ids=[paid_org.pk], after=position)
    assert [e.pk for e in resumed] == [*expected, record.pk]
