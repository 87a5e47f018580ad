"""export_audit_logs and the export formats: every matching entry, newest first, CSV cells
that no spreadsheet evaluates, and JSONL that import_audit_events reads back unchanged."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.http import QueryDict

from audit import exporting
from audit.events import AuditEventType as E
from audit.models import AuditLog
from audit.services import AuditEntryDraft, audit_log_bulk_create
from core.models import Organization

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
# Content that CSV, JSON and spreadsheets each find awkward.
AWKWARD = [
    AuditEntryDraft(
        event=E.ROLE_UPDATED,
        time=T0,
        user_email='=HYPERLINK("http://evil.test")@x.test',
        user_name='Zoë "Quotes", Comma',
        ip="2001:db8::1",
        details={
            "role": {"name": "=Auditors"},
            "changes": {"note": {"from": "line one\nline two", "to": "=1+1"}},
            "nested": {"a": [1, 2.5, None]},
        },
    ),
    AuditEntryDraft(
        event=E.USER_LOGIN,
        time=T0 + timedelta(seconds=1),
        user_email="+a@x.test",
        details={"method": "-sso"},
    ),
    AuditEntryDraft(
        event=E.SESSION_EXPIRED, time=T0 + timedelta(seconds=2), details={"session_id": "@s"}
    ),
    AuditEntryDraft(
        event=E.RESOURCE_DELETED,
        time=T0 + timedelta(seconds=3, microseconds=5),
        user_email="-b@x.test",
        ip="203.0.113.7",
        details={"resource": "@vm-1", "unicode": "日本語 ✓"},
    ),
]


@pytest.fixture
def org(make_org: object) -> Organization:
    organization: Organization = make_org("paid")  # type: ignore[operator]
    audit_log_bulk_create(organization=organization, drafts=AWKWARD)
    return organization


def _export(org: Organization, tmp_path: Path, *args: str) -> str:
    path = tmp_path / "out"
    err = io.StringIO()
    call_command("export_audit_logs", org.slug, *args, "-o", str(path), stderr=err)
    assert "Exported" in err.getvalue()
    return path.read_text(encoding="utf-8")


def test_csv_has_the_columns_newest_first_and_neutralized_formulas(
    org: Organization, tmp_path: Path
) -> None:
    rows = list(csv.reader(io.StringIO(_export(org, tmp_path, "--format", "csv"))))
    assert rows[0] == ["Event", "User", "IP", "Details", "Time", "ID"]
    entries = list(AuditLog.objects.filter(organization=org).order_by("-time", "-id"))
    assert [int(r[5]) for r in rows[1:]] == [e.pk for e in entries]
    by_event = {row[0]: row for row in rows[1:]}  # one entry per event type here
    deleted = by_event["RESOURCE_DELETED"]
    assert deleted[:3] == ["RESOURCE_DELETED", "'-b@x.test", "203.0.113.7"]
    assert json.loads(deleted[3]) == {"resource": "@vm-1", "unicode": "日本語 ✓"}
    assert deleted[4] == "2026-03-01T12:00:03.000005Z"
    updated = by_event["ROLE_UPDATED"]
    assert updated[1] == '\'=HYPERLINK("http://evil.test")@x.test'
    assert updated[2] == "2001:db8::1"
    assert json.loads(updated[3])["changes"]["note"]["from"] == "line one\nline two"  # quoted
    assert by_event["SESSION_EXPIRED"][1] == ""  # a system event has no user
    assert by_event["USER_LOGIN"][1] == "'+a@x.test"
    for row in rows[1:]:
        assert not row[1].startswith(("=", "+", "-", "@"))


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"])
def test_every_formula_start_is_neutralized(cell: str) -> None:
    assert exporting.neutralized(cell) == "'" + cell
    assert exporting.neutralized("plain") == "plain"


def test_filters_apply_as_in_auditlogs(org: Organization, tmp_path: Path) -> None:
    text = _export(
        org,
        tmp_path,
        "--format",
        "jsonl",
        "--event-type",
        "USER_LOGIN",
        "--event-type",
        "RESOURCE_DELETED",
        "--user-email",
        "X.TEST",
        "--from",
        "2026-03-01T12:00:01Z",
        "--to",
        "2026-03-01T12:00:03.000005+00:00",
    )
    assert [json.loads(line)["event"] for line in text.splitlines()] == [
        "RESOURCE_DELETED",
        "USER_LOGIN",
    ]


def test_jsonl_round_trips_through_import_into_an_empty_organization(
    org: Organization, make_org: object, tmp_path: Path
) -> None:
    text = _export(org, tmp_path, "--format", "jsonl")
    dump = tmp_path / "export.jsonl"
    dump.write_text(text, encoding="utf-8")
    empty: Organization = make_org("paid")  # type: ignore[operator]
    before = set(AuditLog.objects.filter(organization=empty).values_list("pk", flat=True))
    call_command("import_audit_events", empty.slug, str(dump), stdout=io.StringIO())

    fields = ("event", "actor_email", "actor_name", "ip", "details", "time")

    def content(organization: Organization, exclude: set[int]) -> list[tuple[object, ...]]:
        rows = AuditLog.objects.filter(organization=organization).exclude(pk__in=exclude)
        return sorted(rows.values_list(*fields), key=repr)

    original = content(org, set())
    # And the organization's creation, and the export's own record (made before it read).
    assert len(original) == len(AWKWARD) + 2
    assert {row[0] for row in original} >= {"USER_REGISTERED", "AUDIT_LOG_EXPORTED"}
    assert content(empty, before) == original


def test_large_exports_come_in_batches_without_gaps_or_repeats(
    org: Organization, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exporting, "BATCH_SIZE", 2)
    # Entries sharing one time: the order falls back to id, across batch boundaries too.
    audit_log_bulk_create(
        organization=org,
        drafts=[AuditEntryDraft(event=E.USER_LOGIN, time=T0) for _ in range(5)],
    )
    text = _export(org, tmp_path, "--format", "jsonl")
    ids = [json.loads(line)["id"] for line in text.splitlines()]
    expected = list(
        AuditLog.objects.filter(organization=org)
        .order_by("-time", "-id")
        .values_list("pk", flat=True)
    )
    assert ids == expected and len(ids) == len(set(ids))


def test_the_command_refuses_bad_input(org: Organization, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="no organization"):
        call_command("export_audit_logs", "nope")
    with pytest.raises(CommandError, match="from must be an ISO 8601"):
        call_command("export_audit_logs", org.slug, "--from", "yesterday")
    with pytest.raises(CommandError, match="not an audit event type"):
        call_command("export_audit_logs", org.slug, "--event-type", "NOPE")
    with pytest.raises(CommandError, match="from must not be after to"):
        call_command("export_audit_logs", org.slug, "--from", "2026-02-01", "--to", "2026-01-01")
    assert not list(tmp_path.iterdir())


def test_the_file_names_the_organization_and_range(org: Organization) -> None:
    _, filters = exporting.parse_parameters(
        QueryDict("from=2026-01-01T00:00:00%2B02:00&format=jsonl")
    )
    assert exporting.filename(org, filters, "jsonl") == (
        f"audit-logs_{org.slug}_20251231T220000Z_now.jsonl"
    )


def test_the_command_exports_by_address_words_and_details_past_the_total_limit(
    org: Organization, tmp_path: Path, settings: object
) -> None:
    """A search whose total is refused (AUDIT_LOG_SEARCH_TOTAL_MAX) still exports every
    match: the progress then counts without a total."""
    settings.AUDIT_LOG_SEARCH_TOTAL_MAX = 1  # type: ignore[attr-defined]
    audit_log_bulk_create(
        organization=org,
        drafts=[
            AuditEntryDraft(event=E.USER_LOGIN, time=T0 + timedelta(hours=n), ip="203.0.113.9")
            for n in range(3)
        ],
    )
    text = _export(org, tmp_path, "--format", "jsonl", "--ip", "203.0.113.0/24")
    nine, seven = "203.0.113.9", "203.0.113.7"  # newest first: 2 h, 1 h, 3 s, 0 s after T0
    assert [json.loads(line)["ip"] for line in text.splitlines()] == [nine, nine, seven, nine]
    text = _export(
        org, tmp_path, "--format", "jsonl", "--search", "VM", "--details", '{"unicode": "日本語 ✓"}'
    )
    assert [json.loads(line)["event"] for line in text.splitlines()] == ["RESOURCE_DELETED"]
    with pytest.raises(CommandError, match="details must be JSON"):
        call_command("export_audit_logs", org.slug, "--details", "{", stderr=io.StringIO())
