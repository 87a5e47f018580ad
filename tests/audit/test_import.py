"""import_audit_events: validates every line as it loads it; imports all or nothing, in order."""

from __future__ import annotations

import json
from collections.abc import Callable
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Sum

from audit.models import AuditCountDay, AuditLog
from core.models import Organization, User

pytestmark = pytest.mark.django_db

GOOD = [
    {"event": "USER_LOGIN", "user_email": "Member@Acme.test", "ip": "203.0.113.5",
     "details": {"method": "sso"}, "time": "2026-01-31T12:00:00Z"},
    {"event": "SESSION_EXPIRED", "time": "2026-01-31T13:00:00+02:00",
     "details": {"session_id": "s1"}},
    {"event": "RESOURCE_CREATED", "user_email": "gone@acme.test", "user_name": "Gone",
     "ip": "2001:db8::1", "time": "2026-01-30T00:00:00Z", "details": {"resource": "vm-1"}},
]  # fmt: skip


def write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_audit_events", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_import_keeps_file_order_and_resolves_members(
    tmp_path: Path, paid_org: Organization, make_user: Callable[..., User]
) -> None:
    member = make_user(paid_org, email="member@acme.test", name="Mem")
    path = write(tmp_path, [json.dumps(e) for e in GOOD] + [""])
    before = AuditLog.objects.count()
    out, _ = run(paid_org.slug, str(path))
    assert "Imported 3 events" in out
    entries = list(AuditLog.objects.filter(pk__gt=0).order_by("id")[before:])
    assert [e.event for e in entries] == ["USER_LOGIN", "SESSION_EXPIRED", "RESOURCE_CREATED"]
    login, expired, created = entries
    assert login.actor == member and login.actor_email == "member@acme.test"
    assert login.actor_name == "Mem" and login.details == {"method": "sso"}
    assert login.ip == "203.0.113.5" and login.time.isoformat() == "2026-01-31T12:00:00+00:00"
    assert (
        expired.actor is None
        and expired.actor_email is None
        and expired.details == {"session_id": "s1"}
    )
    assert expired.time.isoformat() == "2026-01-31T11:00:00+00:00"
    # Not a member: the snapshot is kept, without a link.
    assert created.actor is None and created.actor_email == "gone@acme.test"
    assert created.actor_name == "Gone" and created.ip == "2001:db8::1"


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "invalid JSON"),
        ('{"event": "NOPE", "time": "2026-01-01T00:00:00Z"}', "unknown event 'NOPE'"),
        (
            '{"event": "USER_LOGIN", "time": "2026-01-01T00:00:00Z", "ip": "300.1.1.1"}',
            "invalid ip",
        ),
        ('{"event": "USER_LOGIN", "time": "yesterday"}', "invalid time"),
        ('{"event": "USER_LOGIN", "time": "2026-01-01T00:00:00"}', "no timezone"),
        ('{"event": "USER_LOGIN", "time": "0001-01-01T00:00:00+14:00"}', "is outside 1900"),
        ('{"event": "USER_LOGIN", "time": "9999-12-31T23:59:59-14:00"}', "is outside 1900"),
        ('{"event": "USER_LOGIN"}', "missing field 'time'"),
        (
            '{"event": "USER_LOGIN", "time": "2026-01-01T00:00:00Z", "details": [1]}',
            "details must be a JSON object",
        ),
        (
            '{"event": "USER_LOGIN", "time": "2026-01-01T00:00:00Z", "usr_email": "a@b.c"}',
            "unknown field",
        ),
        ('["USER_LOGIN"]', "each line must be a JSON object"),
        # What PostgreSQL cannot store or Python cannot read.
        ('{"event": ["USER_LOGIN"], TIME}', "unknown event"),
        (
            '{"event": "USER_LOGIN", TIME, "user_email": "a\\u0000@b.c"}',
            "user_email must not contain the NUL",
        ),
        (
            '{"event": "USER_LOGIN", TIME, "user_name": "\\ud800"}',
            "user_name must be valid Unicode",
        ),
        (
            '{"event": "USER_LOGIN", TIME, "details": {"k": "\\udfff"}}',
            "details must be valid Unicode",
        ),
        (
            '{"event": "USER_LOGIN", TIME, "details": {"\\u0000": 1}}',
            "details keys must not contain the NUL",
        ),
        ('{"event": "USER_LOGIN", TIME, "details": {"x": NaN}}', "details must not hold NaN"),
        ('{"event": "USER_LOGIN", TIME, "details": {"x": [1e400]}}', "details must not hold NaN"),
        (
            '{"event": "USER_LOGIN", TIME, "details": ' + '{"a":' * 40 + "1" + "}" * 40 + "}",
            "must not nest more than 32",
        ),
        (
            '{"event": "USER_LOGIN", TIME, "details": ' + "[" * 5000 + "]" * 5000 + "}",
            "nesting too deep",
        ),
        (
            '{"event": "USER_LOGIN", TIME, "details": {"n": ' + "9" * 5000 + "}}",
            "a number too long",
        ),
        ('{"event": "USER_LOGIN", TIME, "ip": "fe80::1%eth0"}', "invalid ip"),
    ],
)
def test_an_invalid_line_is_reported_with_its_number_and_nothing_is_imported(
    tmp_path: Path, paid_org: Organization, bad_line: str, message: str
) -> None:
    bad_line = bad_line.replace("TIME", '"time": "2026-01-01T00:00:00Z"')
    lines = [json.dumps(GOOD[0]), json.dumps(GOOD[1]), bad_line, json.dumps(GOOD[2])]
    path = write(tmp_path, lines)
    before = AuditLog.objects.count()
    err = StringIO()
    with pytest.raises(CommandError, match="line 3"):
        call_command("import_audit_events", paid_org.slug, str(path), stdout=StringIO(), stderr=err)
    reported = err.getvalue()
    assert "line 3: " in reported and message in reported.split("line 3: ", 1)[1]
    assert AuditLog.objects.count() == before


def test_a_bad_line_after_thousands_of_loaded_ones_leaves_nothing_behind(
    tmp_path: Path, paid_org: Organization
) -> None:
    good = json.dumps(GOOD[0])
    lines = [good] * 25_000 + ["{"] + [good] * 10 + ['{"event": "NOPE"}']
    path = write(tmp_path, lines)
    before = AuditLog.objects.count()
    rollup_before = AuditCountDay.objects.aggregate(n=Sum("n"))["n"]
    err = StringIO()
    with pytest.raises(CommandError, match="2 invalid line"):
        call_command("import_audit_events", paid_org.slug, str(path), stdout=StringIO(), stderr=err)
    assert "line 25001:" in err.getvalue() and "line 25012:" in err.getvalue()
    assert AuditLog.objects.count() == before
    assert AuditCountDay.objects.aggregate(n=Sum("n"))["n"] == rollup_before


def test_every_bad_line_is_reported(tmp_path: Path, paid_org: Organization) -> None:
    path = write(tmp_path, ["{", json.dumps(GOOD[0]), "[]", "{"])
    err = StringIO()
    with pytest.raises(CommandError, match="3 invalid line"):
        call_command("import_audit_events", paid_org.slug, str(path), stdout=StringIO(), stderr=err)
    assert [f"line {n}:" in err.getvalue() for n in (1, 3, 4)] == [True, True, True]


def test_unknown_org_and_missing_file(tmp_path: Path, paid_org: Organization) -> None:
    with pytest.raises(CommandError, match="no organization with slug 'ghost'"):
        run("ghost", str(write(tmp_path, [json.dumps(GOOD[0])])))
    with pytest.raises(CommandError, match="no such file"):
        run(paid_org.slug, str(tmp_path / "missing.jsonl"))


def test_offsets_postgresql_does_not_take_are_imported_as_the_same_instant(
    tmp_path: Path, paid_org: Organization
) -> None:
    # ISO 8601 (and Python) allow offsets to +-23:59; PostgreSQL only to +-15:59.
    times = ["2026-01-31T12:00:00+23:59", "2026-01-31T12:00:00-16:00"]
    path = write(tmp_path, [json.dumps({**GOOD[0], "time": t}) for t in times])
    before = AuditLog.objects.count()
    run(paid_org.slug, str(path))
    entries = list(AuditLog.objects.order_by("id")[before:])
    assert [e.time.isoformat() for e in entries] == [
        "2026-01-30T12:01:00+00:00",
        "2026-02-01T04:00:00+00:00",
    ]


@pytest.mark.parametrize(
    ("details", "message"),
    [
        ("{}", "details.session_id is required for SESSION_STARTED"),
        ('{"session_id": 7}', "details.session_id must be a string"),
        ('{"session_id": ""}', "details.session_id must not be empty"),
        ('{"session_id": "s", "expires_at": "tomorrow"}', "details.expires_at must be an RFC 3339"),
        (
            '{"session_id": "s", "duration_seconds": 1.5}',
            "details.duration_seconds must be an integer",
        ),
    ],
)
def test_details_must_have_their_event_types_shape(
    tmp_path: Path, paid_org: Organization, details: str, message: str
) -> None:
    bad_line = (
        f'{{"event": "SESSION_STARTED", "time": "2026-01-01T00:00:00Z", "details": {details}}}'
    )
    path = write(tmp_path, [json.dumps(GOOD[0]), bad_line])
    before = AuditLog.objects.count()
    err = StringIO()
    with pytest.raises(CommandError, match="line 2"):
        call_command("import_audit_events", paid_org.slug, str(path), stdout=StringIO(), stderr=err)
    assert f"line 2: {message}" in err.getvalue()
    assert AuditLog.objects.count() == before


def test_files_from_before_typed_details_import_with_the_check_off(
    tmp_path: Path, paid_org: Organization
) -> None:
    untyped = {"event": "SESSION_STARTED", "time": "2026-01-01T00:00:00Z", "details": {"s": 1}}
    path = write(tmp_path, [json.dumps(untyped)])
    err = StringIO()
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_audit_events", paid_org.slug, str(path), stdout=StringIO(), stderr=err)
    assert "details.session_id is required for SESSION_STARTED" in err.getvalue()
    out, _ = run(paid_org.slug, str(path), "--no-details-check")
    assert "Imported 1 events" in out
    assert AuditLog.objects.filter(organization=paid_org).latest("id").details == {"s": 1}
