"""Typed details: each event type's declared shape (audit/events.py), the checker
(audit/details.py) against an independent JSON Schema validator, the published file, and
the shape of everything the backend records itself."""

from __future__ import annotations

import json
import random
from datetime import UTC, timedelta, timezone
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from django.test import Client
from django.utils import timezone as dj_timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.details import (
    INT_MAX,
    INT_MIN,
    SCHEMA_FILE,
    SCHEMA_URL_PATH,
    details_problems,
    event_schema,
    json_schema,
    json_schema_text,
)
from audit.events import (
    DETAILS_FAMILIES,
    FAMILY_OF,
    RECORDED_BY_THE_AUDIT_LOG,
    AuditEventType,
    Key,
    Kind,
)
from audit.models import AuditLog
from tests.support import TRANSACTIONAL

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = jsonschema_rs.Draft202012Validator(json_schema())

# --- strategies, from the registry ---------------------------------------------------------

storable_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.sampled_from([INT_MIN, INT_MAX, INT_MIN - 1, INT_MAX + 1, 3.0, 2.5])
    | st.floats(allow_nan=False, allow_infinity=False)
    | storable_text
    | st.sampled_from(["2026-01-31T12:00:00Z", "2026-01-31", "x"])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(storable_text, inner, max_size=3),
    max_leaves=6,
)
OFFSETS = [UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=9, minutes=30))]


def _value(key: Key) -> st.SearchStrategy[Any]:
    strategy: st.SearchStrategy[Any]
    if key.kind is Kind.STRING:
        strategy = st.text(
            st.characters(codec="utf-8", exclude_characters="\x00"),
            min_size=key.min_length,
            max_size=12,
        )
    elif key.kind is Kind.INTEGER:
        strategy = st.integers(INT_MIN, INT_MAX)
    elif key.kind is Kind.BOOLEAN:
        strategy = st.booleans()
    elif key.kind is Kind.DATETIME:
        strategy = st.datetimes(timezones=st.sampled_from(OFFSETS)).map(lambda d: d.isoformat())
    elif key.kind is Kind.STRINGS:
        strategy = st.lists(storable_text, max_size=3)
    elif key.kind is Kind.CHANGES:
        change = st.fixed_dictionaries({"from": json_values, "to": json_values})
        strategy = st.dictionaries(storable_text, change, max_size=3)
    else:
        assert key.shape is not None
        strategy = _object(key.shape.keys, {k.name for k in key.shape.keys if k.required})
    return st.one_of(st.none(), strategy) if key.nullable else strategy


def _object(keys: tuple[Key, ...], required: set[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {k.name: _value(k) for k in keys if k.name in required},
        optional={k.name: _value(k) for k in keys if k.name not in required},
    )


def conforming(event: str) -> st.SearchStrategy[dict[str, Any]]:
    """Details of ``event``'s shape, with undeclared keys of any value besides."""
    family = FAMILY_OF[event]
    declared = {k.name for k in family.keys}
    extra = st.dictionaries(
        storable_text.filter(lambda k: k not in declared), json_values, max_size=2
    )
    return st.tuples(_object(family.keys, set(family.events[event])), extra).map(
        lambda pair: {**pair[1], **pair[0]}
    )


@st.composite
def anything_for(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """An event type and details that may or may not conform: conforming details with one
    key (at any depth) dropped or replaced by an arbitrary JSON value, or left alone."""
    event = draw(st.sampled_from(AuditEventType.values))
    details = draw(conforming(event))
    target: dict[str, Any] = details
    keys = [k.name for k in FAMILY_OF[event].keys]
    while True:
        name = draw(st.sampled_from(keys))
        value = target.get(name)
        if isinstance(value, dict) and value and draw(st.booleans()):
            target, keys = value, list(value)
            continue
        break
    action = draw(st.sampled_from(["keep", "drop", "replace"]))
    if action == "drop":
        target.pop(name, None)
    elif action == "replace":
        target[name] = draw(json_values)
    return event, details


# --- the registry --------------------------------------------------------------------------


def test_every_event_type_is_in_exactly_one_family() -> None:
    events = [event for family in DETAILS_FAMILIES for event in family.events]
    assert sorted(events) == sorted(AuditEventType.values)
    assert len(set(events)) == len(events)


def test_every_key_is_described_and_every_required_key_is_declared() -> None:
    names = [family.name for family in DETAILS_FAMILIES]
    assert len(set(names)) == len(names)
    for family in DETAILS_FAMILIES:
        assert family.description
        declared = [key.name for key in family.keys]
        assert len(set(declared)) == len(declared), family.name
        for event, required in family.events.items():
            assert set(required) <= set(declared), (family.name, event)
        for key in family.keys:
            assert key.description, (family.name, key.name)
            assert (key.kind is Kind.OBJECT) == (key.shape is not None)
            for inner in key.shape.keys if key.shape else ():
                assert inner.description, (key.shape.name if key.shape else "", inner.name)


# Each event type's required keys, pinned: removing one, or making one required, is a
# change of the published contract that integrations rely on.
REQUIRED = {
    "USER_REGISTERED": ("organization",),
    "USER_LOGIN": ("method",),
    "USER_CREATED": ("user",),
    "USER_UPDATED": ("user", "changes"),
    "USER_DELETED": ("user",),
    "SESSION_STARTED": ("session_id",),
    "SESSION_STOPPED": ("session_id",),
    "SESSION_EXTENDED": ("session_id", "extended_by_seconds"),
    "SESSION_EXPIRED": ("session_id",),
    "RESOURCE_CREATED": ("resource",),
    "RESOURCE_UPDATED": ("resource", "changes"),
    "RESOURCE_DELETED": ("resource",),
    "CREDENTIAL_CREATED": ("credential",),
    "CREDENTIAL_DELETED": ("credential",),
    "ROLE_CREATED": ("role",),
    "ROLE_UPDATED": ("role", "changes"),
    "ROLE_DELETED": ("role",),
    "AUDIT_LOG_PRUNED": ("entries", "before", "retentionDays", "pruneRecordIdsSha256"),
    "AUDIT_LOG_EXPORTED": ("format", "filter", "via"),
    "AUDIT_LOG_STREAM_CREATED": ("stream",),
    "AUDIT_LOG_STREAM_UPDATED": ("stream", "changes"),
    "AUDIT_LOG_STREAM_DELETED": ("stream",),
    "AUDIT_LOG_STREAM_PAUSED": ("stream", "reason"),
}


@pytest.mark.parametrize("event", AuditEventType.values)
def test_each_event_types_schema(event: str) -> None:
    schema = event_schema(event)
    assert schema["required"] == list(REQUIRED[event])
    assert set(schema["properties"]) == {key.name for key in FAMILY_OF[event].keys}
    valid = jsonschema_rs.Draft202012Validator({**schema, "$defs": json_schema()["$defs"]})
    example = _example(event)
    assert details_problems(event, example) == [] and valid.is_valid(example)
    for key in REQUIRED[event]:
        missing = {k: v for k, v in example.items() if k != key}
        assert details_problems(event, missing) == [(f"details.{key}", f"is required for {event}")]
        assert not valid.is_valid(missing)


def _example(event: str) -> dict[str, Any]:
    from core.management.commands.seed_demo import demo_details

    return demo_details(random.Random(1), event)


@pytest.mark.parametrize(
    ("event", "details", "problems"),
    [
        ("SESSION_STARTED", {"session_id": ""}, [("details.session_id", "must not be empty")]),
        (
            "SESSION_STARTED",
            {"session_id": "s", "duration_seconds": True},
            [("details.duration_seconds", f"must be an integer from {INT_MIN} to {INT_MAX}")],
        ),
        (
            "SESSION_STARTED",
            {"session_id": "s", "expires_at": "2026-02-30T00:00:00Z"},
            [
                (
                    "details.expires_at",
                    "must be an RFC 3339 date-time with its offset, such as 2026-01-31T12:00:00Z",
                )
            ],
        ),
        (
            "USER_CREATED",
            {"user": {"id": "7"}, "role": None},
            [
                ("details.user.email", "is required"),
                ("details.user.id", f"must be an integer from {INT_MIN} to {INT_MAX}"),
            ],
        ),
        ("USER_CREATED", {"user": {"email": "a@b"}, "role": None}, []),
        ("USER_DELETED", {"user": None}, [("details.user", "must be an object, not null")]),
        (
            "ROLE_UPDATED",
            {"role": {"name": "r", "permissions": ["a", 1]}, "changes": {"name": {"from": 1}}},
            [
                ("details.role.permissions[1]", "must be a string"),
                ("details.changes.name", 'must be an object with "from" and "to"'),
            ],
        ),
        ("RESOURCE_DELETED", {"resource": "vm-1", "anything": {"else": [1]}}, []),
    ],
)
def test_problems_name_the_key(event: str, details: dict[str, Any], problems: list[Any]) -> None:
    assert details_problems(event, details) == problems


@settings(max_examples=400, deadline=None)
@given(anything_for())
def test_the_checker_agrees_with_a_json_schema_validator(case: tuple[str, dict[str, Any]]) -> None:
    """Differential: audit/details.py's checker and jsonschema-rs, run on the published
    schema, accept and refuse the same details. (The checker also refuses dates that do not
    exist, such as February 30, which JSON Schema's pattern lets through; none are drawn.)"""
    event, details = case
    ours = details_problems(event, details) == []
    theirs = VALIDATOR.is_valid({"event": event, "details": details})
    assert ours == theirs, (event, details, details_problems(event, details))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(AuditEventType.values).flatmap(lambda e: st.tuples(st.just(e), conforming(e)))
)
def test_generated_conforming_details_conform(case: tuple[str, dict[str, Any]]) -> None:
    event, details = case
    assert details_problems(event, details) == []


# --- the published file --------------------------------------------------------------------


def test_the_json_schema_file_matches_the_code() -> None:
    committed = (ROOT / SCHEMA_FILE).read_text(encoding="utf-8")
    assert committed == json_schema_text(), (
        f"{SCHEMA_FILE} is out of date: run `make schema`, review the diff, commit it"
    )
    jsonschema_rs.meta.validate(json.loads(committed))


@pytest.mark.django_db
def test_the_json_schema_is_served_at_its_url(client: Client) -> None:
    response = client.get(SCHEMA_URL_PATH)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/schema+json"
    assert response.content.decode() == json_schema_text()
    assert client.post(SCHEMA_URL_PATH).status_code == 405


# --- what the backend records itself -------------------------------------------------------


@TRANSACTIONAL
def test_every_event_the_backend_records_conforms(tmp_path: Path) -> None:
    from io import StringIO

    from django.core.management import call_command
    from django.test import override_settings

    from audit.log_streams import (
        audit_log_stream_create,
        audit_log_stream_delete,
        audit_log_stream_update,
        deliver_stream,
    )
    from audit.services import audit_log_prune, audit_log_record
    from core.models import AuditLogStream
    from core.services import (
        organization_create,
        role_create,
        role_delete,
        role_update,
        user_create,
        user_delete,
        user_update,
    )

    org = organization_create(slug="shapes", name="Shapes", plan="paid", audit_retention_days=1)
    admin = user_create(
        organization=org, email="admin@shapes.test", password="pw-12345678", is_admin=True
    )
    role = role_create(organization=org, name="Auditor", description="Reads")
    role_update(role=role, name="Auditors", description="Reads logs")
    member = user_create(organization=org, email="m@shapes.test", name="M", role=role)
    user_update(user=member, name="Em", is_active=False, role=None)
    user_delete(user=member)
    role_delete(role=role)
    browser = Client(HTTP_USER_AGENT="Mozilla/5.0 (test)")
    assert (
        browser.post(
            "/accounts/login/", {"username": admin.email, "password": "pw-12345678"}
        ).status_code
        == 302
    )
    now = dj_timezone.now()
    audit_log_record(
        organization=org,
        event="SESSION_EXPIRED",
        details={"session_id": "s1"},
        time=now - timedelta(days=3),
    )
    assert (
        audit_log_prune(organization=org, before=now - timedelta(days=1), retention_days=1).entries
        == 1
    )

    # Exports, by HTTP and by command, and a stream's whole life, paused included.
    assert browser.get("/audit-logs/export?format=csv&eventType=USER_LOGIN").status_code == 200
    call_command("export_audit_logs", org.slug, "-o", str(tmp_path / "x.jsonl"), stderr=StringIO())
    with override_settings(AUDIT_LOG_STREAM_BATCH_WAIT_MS=0):
        stream, _ = audit_log_stream_create(organization=org, name="s", url="https://10.0.0.1/")
        stream, _ = audit_log_stream_update(stream=stream, name="siem", rotate_secret=True)
        AuditLogStream.objects.filter(pk=stream.pk).update(failing_since=now - timedelta(days=9))
        assert deliver_stream(stream.pk, "test").failed
        audit_log_stream_delete(stream=stream)

    entries = list(AuditLog.objects.filter(organization=org).order_by("id"))
    recorded = {entry.event for entry in entries}
    backend_events = {
        "USER_REGISTERED", "USER_LOGIN", "USER_CREATED", "USER_UPDATED", "USER_DELETED",
        "ROLE_CREATED", "ROLE_UPDATED", "ROLE_DELETED",
        *RECORDED_BY_THE_AUDIT_LOG,
    }  # fmt: skip
    assert recorded == backend_events
    for entry in entries:
        assert details_problems(entry.event, entry.details) == [], (entry.event, entry.details)
        assert VALIDATOR.is_valid({"event": entry.event, "details": entry.details})
    login = next(e for e in entries if e.event == "USER_LOGIN")
    assert login.details == {"method": "password", "user_agent": "Mozilla/5.0 (test)"}


def test_the_readme_documents_every_family_and_key() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Typed details", 1)[1].split("\n### ", 1)[0]
    for family in DETAILS_FAMILIES:
        row = next(line for line in section.splitlines() if line.startswith(f"| `{family.name}`"))
        for event in family.events:
            assert f"`{event}`" in row, (family.name, event)
        keys = [*family.keys, *(k for key in family.keys if key.shape for k in key.shape.keys)]
        for key in keys:
            assert f"`{key.name}`" in row, (family.name, key.name)
        for event, required in family.events.items():
            for name in required:
                marked = f"**`{name}`**" in row or f"`{name}` (**required** for `{event}`" in row
                assert marked, (family.name, event, name)
