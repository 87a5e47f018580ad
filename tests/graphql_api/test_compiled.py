"""The compiled read path (graphql_api/compiled.py) against Strawberry's.

The differential test is the licence of the fast path: hypothesis writes documents over
the schema (random selections, aliases, named and inline fragments with and without type
conditions, @skip and @include with literals and variables, __typename, page sizes,
filters and cursors, valid and not) and sends each, as one of several callers, through
the real view twice: once with the compiled path on, once with it off. The two responses
must be the same to the byte of their parsed JSON, keys in the same order: data and
errors, with messages, paths, locations and codes. The data is made of entries chosen to
be awkward (shared timestamps, deleted and missing users, IPv6, every JSON type in the
details, non-ASCII and escapes).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from random import Random
from typing import Any

import pytest
from django.test import Client, override_settings
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from audit.events import AuditEventType as E
from audit.selectors import AuditLogPosition
from audit.services import AuditEntryDraft, audit_log_bulk_create, audit_log_seal, audit_log_verify
from core.models import Organization, User
from core.services import api_token_create, api_token_revoke, user_delete
from graphql_api import compiled
from graphql_api.cursors import cursor_encode
from tests.support import TRANSACTIONAL

# Sealing and verifying (the integrity field's data) need transactions of their own.
pytestmark = TRANSACTIONAL

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

DETAILS: list[dict[str, Any]] = [
    {},
    {"resource": "vm-12", "region": "eu-west-1"},
    {"nested": {"deep": [1, 2.5, -3, True, False, None, {"x": "y"}]}, "empty": [], "obj": {}},
    {"text": 'quotes " and \\ backslashes, tab\t newline\n', "unicode": "Zoë 日本 🚀"},
    {"big": 9007199254740993, "neg": -(2**62), "small": 1e-7, "exp": 1.5e300, "zero": 0.0},
    {"changes": {"name": ["old", "new"]}, "permissions": ["read", "write"]},
    {"a" * 40: "long key", "": "empty key", "control": "\u0001\u001f"},
]


@dataclass
class World:
    org: Organization
    tokens: dict[str, str | None]  # caller name -> bearer token
    emails: list[str]
    cursors: list[str]


@pytest.fixture
def world(
    admin: User,
    make_org: Callable[..., Organization],
    make_user: Callable[..., User],
) -> World:
    org = admin.organization
    assert org is not None
    member = make_user(org, email="grace.hopper@example.test", name="Grace Hopper")
    gone = make_user(org, email="leaving@example.test", name="")
    other = make_org("paid")
    other_admin = make_user(other, admin=True)
    free = make_org("free")
    free_admin = make_user(free, admin=True)
    emails = [admin.email, member.email, gone.email, "outsider@elsewhere.test"]
    kinds = list(E)
    drafts = []
    for i in range(40):
        drafts.append(
            AuditEntryDraft(
                event=kinds[i % len(kinds)].value,
                # Groups of three share a time; some times have no microseconds.
                time=T0 + timedelta(hours=i // 3, microseconds=(i % 2) * 123_456),
                user_email=None if i % 7 == 0 else emails[i % len(emails)],
                user_name=None if i % 5 == 0 else f"Name {i}",
                ip=[None, "203.0.113.7", "2001:db8::1", "::ffff:192.0.2.1"][i % 4],
                details=DETAILS[i % len(DETAILS)],
            )
        )
    audit_log_bulk_create(organization=org, drafts=drafts)
    audit_log_bulk_create(
        organization=other,
        drafts=[AuditEntryDraft(event=E.USER_LOGIN.value, time=T0, user_email="x@y.test")],
    )
    user_delete(user=gone)  # entries keep the email snapshot, lose the link
    audit_log_seal(organization=org, block=16)
    audit_log_verify(organization=org)
    revoked = api_token_create(user=admin, name="revoked")
    api_token_revoke(token=revoked[0])
    from audit.models import AuditLog

    positions = [
        AuditLogPosition(time=t, id=pk)
        for t, pk in AuditLog.objects.filter(organization=org).values_list("time", "id")
    ]
    cursors = [cursor_encode(organization_id=org.pk, position=p) for p in sorted(positions)[::7]]
    cursors.append(cursor_encode(organization_id=other.pk, position=positions[0]))
    cursors += ["not-a-cursor", "", cursors[0][:-2] + "AA"]
    return World(
        org=org,
        tokens={
            "admin": api_token_create(user=admin, name="t")[1],
            "member": api_token_create(user=member, name="t")[1],
            "other": api_token_create(user=other_admin, name="t")[1],
            "free": api_token_create(user=free_admin, name="t")[1],
            "revoked": revoked[1],
            "none": None,
        },
        emails=emails,
        cursors=cursors,
    )


# --- documents ----------------------------------------------------------------------------

# The test's own model of the readable types: field -> type of its selection (None: a leaf).
TYPES: dict[str, dict[str, str | None]] = {
    "AuditLogConnection": {"totalCount": None, "pageInfo": "PageInfo", "edges": "AuditLogEdge"},
    "PageInfo": {
        "hasNextPage": None,
        "hasPreviousPage": None,
        "startCursor": None,
        "endCursor": None,
    },
    "AuditLogEdge": {"cursor": None, "node": "AuditLog"},
    "AuditLog": {
        "id": None,
        "event": None,
        "ip": None,
        "details": None,
        "time": None,
        "user": "AuditUser",
    },
    "AuditUser": {"id": None, "email": None, "name": None},
    "AuditLogIntegrity": {
        "status": None,
        "verifiedAt": None,
        "lastVerifiedCheckpoint": "AuditCheckpoint",
        "entriesVerified": None,
        "entriesPruned": None,
        "entriesNotYetSealed": None,
        "problem": None,
        "newestCheckpoint": "AuditCheckpoint",
    },
    "AuditCheckpoint": {"sequence": None, "sealedAt": None, "entries": None},
    "AuditEventTypeInfo": {"value": None, "description": None},
}
# Type conditions a fragment on each type may use: the type, or an interface it has.
CONDITIONS = {"AuditLog": ["AuditLog", "Node"]}
ALIASES = ["a", "b", "c", "edges", "node", "id"]


@dataclass
class Doc:
    """A document being written: its named fragments and variable definitions."""

    fragments: list[str]
    variables: dict[str, str]  # name -> GraphQL type
    values: dict[str, Any]
    random: Random
    aliases: int = 0


def directive(draw: st.DrawFn, doc: Doc) -> str:
    kind = draw(st.sampled_from(["", "", "", "", "@include", "@skip", "@include@skip"]))
    if not kind:
        return ""
    out = []
    for name in ("include", "skip"):
        if name not in kind:
            continue
        if draw(st.booleans()):
            out.append(f"@{name}(if: {str(draw(st.booleans())).lower()})")
        else:
            var = f"flag{len(doc.variables)}"
            doc.variables[var] = draw(
                st.sampled_from(["Boolean!"] * 3 + ["Boolean! = false", "Boolean! = true"])
            )
            if "=" not in doc.variables[var] or draw(st.booleans()):
                doc.values[var] = draw(st.sampled_from([True, False] * 8 + [None, "yes"]))
            out.append(f"@{name}(if: ${var})")
    return " ".join(out)


def alias_of(draw: st.DrawFn, doc: Doc) -> str:
    """Mostly no alias; sometimes a fresh one; now and then one that may collide (which
    validation refuses when the fields differ)."""
    kind = doc.random.random()
    if kind < 0.8:
        return ""
    doc.aliases += 1
    return f"{draw(st.sampled_from(ALIASES))}{doc.aliases if kind < 0.97 else ''}: "


def conditions(type_name: str, field_name: str) -> list[str]:
    # A fragment on the Node interface may select only what Node has.
    if field_name in ("id", "__typename"):
        return CONDITIONS.get(type_name, [type_name])
    return [type_name]


def selection(draw: st.DrawFn, doc: Doc, type_name: str, depth: int = 0) -> str:
    fields = TYPES[type_name]
    names = draw(st.lists(st.sampled_from([*fields, "__typename"]), min_size=1, max_size=7))
    parts = []
    for name in names:
        alias = alias_of(draw, doc)
        sub = fields.get(name)
        body = f" {{ {selection(draw, doc, sub, depth + 1)} }}" if sub else ""
        if sub and doc.random.random() < 0.005:
            body = ""  # an object without a selection: a validation error
        part = f"{alias}{name}{directive(draw, doc)}{body}"
        wrap = doc.random.random()
        if wrap < 0.1:  # an inline fragment, maybe with a type condition
            condition = draw(st.sampled_from(["", *conditions(type_name, name)]))
            on = f" on {condition}" if condition else ""
            part = f"...{on}{directive(draw, doc)} {{ {part} }}"
        elif wrap < 0.2:  # a named fragment
            fragment = f"F{len(doc.fragments)}"
            condition = draw(st.sampled_from(conditions(type_name, name)))
            doc.fragments.append(f"fragment {fragment} on {condition} {{ {part} }}")
            part = f"...{fragment}{directive(draw, doc)}"
        parts.append(part)
    return " ".join(parts)


def audit_logs_arguments(draw: st.DrawFn, doc: Doc, world: World) -> str:
    arguments = []
    sizes = st.sampled_from([0, 1, 2, 3, 5, 7, 50, 100] * 3 + [101, -1])
    good, bad = world.cursors[:-4], world.cursors[-4:]
    cursors = st.sampled_from(good * 4 + bad)
    times = st.sampled_from(
        [
            (T0 + timedelta(hours=h, minutes=m)).isoformat()
            for h in (-1, 0, 2, 5, 9, 20)
            for m in (0, 30)
        ]
        + ["2026-03-01T12:00:00", "2026-03-01T12:00:00.123456+00:00", "not a date"]
    )
    events = st.sampled_from([e.name for e in E] * 2 + ["NOT_AN_EVENT"])
    filter_value = st.fixed_dictionaries(
        {},
        optional={
            "eventType": events,
            "eventTypes": st.lists(
                events, min_size=draw(st.sampled_from([1, 1, 1, 0])), max_size=3
            ),
            "userEmail": st.sampled_from(
                [*world.emails, "GRACE", "example", " ", "", "%", "_", "x" * 300]
            ),
            "from": times,
            "to": times,
        },
    )
    for name, values, type_ in (
        ("first", sizes, "Int"),
        ("last", sizes, "Int"),
        ("after", cursors, "String"),
        ("before", cursors, "String"),
        ("filter", filter_value, "AuditLogFilter"),
    ):
        if doc.random.random() < 0.7:
            continue
        value = draw(values)
        if draw(st.booleans()):  # as a variable
            var = f"{name}{len(doc.variables)}"
            doc.variables[var] = type_
            if doc.random.random() < 0.95:
                doc.values[var] = value
            else:  # a value of the wrong type
                doc.values[var] = draw(st.sampled_from(["x", 1.5, [], {"eventType": 3}]))
        else:
            arguments.append(f"{name}: {literal(value)}")
            continue
        arguments.append(f"{name}: ${var}")
    return f"({', '.join(arguments)})" if arguments else ""


def literal(value: Any) -> str:
    if isinstance(value, dict):
        fields = ", ".join(
            f"{key}: {literal(item) if key not in ('eventType',) else item}"
            for key, item in value.items()
        )
        return f"{{{fields}}}"
    if isinstance(value, list):
        return "[" + ", ".join(str(item) for item in value) + "]"
    return json.dumps(value)


@st.composite
def documents(draw: st.DrawFn, world: World) -> tuple[str, dict[str, Any], str]:
    # Probabilities come from a random of hypothesis's: its integers favour their bounds.
    doc = Doc(fragments=[], variables={}, values={}, random=draw(st.randoms(use_true_random=True)))
    roots: list[str] = []
    used: set[str] = set()
    for _ in range(draw(st.integers(1, 3))):
        root = draw(
            st.sampled_from(
                ["auditLogs"] * 12
                + ["auditLogIntegrity"] * 2
                + ["auditEventTypes", "__typename", "other"]
            )
        )
        alias = alias_of(draw, doc)
        if root in used and not alias and doc.random.random() < 0.95:
            alias = f"r{len(roots)}: "  # the same field twice: mostly under two keys
        used.add(root)
        if root == "auditLogs":
            args = audit_logs_arguments(draw, doc, world)
            body = selection(draw, doc, "AuditLogConnection")
            roots.append(f"{alias}auditLogs{args}{directive(draw, doc)} {{ {body} }}")
        elif root == "auditLogIntegrity":
            roots.append(
                f"{alias}auditLogIntegrity {{ {selection(draw, doc, 'AuditLogIntegrity')} }}"
            )
        elif root == "auditEventTypes":
            roots.append(
                f"{alias}auditEventTypes {{ {selection(draw, doc, 'AuditEventTypeInfo')} }}"
            )
        elif root == "__typename":
            roots.append(f"{alias}__typename{directive(draw, doc)}")
        else:  # not covered: introspection
            roots.append("__schema { queryType { name } }")
    body = " ".join(roots)
    if doc.random.random() < 0.1:
        fragment = f"R{len(doc.fragments)}"
        doc.fragments.append(f"fragment {fragment} on Query {{ {body} }}")
        body = f"...{fragment}"
    definitions = ", ".join(f"${name}: {type_}" for name, type_ in doc.variables.items())
    head = (
        f"query Q({definitions})"
        if definitions
        else draw(st.sampled_from(["", "query", "query Q"]))
    )
    query = " ".join([f"{head} {{ {body} }}", *doc.fragments])
    caller = draw(
        st.sampled_from(["admin"] * 20 + ["other"] * 2 + ["member", "free", "revoked", "none"])
    )
    return query, doc.values, caller


def _respond(
    client: Client, query: str, variables: dict[str, Any], token: str | None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    response = client.post(
        "/graphql/",
        data=json.dumps({"query": query, "variables": variables}),
        content_type="application/json",
        headers=headers,
    )
    # Pairs, not dicts: the order of keys is part of what must be the same.
    return response.status_code, json.loads(response.content, object_pairs_hook=list)


@pytest.fixture
def unlimited() -> Iterator[None]:
    """No rate limits, and the compiled path on (even in a run with it off)."""
    with override_settings(
        RATE_LIMIT_PER_TOKEN=0, RATE_LIMIT_PER_ADDRESS=0, GRAPHQL_COMPILED_READS=True
    ):
        yield


EXAMPLES = 800


def test_the_compiled_path_answers_exactly_as_strawberry_does(
    world: World, unlimited: None, caplog: pytest.LogCaptureFixture
) -> None:
    client = Client()
    before = compiled.cache_info()["answered"]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        query, variables, caller = data.draw(documents(world))
        note(f"{caller}: {query} {variables}")
        token = world.tokens[caller]
        fast = _respond(client, query, variables, token)
        with override_settings(GRAPHQL_COMPILED_READS=False):
            slow = _respond(client, query, variables, token)
        assert fast == slow

    check()
    answered = compiled.cache_info()["answered"] - before
    # The comparison means something only if the compiled path answered many of them.
    assert answered >= EXAMPLES // 3, answered
    assert "compiled read path failed" not in caplog.text


# --- the caches ------------------------------------------------------------------------------

PAGE = "{ auditLogs(first: 2) { totalCount edges { node { id event } } } }"


def test_a_plan_is_made_once_and_found_again(world: World, unlimited: None) -> None:
    client = Client()
    compiled.configure(maxsize=4)
    token = world.tokens["admin"]
    _respond(client, PAGE, {}, token)
    first = compiled.cache_info()
    assert first["documents"] == {"hits": 0, "misses": 1, "size": 1}
    assert first["plans"] == {"hits": 0, "misses": 1, "size": 1}
    _respond(client, PAGE, {}, token)
    again = compiled.cache_info()
    assert again["documents"]["hits"] == 1 and again["plans"]["hits"] == 1
    assert again["answered"] == first["answered"] + 1


def test_documents_that_differ_in_any_way_get_plans_of_their_own(
    world: World, unlimited: None
) -> None:
    client = Client()
    compiled.configure(maxsize=64)
    token = world.tokens["admin"]
    # The same text under another operation name, or with a space more, is another key;
    # so is each value of a variable that @include reads.
    texts: list[tuple[str, dict[str, Any]]] = [
        (PAGE, {}),
        (PAGE.replace("{ auditLogs", "{  auditLogs"), {}),
        ("query A { __typename } query B { auditLogs { totalCount } }", {}),
    ]
    for query, variables in texts:
        _respond(client, query, variables, token)
    flagged = "query($f: Boolean!) { auditLogs { totalCount edges @include(if: $f) { cursor } } }"
    _, with_edges = _respond(client, flagged, {"f": True}, token)
    _, without = _respond(client, flagged, {"f": False}, token)
    info = compiled.cache_info()
    assert info["documents"]["misses"] == 4
    assert info["plans"]["misses"] == 4  # the two-operation document has no plan to make
    data = dict(dict(with_edges)["data"])
    assert "edges" in dict(data["auditLogs"])
    assert "edges" not in dict(dict(dict(without)["data"])["auditLogs"])


def test_the_caches_are_bounded(world: World, unlimited: None) -> None:
    client = Client()
    compiled.configure(maxsize=3)
    token = world.tokens["admin"]
    for n in range(10):
        _respond(client, f"{{ auditLogs(first: {n}) {{ totalCount }} }}", {}, token)
    info = compiled.cache_info()
    assert info["documents"]["size"] == 3 and info["plans"]["size"] == 3
    # The oldest was forgotten: asking again is a miss.
    _respond(client, "{ auditLogs(first: 0) { totalCount } }", {}, token)
    assert compiled.cache_info()["documents"]["misses"] == 11


def test_what_the_plan_does_not_cover_goes_to_strawberry(world: World, unlimited: None) -> None:
    client = Client()
    token = world.tokens["admin"]
    for query, refused in (
        ("{ __schema { queryType { name } } }", False),  # introspection
        ('{ auditLogs { totalCount } __type(name: "AuditLog") { name } }', False),
        ("{ auditLogs { totalCount " + " " * compiled.PLAN_TEXT_MAX + "} }", False),  # long
        # A mutation (refused: the token has no audit:write scope).
        ("mutation { recordAuditEvents(events: []) { events { id } } }", True),
    ):
        before = compiled.cache_info()["answered"]
        status, body = _respond(client, query, {}, token)
        assert status == 200 and ("errors" in dict(body)) == refused, body
        assert compiled.cache_info()["answered"] == before
