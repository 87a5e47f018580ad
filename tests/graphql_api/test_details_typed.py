"""AuditLog.detailsTyped: what a generated client reads equals the recorded JSON, key by
key; recordAuditEvents refuses details of the wrong shape naming the event's index and
the key; entries of another shape read as UncheckedDetails."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.events import DETAILS_FAMILIES, FAMILY_OF, RECORDED_BY_THE_AUDIT_LOG, Key, Kind
from audit.models import AuditLog
from audit.services import audit_log_record
from core.models import ApiTokenScope, User
from core.services import api_token_create
from graphql_api.details import graphql_name
from tests.audit.test_details import conforming
from tests.graphql_api.conftest import GraphQLClient, data_of

pytestmark = pytest.mark.django_db

RECORD = """
mutation Record($events: [AuditEventInput!]!) {
  recordAuditEvents(events: $events) { events { id } }
}
"""


def _selection(keys: tuple[Key, ...]) -> str:
    fields = []
    for key in keys:
        name = graphql_name(key)
        if key.kind is Kind.CHANGES:
            fields.append(f"{name} {{ field from to }}")
        elif key.kind is Kind.OBJECT:
            assert key.shape is not None
            fields.append(f"{name} {{ {_selection(key.shape.keys)} }}")
        else:
            fields.append(name)
    return " ".join(fields)


# What a client generated from schema.graphql would select: every member, every field.
TYPED = (
    "detailsTyped { __typename "
    + " ".join(f"... on {f.name} {{ {_selection(f.keys)} }}" for f in DETAILS_FAMILIES)
    + " ... on UncheckedDetails { problem } }"
)
PAGE = f"""
query {{ auditLogs(first: 100) {{ edges {{ node {{ id event details {TYPED} }} }} }} }}
"""


def _as_json(
    keys: tuple[Key, ...], typed: dict[str, Any], recorded: dict[str, Any]
) -> dict[str, Any]:
    """The typed value back as the recorded JSON's declared keys (null: absent or null)."""
    result: dict[str, Any] = {}
    for key in keys:
        value = typed[graphql_name(key)]
        if value is None and key.name not in recorded:
            continue
        if value is not None and key.kind is Kind.CHANGES:
            value = {c["field"]: {"from": c["from"], "to": c["to"]} for c in value}
        elif value is not None and key.kind is Kind.OBJECT:
            assert key.shape is not None
            value = _as_json(key.shape.keys, value, recorded[key.name])
        result[key.name] = value
    return result


def _declared(keys: tuple[Key, ...], recorded: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key in keys:
        if key.name not in recorded:
            continue
        value = recorded[key.name]
        if key.kind is Kind.OBJECT and value is not None:
            assert key.shape is not None
            value = _declared(key.shape.keys, value)
        elif key.kind is Kind.CHANGES:
            value = {name: {"from": c["from"], "to": c["to"]} for name, c in value.items()}
        elif key.kind is Kind.INTEGER:
            value = int(value)
        result[key.name] = value
    return result


@pytest.fixture
def writer(admin: User) -> GraphQLClient:
    token = api_token_create(user=admin, name="ingest", scopes=(ApiTokenScope.AUDIT_WRITE,))[1]
    return GraphQLClient(Client(), token=token)


KEYS = itertools.count()
SENT_BY_INTEGRATIONS = [
    e for f in DETAILS_FAMILIES for e in f.events if e not in RECORDED_BY_THE_AUDIT_LOG
]


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(
        st.sampled_from(SENT_BY_INTEGRATIONS).flatmap(
            lambda e: st.tuples(st.just(e), conforming(e))
        ),
        min_size=1,
        max_size=12,
    )
)
def test_the_typed_view_equals_the_json(
    writer: GraphQLClient,
    admin_gql: GraphQLClient,
    admin: User,
    cases: list[tuple[str, dict[str, Any]]],
) -> None:
    events = [
        {"idempotencyKey": f"typed-{next(KEYS)}", "event": event, "details": details}
        for event, details in cases
    ]
    recorded = data_of(writer.post(RECORD, {"events": events}))["recordAuditEvents"]["events"]
    nodes = {
        e["node"]["id"]: e["node"] for e in data_of(admin_gql.post(PAGE))["auditLogs"]["edges"]
    }
    for sent, entry in zip(events, recorded, strict=True):
        node = nodes[entry["id"]]
        assert node["event"] == sent["event"]
        family = FAMILY_OF[node["event"]]
        typed = node["detailsTyped"]
        assert typed["__typename"] == family.name
        assert _as_json(family.keys, typed, node["details"]) == _declared(
            family.keys, node["details"]
        )


def test_every_family_is_read_as_its_type(writer: GraphQLClient, admin_gql: GraphQLClient) -> None:
    from tests.support import valid_details

    events = [
        {
            "idempotencyKey": f"each-{event}",
            "event": event,
            "details": valid_details(event, extra=1),
        }
        for event in SENT_BY_INTEGRATIONS
    ]
    data_of(writer.post(RECORD, {"events": events}))
    nodes = [e["node"] for e in data_of(admin_gql.post(PAGE))["auditLogs"]["edges"]]
    seen = {n["detailsTyped"]["__typename"] for n in nodes if n["event"] in SENT_BY_INTEGRATIONS}
    assert seen == {FAMILY_OF[e].name for e in SENT_BY_INTEGRATIONS}
    resource = next(n for n in nodes if n["event"] == "RESOURCE_UPDATED")
    assert resource["detailsTyped"]["resource"] == resource["details"]["resource"]
    assert resource["detailsTyped"]["changes"] == [
        {"field": name, "from": c["from"], "to": c["to"]}
        for name, c in resource["details"]["changes"].items()
    ]
    assert "extra" not in resource["detailsTyped"] and resource["details"]["extra"] == 1


def test_details_of_another_shape_read_as_unchecked(admin: User, admin_gql: GraphQLClient) -> None:
    assert admin.organization is not None
    entry = audit_log_record(
        organization=admin.organization, event="SESSION_STARTED", details={"s": 1}
    )
    node = next(
        e["node"]
        for e in data_of(admin_gql.post(PAGE))["auditLogs"]["edges"]
        if e["node"]["details"] == {"s": 1}
    )
    assert node["event"] == entry.event
    assert node["detailsTyped"] == {
        "__typename": "UncheckedDetails",
        "problem": "details.session_id is required for SESSION_STARTED",
    }


def test_a_refusal_names_the_index_and_the_key(writer: GraphQLClient, admin: User) -> None:
    before = AuditLog.objects.filter(organization=admin.organization).count()
    body = writer.post(
        RECORD,
        {
            "events": [
                {"idempotencyKey": "a", "event": "USER_LOGIN", "details": {"method": "sso"}},
                {
                    "idempotencyKey": "b",
                    "event": "SESSION_EXTENDED",
                    "details": {"session_id": "s"},
                },
                {"idempotencyKey": "c", "event": "ROLE_CREATED", "details": {"role": {"name": 5}}},
                {"idempotencyKey": "d", "event": "USER_LOGIN"},
            ]
        },
    )
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert [(p["index"], p["field"], p["message"]) for p in error["extensions"]["problems"]] == [
        (1, "details.extended_by_seconds", "is required for SESSION_EXTENDED"),
        (2, "details.role.name", "must be a string"),
        (3, "details.method", "is required for USER_LOGIN"),
    ]
    assert (
        "events[1].details.extended_by_seconds is required for SESSION_EXTENDED" in error["message"]
    )
    assert AuditLog.objects.filter(organization=admin.organization).count() == before


def test_fields_of_the_same_name_have_the_same_type_in_every_member() -> None:
    """GraphQL refuses a document that selects one name with two types from two members
    of a union, so a client could not select every member at once."""
    from graphql import GraphQLUnionType

    from graphql_api.schema import schema

    union = schema._schema.type_map["AuditDetails"]
    assert isinstance(union, GraphQLUnionType)
    seen: dict[str, str] = {}
    for member in union.types:
        for name, field in member.fields.items():
            assert seen.setdefault(name, str(field.type)) == str(field.type), (member.name, name)
