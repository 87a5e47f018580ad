"""The actor-email directory is kept by the database for every way entries are written."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from django.db import transaction

from audit.events import AuditEventType as E
from audit.models import AuditActorEmail
from audit.services import AuditEntryDraft, audit_log_bulk_create, audit_log_record
from core.models import Organization, User

pytestmark = pytest.mark.django_db

T = datetime(2026, 1, 1, tzinfo=UTC)


def directory(org: Organization) -> set[str]:
    return set(AuditActorEmail.objects.filter(organization=org).values_list("email", flat=True))


def test_single_inserts_add_the_actor_email(
    paid_org: Organization, make_user: Callable[..., User]
) -> None:
    alice = make_user(paid_org, email="alice@example.test")
    before = directory(paid_org)
    audit_log_record(organization=paid_org, event=E.USER_LOGIN, actor=alice)
    audit_log_record(organization=paid_org, event=E.USER_LOGIN, actor=alice)
    audit_log_record(organization=paid_org, event=E.SESSION_EXPIRED, actor=None)
    assert directory(paid_org) - before == {"alice@example.test"} - before
    assert "alice@example.test" in directory(paid_org)


def test_copy_adds_each_distinct_email_once_per_organization(
    make_org: Callable[..., Organization],
) -> None:
    org, other = make_org("paid"), make_org("paid")
    drafts = [
        AuditEntryDraft(event=E.USER_LOGIN, time=T, user_email=email)
        for email in ["Ann@X.test", "ann@x.test", "bob@x.test", "Ann@X.test", None]
    ]
    audit_log_bulk_create(organization=org, drafts=drafts)
    audit_log_bulk_create(organization=other, drafts=drafts[:1])
    # As recorded (non-members keep the case they were imported with).
    assert {"Ann@X.test", "ann@x.test", "bob@x.test"} <= directory(org)
    assert "Ann@X.test" in directory(other) and "bob@x.test" not in directory(other)


def test_a_rolled_back_insert_leaves_no_email(paid_org: Organization) -> None:
    draft = AuditEntryDraft(event=E.USER_LOGIN, time=T, user_email="ghost@example.test")
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_log_bulk_create(organization=paid_org, drafts=[draft])
        assert "ghost@example.test" in directory(paid_org)
        raise RuntimeError("the action failed")
    assert "ghost@example.test" not in directory(paid_org)
