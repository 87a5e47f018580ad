"""The published contract: schema.graphql matches the code, names match PRODUCT.md, and
every type, field and argument is described."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLUnionType,
)
from strawberry.printer import print_schema

from audit.events import AuditEventType as E
from graphql_api.schema import schema

ROOT = Path(__file__).resolve().parents[2]
BUILT_IN = {"String", "Int", "Float", "Boolean", "ID"}


def test_schema_file_matches_the_code() -> None:
    committed = (ROOT / "schema.graphql").read_text()
    assert committed == print_schema(schema) + "\n", (
        "schema.graphql is out of date: run `make schema`, review the diff, commit it"
    )


def _fields_of(named: object) -> dict[str, Any]:
    assert isinstance(named, GraphQLObjectType | GraphQLInputObjectType)
    return dict(named.fields)


def test_contract_names() -> None:
    gql = schema._schema
    query = gql.query_type
    assert query is not None
    assert set(query.fields) == {
        "auditLogs",
        "auditLogIntegrity",
        "auditEventTypes",
        "auditLogStreams",
    }
    assert str(query.fields["auditLogIntegrity"].type) == "AuditLogIntegrity!"
    assert set(query.fields["auditLogs"].args) == {"filter", "first", "after", "last", "before"}
    assert str(query.fields["auditLogs"].type) == "AuditLogConnection!"
    assert str(query.fields["auditEventTypes"].type) == "[AuditEventTypeInfo!]!"
    fields = {
        name: {f: str(t.type) for f, t in _fields_of(gql.type_map[name]).items()}
        for name in (
            "AuditLogFilter",
            "AuditLogConnection",
            "AuditLogEdge",
            "AuditLog",
            "AuditUser",
        )
    }
    assert fields["AuditLogFilter"] == {
        "eventType": "AuditEventType",
        "eventTypes": "[AuditEventType!]",
        "userEmail": "String",
        "from": "DateTime",
        "to": "DateTime",
        "ip": "String",
        "search": "String",
        "details": "JSON",
    }
    assert fields["AuditLogConnection"] == {
        "totalCount": "Int!",
        "pageInfo": "PageInfo!",
        "edges": "[AuditLogEdge!]!",
    }
    assert fields["AuditLogEdge"] == {"cursor": "String!", "node": "AuditLog!"}
    assert fields["AuditLog"] == {
        "id": "ID!",
        "event": "AuditEventType!",
        "user": "AuditUser",
        "ip": "String",
        "details": "JSON!",
        "time": "DateTime!",
        "detailsTyped": "AuditDetails!",
    }
    assert fields["AuditUser"] == {"id": "ID", "email": "String!", "name": "String"}
    audit_log = gql.type_map["AuditLog"]
    assert isinstance(audit_log, GraphQLObjectType)
    assert [i.name for i in audit_log.interfaces] == ["Node"]
    enum = gql.type_map["AuditEventType"]
    assert isinstance(enum, GraphQLEnumType)
    assert list(enum.values) == E.values


def test_everything_is_described() -> None:
    missing: list[str] = []
    for name, named in schema._schema.type_map.items():
        if name.startswith("__") or name in BUILT_IN:
            continue
        if not named.description:
            missing.append(name)
        if isinstance(named, GraphQLObjectType | GraphQLInterfaceType | GraphQLInputObjectType):
            for field_name, field in named.fields.items():
                if not field.description:
                    missing.append(f"{name}.{field_name}")
                for arg_name, arg in getattr(field, "args", {}).items():
                    if not arg.description:
                        missing.append(f"{name}.{field_name}({arg_name})")
        elif isinstance(named, GraphQLEnumType):
            missing += [f"{name}.{v}" for v, value in named.values.items() if not value.description]
        else:
            assert isinstance(named, GraphQLScalarType | GraphQLUnionType)
    assert missing == []


def test_each_event_of_a_subscription_gets_its_own_subfield_memo() -> None:
    """graphql-core 3.3 shares one memo of collected sub-fields among all the events of a
    subscription, which grows with every event; the schema's execution context gives each
    event its own. When the first assertion fails, graphql-core has changed and the
    override in graphql_api/schema.py may go."""
    from graphql import parse
    from graphql.execution.executor import Executor

    from graphql_api.schema import AuditExecutionContext, schema

    document = parse("subscription { auditLogCreated { cursor } }")
    upstream = Executor.build(schema._schema, document)
    ours = AuditExecutionContext.build(schema._schema, document)
    assert isinstance(upstream, Executor) and isinstance(ours, AuditExecutionContext)
    assert upstream.build_per_event_executor({})._relevant_sub_fields is (
        upstream._relevant_sub_fields
    )
    first, second = (ours.build_per_event_executor({}) for _ in range(2))
    assert first._relevant_sub_fields is not ours._relevant_sub_fields
    assert first._relevant_sub_fields is not second._relevant_sub_fields
