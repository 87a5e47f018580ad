"""audit/insert_sql.py against the save it stands in for: for random entries, the row
``audit_log_record`` writes and the instance it returns equal what
``save(force_insert=True)`` of the same entry writes and returns."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from audit.events import AuditEventType
from audit.models import AuditLog
from audit.services import audit_log_record
from core.models import User

pytestmark = pytest.mark.django_db

# JSON a caller may pass as details: nested objects and arrays, every scalar, text with
# characters beyond ASCII (but no NUL or lone surrogate, which the service refuses).
text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    max_size=12,
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
addresses = st.sampled_from(
    [None, "", "203.0.113.9", "2001:db8::1", "::ffff:198.51.100.7", "2001:DB8:0:0:0:0:0:2"]
)
times = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
) | st.just(datetime(2026, 12, 4, 1, 2, 3, 999_999, tzinfo=UTC))


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    event=st.sampled_from(AuditEventType.values),
    who=st.sampled_from(["admin", "unnamed", None]),
    ip=addresses,
    details=st.none() | st.dictionaries(text, json_values, max_size=4),
    time=st.none() | times,
)
def test_a_recorded_entry_is_the_entry_save_writes(
    admin: User,
    make_user: Callable[..., User],
    event: str,
    who: str | None,
    ip: str | None,
    details: dict[str, Any] | None,
    time: datetime | None,
) -> None:
    org = admin.organization
    assert org is not None
    actors = {
        "admin": admin,
        "unnamed": User.objects.filter(email="unnamed@example.test").first()
        or make_user(org, email="unnamed@example.test", name=""),
        None: None,
    }
    with transaction.atomic():
        actor = actors[who]
        recorded = audit_log_record(
            organization=org, event=event, actor=actor, ip=ip, details=details, time=time
        )
        saved = AuditLog(
            organization=org,
            event=recorded.event,
            actor=recorded.actor,
            actor_email=recorded.actor_email,
            actor_name=recorded.actor_name,
            ip=recorded.ip,
            details=recorded.details,
            time=recorded.time,
        )
        saved.save(force_insert=True)
        note(f"{recorded.__dict__}")

        def fields(entry: AuditLog) -> dict[str, Any]:
            values = {f.attname: getattr(entry, f.attname) for f in AuditLog._meta.concrete_fields}
            values.pop("id")
            return values

        # The instances: every field, as Python values of the same types.
        assert recorded.pk is not None and saved.pk == recorded.pk + 1
        assert fields(recorded) == fields(saved)
        assert {k: type(v) for k, v in fields(recorded).items()} == {
            k: type(v) for k, v in fields(saved).items()
        }
        assert (recorded._state.adding, recorded._state.db) == (
            saved._state.adding,
            saved._state.db,
        )
        # The rows, as PostgreSQL holds them (the text of each column).
        columns = [f.column for f in AuditLog._meta.concrete_fields if f.column != "id"]
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {', '.join(f'{c}::text' for c in columns)} FROM audit_log"
                " WHERE id IN (%s, %s) ORDER BY id",
                [recorded.pk, saved.pk],
            )
            first, second = cursor.fetchall()
        assert first == second
        # And read back through the ORM, the same entry.
        assert fields(AuditLog.objects.get(pk=recorded.pk)) == fields(
            AuditLog.objects.get(pk=saved.pk)
        )
        transaction.set_rollback(True)


def test_a_recorded_entry_is_in_the_stream_of_its_transaction(admin: User) -> None:
    org = admin.organization
    assert org is not None
    with transaction.atomic():
        first = audit_log_record(organization=org, event="USER_LOGIN", actor=admin)
        second = audit_log_record(organization=org, event="USER_LOGIN", actor=admin)
        assert isinstance(first.stream_txid, int) and first.stream_txid == second.stream_txid
        assert AuditLog.objects.get(pk=first.pk).stream_txid == first.stream_txid
