"""``AuditLog.detailsTyped``: each entry's details as a typed value, generated from the one
registry of event types (audit/events.py).

Each family of event types is one object type of the union ``AuditDetails``, with a field
per declared key (its GraphQL name is the key in camelCase: ``session_id`` is
``sessionId``, unless the registry names it: UserDetails' ``role`` is ``roleName``). A field is non-null when every event type of the family requires its key;
``changes`` is a list of ``AuditFieldChange`` (field, from, to) in the JSON's order.
Entries whose details do not have their event type's shape (recorded before details were
typed, imported with ``--no-details-check``, or recorded by the backend's own bulk
loaders) read as ``UncheckedDetails``, which says why; ``details`` always has the JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Union

import strawberry
from strawberry.scalars import JSON
from strawberry.utils.str_converters import to_camel_case

from audit.details import details_problems
from audit.events import DETAILS_FAMILIES, FAMILY_OF, Family, Key, Kind, Shape


@strawberry.type(description="One field an action changed, with its value before and after.")
class AuditFieldChange:
    field: str = strawberry.field(description="The field's name, as the details name it.")
    from_: JSON | None = strawberry.field(name="from", description="Its value before.")
    to: JSON | None = strawberry.field(description="Its value after.")


@strawberry.type(
    description=(
        "Details that do not have the shape their event type declares (see `problem`): "
        "entries recorded before details were typed, or imported without the check. "
        "AuditLog.details holds them as recorded."
    )
)
class UncheckedDetails:
    problem: str = strawberry.field(
        description="The first way the details differ from their event type's shape."
    )


def python_name(key: str) -> str:
    return key if key.isidentifier() else "_" + key


def graphql_name(key: Key) -> str:
    return key.graphql or to_camel_case(key.name)


def _annotation(key: Key, always: bool) -> Any:
    base: Any
    if key.kind is Kind.STRING or key.kind is Kind.DATETIME:
        base = str
    elif key.kind is Kind.INTEGER:
        base = int
    elif key.kind is Kind.BOOLEAN:
        base = bool
    elif key.kind is Kind.STRINGS:
        base = list[str]
    elif key.kind is Kind.CHANGES:
        base = list[AuditFieldChange]
    else:
        assert key.shape is not None
        base = _SHAPE_TYPES[key.shape.name]
    return base if always and not key.nullable else base | None


def _description(key: Key) -> str:
    if key.kind is Kind.DATETIME:
        return key.description + " RFC 3339, as recorded."
    return key.description


def _object_type(name: str, description: str, keys: tuple[Key, ...], always: set[str]) -> type:
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {}
    for key in keys:
        attribute = python_name(key.name)
        annotations[attribute] = _annotation(key, key.name in always)
        namespace[attribute] = strawberry.field(
            name=graphql_name(key), description=_description(key), default=None
        )
    cls = type(name, (), {"__annotations__": annotations, "__module__": __name__, **namespace})
    return strawberry.type(cls, name=name, description=description)


_SHAPE_TYPES: dict[str, type] = {}


def _shape_type(shape: Shape) -> type:
    if shape.name not in _SHAPE_TYPES:
        for key in shape.keys:
            if key.shape is not None:
                _shape_type(key.shape)
        _SHAPE_TYPES[shape.name] = _object_type(
            shape.name,
            shape.description,
            shape.keys,
            {key.name for key in shape.keys if key.required},
        )
    return _SHAPE_TYPES[shape.name]


def _family_type(family: Family) -> type:
    for key in family.keys:
        if key.shape is not None:
            _shape_type(key.shape)
    always = set.intersection(*(set(required) for required in family.events.values()))
    return _object_type(family.name, family.description, family.keys, always)


FAMILY_TYPES: dict[str, type] = {family.name: _family_type(family) for family in DETAILS_FAMILIES}

AuditDetails: Any = Annotated[
    Union[(*FAMILY_TYPES.values(), UncheckedDetails)],  # type: ignore[valid-type]
    strawberry.union(
        "AuditDetails",
        description=(
            "An entry's details as a typed value: one type per family of event types "
            "(users, sessions, resources, ...), generated from the same definitions as the "
            "JSON Schema at /schemas/audit-details.json. Keys the event type does not "
            "declare are in AuditLog.details only."
        ),
    ),
]


def _value(key: Key, value: Any) -> Any:
    if value is None:
        return None
    if key.kind is Kind.INTEGER:
        return int(value)
    if key.kind is Kind.CHANGES:
        return [
            AuditFieldChange(field=name, from_=change["from"], to=change["to"])
            for name, change in value.items()
        ]
    if key.kind is Kind.OBJECT:
        assert key.shape is not None
        return _instance(_SHAPE_TYPES[key.shape.name], key.shape.keys, value)
    return value


def _instance(cls: type, keys: tuple[Key, ...], values: Mapping[str, Any]) -> Any:
    return cls(
        **{python_name(key.name): _value(key, values.get(key.name)) for key in keys}  # type: ignore[call-arg]
    )


def typed_details(event: str, details: Any) -> Any:
    """The union member for one entry (its details conform), or UncheckedDetails."""
    if not isinstance(details, Mapping):
        return UncheckedDetails(problem="details is not a JSON object")
    problems = details_problems(event, details)
    if problems:
        path, message = problems[0]
        return UncheckedDetails(problem=f"{path} {message}")
    family = FAMILY_OF[event]
    return _instance(FAMILY_TYPES[family.name], family.keys, details)
