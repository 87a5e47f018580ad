"""Each event type's details, checked and published from the one registry (audit/events.py).

``details_problems(event, details)`` lists what is wrong with an event's details, as
``(path, message)`` pairs: ``("details.session_id", "is required for SESSION_STARTED")``.
Required keys must be present and every declared key must hold a value of its kind;
undeclared keys are kept as they are (senders add context). The writers that take details
from outside call it: ``recordAuditEvents`` (audit/services.py) and ``import_audit_events``
(audit/importing.py).

``json_schema()`` is the same definitions as JSON Schema (draft 2020-12), for integrations
to validate before they send: ``$defs`` holds one definition per event type (and one per
nested object), and the document itself validates an ``{"event": ..., "details": ...}``
pair. It is written to ``audit-details.schema.json`` by ``make schema`` (checked for drift
by ``make schema-check``) and served at ``/schemas/audit-details.json``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from audit.events import FAMILY_OF, AuditEventType, Family, Key, Kind, Shape

INT_MIN: Final = -(2**31)
INT_MAX: Final = 2**31 - 1
# RFC 3339's date-time, with its offset (Z or +hh:mm); the date must also exist.
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
DATETIME_PATTERN: Final = _DATETIME.pattern

_KIND_WORDS: Final = {
    Kind.STRING: "a string",
    Kind.INTEGER: f"an integer from {INT_MIN} to {INT_MAX}",
    Kind.BOOLEAN: "true or false",
    Kind.DATETIME: "an RFC 3339 date-time with its offset, such as 2026-01-31T12:00:00Z",
    Kind.STRINGS: "a list of strings",
    Kind.CHANGES: 'an object of {"from": ..., "to": ...} objects, one per changed field',
    Kind.OBJECT: "an object",
}


def details_problems(event: str, details: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What is wrong with ``details`` for ``event`` (a known event type): (path, message)
    pairs, in the registry's key order; empty when they conform."""
    family = FAMILY_OF[event]
    problems: list[tuple[str, str]] = []
    required = family.events[event]
    for key in family.keys:
        path = f"details.{key.name}"
        if key.name not in details:
            if key.name in required:
                problems.append((path, f"is required for {event}"))
            continue
        problems += _value_problems(key, details[key.name], path)
    return problems


def _value_problems(key: Key, value: Any, path: str) -> list[tuple[str, str]]:
    if value is None:
        return [] if key.nullable else [(path, f"must be {_KIND_WORDS[key.kind]}, not null")]
    wrong = [(path, f"must be {_KIND_WORDS[key.kind]}")]
    kind = key.kind
    if kind is Kind.STRING:
        if not isinstance(value, str):
            return wrong
        if len(value) < key.min_length:
            return [(path, "must not be empty")]
    elif kind is Kind.INTEGER:
        if not is_integer(value):
            return wrong
    elif kind is Kind.BOOLEAN:
        if not isinstance(value, bool):
            return wrong
    elif kind is Kind.DATETIME:
        if not (isinstance(value, str) and is_datetime(value)):
            return wrong
    elif kind is Kind.STRINGS:
        if not isinstance(value, list):
            return wrong
        return [
            (f"{path}[{n}]", "must be a string")
            for n, item in enumerate(value)
            if not isinstance(item, str)
        ]
    elif kind is Kind.CHANGES:
        if not isinstance(value, Mapping):
            return wrong
        return [
            (f"{path}.{name}", 'must be an object with "from" and "to"')
            for name, change in value.items()
            if not (isinstance(change, Mapping) and "from" in change and "to" in change)
        ]
    elif kind is Kind.OBJECT:
        assert key.shape is not None
        if not isinstance(value, Mapping):
            return wrong
        problems: list[tuple[str, str]] = []
        for inner in key.shape.keys:
            inner_path = f"{path}.{inner.name}"
            if inner.name not in value:
                if inner.required:
                    problems.append((inner_path, "is required"))
                continue
            problems += _value_problems(inner, value[inner.name], inner_path)
        return problems
    return []


def is_integer(value: Any) -> bool:
    """An integer as JSON Schema counts them (3 and 3.0; never true), in GraphQL Int's range."""
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        if not value.is_integer():
            return False
        value = int(value)
    return isinstance(value, int) and INT_MIN <= value <= INT_MAX


def is_datetime(value: str) -> bool:
    if not _DATETIME.match(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


# --- JSON Schema ---------------------------------------------------------------------------

SCHEMA_FILE: Final = "audit-details.schema.json"
SCHEMA_URL_PATH: Final = "/schemas/audit-details.json"


def _key_schema(key: Key) -> dict[str, Any]:
    kind = key.kind
    schema: dict[str, Any]
    if kind is Kind.STRING:
        schema = {"type": "string"}
        if key.min_length:
            schema["minLength"] = key.min_length
    elif kind is Kind.INTEGER:
        schema = {"type": "integer", "minimum": INT_MIN, "maximum": INT_MAX}
    elif kind is Kind.BOOLEAN:
        schema = {"type": "boolean"}
    elif kind is Kind.DATETIME:
        schema = {"type": "string", "format": "date-time", "pattern": DATETIME_PATTERN}
    elif kind is Kind.STRINGS:
        schema = {"type": "array", "items": {"type": "string"}}
    elif kind is Kind.CHANGES:
        schema = {
            "type": "object",
            "additionalProperties": {"type": "object", "required": ["from", "to"]},
        }
    else:
        assert key.shape is not None
        schema = {"$ref": f"#/$defs/{key.shape.name}"}
    if key.nullable:
        schema = {"anyOf": [schema, {"type": "null"}]}
    return {"description": key.description, **schema}


def _object_schema(description: str, keys: tuple[Key, ...], required: list[str]) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "description": description,
        "type": "object",
        "properties": {key.name: _key_schema(key) for key in keys},
    }
    if required:
        schema["required"] = required
    return schema


def _shapes(keys: tuple[Key, ...]) -> list[Shape]:
    found: list[Shape] = []
    for key in keys:
        if key.shape is not None:
            found += [key.shape, *_shapes(key.shape.keys)]
    return found


def event_schema(event: str) -> dict[str, Any]:
    """The JSON Schema of one event type's details (references resolve in ``json_schema``)."""
    family: Family = FAMILY_OF[event]
    return _object_schema(
        f"{event}: {AuditEventType(event).label}. {family.description}",
        family.keys,
        list(family.events[event]),
    )


def json_schema() -> dict[str, Any]:
    """The whole document: an {event, details} pair, with every definition in ``$defs``."""
    definitions: dict[str, Any] = {event: event_schema(event) for event in AuditEventType.values}
    for family in FAMILY_OF.values():
        for shape in _shapes(family.keys):
            definitions[shape.name] = _object_schema(
                shape.description,
                shape.keys,
                [key.name for key in shape.keys if key.required],
            )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Audit event details",
        "description": (
            "The details each audit event type carries. This document validates an "
            '{"event": ..., "details": ...} pair, as recordAuditEvents and '
            "import_audit_events receive them; `$defs/<EVENT_TYPE>` validates the details "
            "of one event type. Keys not listed are allowed and kept."
        ),
        "type": "object",
        "required": ["event", "details"],
        "properties": {
            "event": {"enum": list(AuditEventType.values)},
            "details": {"type": "object"},
        },
        "allOf": [
            {
                "if": {"properties": {"event": {"const": event}}, "required": ["event"]},
                "then": {"properties": {"details": {"$ref": f"#/$defs/{event}"}}},
            }
            for event in AuditEventType.values
        ],
        "$defs": definitions,
    }


def json_schema_text() -> str:
    """The file's text: stable key order, two-space indent, a final newline."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
