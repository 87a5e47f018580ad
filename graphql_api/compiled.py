"""The compiled read path: each query document is planned once and then executed flat.

Strawberry and graphql-core resolve a page of 50 entries field by field, about 550
resolutions with their bookkeeping, which costs several times the page's SQL. For the
documents the admin page, GraphiQL users and integrations send every second, this module
does the same work as one loop:

1. **Document** (cached by its text, the operation name and the limits): parsed with
   ``GRAPHQL_MAX_TOKENS`` and validated with the schema's own rules (graphql_api/schema.py),
   once. It is covered when it is valid, its operation is a query, its root fields are
   ``auditLogs``, ``auditLogIntegrity``, ``auditEventTypes`` or ``__typename``, and its
   only directives are ``@skip`` and ``@include``.
2. **Variables**: coerced by graphql-core (``get_variable_values``), as execution does.
3. **Plan** (cached per document and the values of the variables that ``@skip`` and
   ``@include`` read): fields collected by graphql-core's own ``collect_subfields``
   (aliases, named and inline fragments, type conditions, merged selections), compiled
   into one function per response key. The plan knows which columns the page needs.
4. **Execution**: one trip to a worker thread for the caller (token or session; a token
   this process authenticated before comes from memory, and the page's own statement
   checks it is unchanged, core/authentication.py), the permission rule
   (``audit_log_read_refusal``, the rule ``AUDIT_LOG_READERS`` applies), the arguments
   (``AuditLogsArguments.checked``, the resolver's own checks) and the selector
   (``audit_log_page`` asked for plain rows: audit/page_sql.py's statement, reading only
   the selected columns and each entry's details as PostgreSQL's JSON text); then the
   response, written by orjson with the details embedded as they are.

**Exactness.** A plan produces what Strawberry produces for an operation that succeeds:
the same keys in the same order, the same values and nulls (graphql_api/types.py's
fields, serialized by the schema's own scalars and enums). Whenever anything would be an
error (a refused caller, a bad argument or cursor, a value a scalar cannot serialize, a
database failure), the compiled attempt is abandoned before anything is written and the
operation runs through Strawberry from the start, so every error, with its message, path,
locations and code, is Strawberry's. The price is that a failing request does its reads
twice. Whatever a plan does not cover (introspection, mutations, subscriptions, other
directives, a document longer than ``PLAN_TEXT_MAX``) goes to Strawberry unchanged.
``GRAPHQL_COMPILED_READS=0`` turns this module off, for diagnosis.

tests/graphql_api/test_compiled.py is its licence: a property-based differential test
against Strawberry's path over generated documents, variables and data.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from graphql import (
    DirectiveNode,
    DocumentNode,
    FragmentDefinitionNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    OperationDefinitionNode,
    OperationType,
    VariableNode,
    get_operation_ast,
    is_leaf_type,
    parse,
    specified_rules,
    visit,
)
from graphql.execution.collect_fields import (
    CollectedFields,
    FieldDetailsList,
    FragmentDetails,
    collect_fields,
    collect_subfields,
)
from graphql.execution.values import VariableValues, get_argument_values, get_variable_values
from graphql.language import Visitor
from graphql.pyutils import Undefined
from graphql.type.scalars import serialize_boolean, serialize_id, serialize_int, serialize_string
from strawberry.relay import to_base64
from strawberry.schema.schema import validate_document
from strawberry.types import ExecutionResult
from strawberry.types.arguments import convert_arguments

from core.authentication import StaleCredentials, api_token_forget
from graphql_api.context import GraphQLContext
from graphql_api.errors import database_failure
from graphql_api.permissions import audit_log_read_refusal
from graphql_api.queries import (
    AuditLogsArguments,
    audit_event_types,
    audit_log_connection,
    audit_log_integrity_of,
)
from graphql_api.schema import limit_rules, schema

logger = logging.getLogger("graphql_api.compiled")

# Longer documents go to Strawberry: it bounds what the caches hold (a few KiB per entry;
# real documents are far shorter, the Audit Logs page's is under 1 KiB).
PLAN_TEXT_MAX = 16_384

_SCHEMA = schema._schema
_QUERY_TYPE: GraphQLObjectType = _SCHEMA.query_type  # type: ignore[assignment]
_DEFINITION = "strawberry-definition"  # where Strawberry keeps a field's definition

# The columns each AuditLog field reads (graphql_api/types.py); a field not listed here is
# not covered, so a new field goes through Strawberry until it is added.
_ENTRY_COLUMNS: dict[str, tuple[str, ...]] = {
    "id": (),
    "event": ("event",),
    "ip": ("ip",),
    "details": (),  # read as text: details_json
    "time": (),
    "user": ("actor_id", "actor_email", "actor_name"),
}


class NotCompiled(Exception):
    """This operation is not (or no longer) for the compiled path: Strawberry answers it."""


class _NotCovered(Exception):
    """Raised while planning: the document has something the compiled path does not do."""


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    """A bounded map that forgets the least recently used entry first, counting hits and
    misses (``cache_info``)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K, make: Callable[[], V]) -> V:
        try:
            value = self._data[key]
        except KeyError:
            self.misses += 1
            value = self._data[key] = make()
            if len(self._data) > self.maxsize:
                self._data.popitem(last=False)
            return value
        self.hits += 1
        self._data.move_to_end(key)
        return value

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()
        self.hits = self.misses = 0


# --- documents -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Document:
    document: DocumentNode
    operation: OperationDefinitionNode
    # The variables @skip and @include read: their values select the plan.
    directive_variables: tuple[str, ...]


class _DirectiveCheck(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.variables: list[str] = []

    def enter_directive(self, node: DirectiveNode, *_args: Any) -> None:
        if node.name.value not in ("skip", "include"):
            raise _NotCovered
        for argument in node.arguments or ():
            if isinstance(argument.value, VariableNode):
                self.variables.append(argument.value.name.value)


def _prepare(query: str, operation_name: str | None) -> _Document | None:
    try:
        document = parse(query, max_tokens=settings.GRAPHQL_MAX_TOKENS)
    except GraphQLError:
        return None
    rules = (
        *specified_rules,
        *limit_rules(settings.GRAPHQL_MAX_DEPTH, settings.GRAPHQL_MAX_ALIASES),
    )
    if validate_document(_SCHEMA, document, rules):
        return None
    operation = get_operation_ast(document, operation_name)
    if operation is None or operation.operation != OperationType.QUERY:
        return None
    check = _DirectiveCheck()
    try:
        visit(document, check)
    except _NotCovered:
        return None
    return _Document(document, operation, tuple(dict.fromkeys(check.variables)))


# --- plans -----------------------------------------------------------------------------------

Step = Callable[[Any], Any]


@dataclass
class _Run:
    """One execution of a plan: the caller's context, the variables, and the totals
    already counted (two fields with the same filter share one, as the resolver does)."""

    context: GraphQLContext
    variables: VariableValues
    totals: dict[Any, int] = field(default_factory=dict)

    def reader_organization(self, *, remembered: bool = False) -> Any:
        caller = self.context.caller_now(remembered=remembered)
        if audit_log_read_refusal(caller) is not None:
            raise NotCompiled  # Strawberry's permission classes say why
        assert caller.user is not None and caller.user.organization is not None
        return caller.user.organization


RootStep = Callable[[_Run], Any]


@dataclass(frozen=True, slots=True)
class Plan:
    roots: tuple[tuple[str, RootStep], ...]
    # Whether running it reads the database (else it runs on the event loop, no thread).
    database: bool

    def run(self, context: GraphQLContext, variables: VariableValues) -> dict[str, Any]:
        state = _Run(context, variables)
        return {key: step(state) for key, step in self.roots}


class _Planner:
    def __init__(self, document: _Document, variables: VariableValues) -> None:
        self.document = document
        self.variables = variables
        self.fragments = {
            definition.name.value: FragmentDetails(definition)
            for definition in document.document.definitions
            if isinstance(definition, FragmentDefinitionNode)
        }

    def subfields(
        self, type_: GraphQLObjectType, nodes: FieldDetailsList
    ) -> dict[str, FieldDetailsList]:
        collected = collect_subfields(
            _SCHEMA, self.fragments, self.variables, self.document.operation, type_, nodes
        )
        return _grouped(collected)

    def root(self) -> Plan:
        grouped = _grouped(
            collect_fields(
                _SCHEMA, self.fragments, self.variables, _QUERY_TYPE, self.document.operation
            )
        )
        roots: list[tuple[str, RootStep]] = []
        database = False
        for key, nodes in grouped.items():
            name = nodes[0].node.name.value
            if name == "__typename":
                roots.append((key, _constant(_QUERY_TYPE.name)))
            elif name == "auditLogs":
                roots.append((key, self.audit_logs(nodes)))
                database = True
            elif name == "auditLogIntegrity":
                roots.append((key, self.integrity(nodes)))
                database = True
            elif name == "auditEventTypes":
                roots.append((key, self.event_types(nodes)))
            else:
                raise _NotCovered
        return Plan(tuple(roots), database)

    # -- root fields

    def audit_logs(self, nodes: FieldDetailsList) -> RootStep:
        definition = _QUERY_TYPE.fields["auditLogs"]
        strawberry_field = definition.extensions[_DEFINITION]
        connection_type = _object_type(definition.type)
        connection_fields = self.subfields(connection_type, nodes)
        wanted = set(_names(connection_fields))
        read_page = bool(wanted & {"edges", "pageInfo"})
        wants_total = "totalCount" in wanted
        columns: set[str] = {"id", "time"}  # what cursors are made of
        with_details = False
        edge_type = _object_type(connection_type.fields["edges"].type)
        entry_type = _object_type(edge_type.fields["node"].type)
        for edges in _named(connection_fields, "edges"):
            for entry in _named(self.subfields(edge_type, edges), "node"):
                for name in _names(self.subfields(entry_type, entry)):
                    if name == "__typename":
                        continue
                    if name not in _ENTRY_COLUMNS:
                        raise _NotCovered
                    columns.update(_ENTRY_COLUMNS[name])
                    with_details = with_details or name == "details"
        only = tuple(sorted(columns))
        complete = self.complete_object(connection_type, nodes)
        field_node = nodes[0].node
        scalar_registry = schema.schema_converter.scalar_registry
        config = schema.config

        # The rows: named tuples of the selected columns, details as PostgreSQL's text.
        row_columns = (*only, "details_json") if with_details else only

        def step(run: _Run) -> Any:
            # A page read checks a remembered token in its own statement; a total alone
            # (or no read at all) looks the token up.
            organization = run.reader_organization(remembered=read_page)
            raw = get_argument_values(definition, field_node, run.variables)
            kwargs = convert_arguments(raw, strawberry_field.arguments, scalar_registry, config)
            try:
                arguments = AuditLogsArguments.checked(organization, **kwargs)
            except GraphQLError:
                raise NotCompiled from None
            key = arguments.total_key
            with_total = wants_total and key not in run.totals
            try:
                page = arguments.read(
                    page=read_page,
                    with_total=with_total,
                    columns=row_columns,
                    guard=run.context.caller_guard,
                )
            except StaleCredentials as stale:
                api_token_forget(stale.guard.digest)
                run.context.forget_caller()
                raise NotCompiled from None  # Strawberry looks the caller up afresh
            except GraphQLError:
                raise NotCompiled from None  # a refused total: Strawberry reports it
            run.context.caller_guard = None  # checked: the caller is as remembered
            if with_total:
                assert page.total_count is not None
                run.totals[key] = page.total_count
            total = run.totals.get(key) if wants_total else None
            return complete(audit_log_connection(organization, page, total=total))

        return step

    def integrity(self, nodes: FieldDetailsList) -> RootStep:
        complete = self.complete_object(
            _object_type(_QUERY_TYPE.fields["auditLogIntegrity"].type), nodes
        )

        def step(run: _Run) -> Any:
            return complete(audit_log_integrity_of(run.reader_organization()))

        return step

    def event_types(self, nodes: FieldDetailsList) -> RootStep:
        complete = self.complete(_QUERY_TYPE.fields["auditEventTypes"].type, nodes)

        def step(run: _Run) -> Any:
            return complete(audit_event_types())

        return step

    # -- below the root

    def complete(self, type_: Any, nodes: FieldDetailsList) -> Step:
        """The step that turns a value of ``type_`` (already got) into its JSON value."""
        return self.field(type_, nodes, None)

    def field(self, type_: Any, nodes: FieldDetailsList, attribute: str | None) -> Step:
        """The step that completes a field of ``type_``: from its source, reading
        ``attribute`` of it, or from the value itself when ``attribute`` is None. As
        graphql-core completes a value: null where the type allows it, the leaf
        serialized by its scalar or enum, a list item by item, an object field by field."""
        nullable = not isinstance(type_, GraphQLNonNull)
        inner = type_ if nullable else type_.of_type
        if isinstance(inner, GraphQLList):
            item = self.complete(inner.of_type, nodes)

            def items(value: Any) -> Any:
                return [item(each) for each in value]

            complete: Step = items
        elif isinstance(inner, GraphQLEnumType):
            return _enum_leaf(inner.serialize, nullable, attribute)
        elif is_leaf_type(inner):
            return _leaf(inner.serialize, nullable, attribute)
        elif isinstance(inner, GraphQLObjectType):
            complete = self.complete_object(inner, nodes)
        else:
            raise _NotCovered
        return _read(_nulls(complete, nullable), attribute)

    def complete_object(self, type_: GraphQLObjectType, nodes: FieldDetailsList) -> Step:
        steps: list[tuple[str, Step]] = []
        for key, entries in self.subfields(type_, nodes).items():
            name = entries[0].node.name.value
            if name == "__typename":
                steps.append((key, _constant(type_.name)))
                continue
            definition = type_.fields.get(name)
            if definition is None or definition.args:
                raise _NotCovered
            special = _SPECIAL.get((type_.name, name))
            if special is not None:
                steps.append((key, special(self, definition, entries)))
                continue
            steps.append((key, self.field(definition.type, entries, _attribute(definition))))
        fields = tuple(steps)

        def complete_object(value: Any) -> dict[str, Any]:
            return {key: step(value) for key, step in fields}

        return complete_object


# Scalars whose serialize returns a value of these types unchanged (graphql-core's own):
# the step returns such a value itself, and calls serialize for anything else.
_UNCHANGED: dict[Any, tuple[type, ...]] = {
    serialize_string: (str,),
    serialize_id: (str,),
    serialize_boolean: (bool,),
}
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


def _leaf(serialize: Callable[[Any], Any], nullable: bool, attribute: str | None) -> Step:
    unchanged = _UNCHANGED.get(serialize, ())

    def leaf(source: Any) -> Any:
        value = source if attribute is None else getattr(source, attribute)
        if value is None:
            if nullable:
                return None
            raise NotCompiled  # graphql-core reports a null in a non-null field
        if type(value) in unchanged:
            return value
        if serialize is serialize_int and type(value) is int and _INT_MIN <= value <= _INT_MAX:
            return value
        out = serialize(value)
        if out is None or out is Undefined:
            raise NotCompiled
        return out

    return leaf


def _enum_leaf(serialize: Callable[[Any], Any], nullable: bool, attribute: str | None) -> Step:
    """An enum's serialize is a function of the value alone: each value's name is
    remembered (the vocabulary is closed, so the memo is small)."""
    names: dict[tuple[type, Any], Any] = {}

    def leaf(source: Any) -> Any:
        value = source if attribute is None else getattr(source, attribute)
        if value is None:
            if nullable:
                return None
            raise NotCompiled
        key = (type(value), value)
        try:
            return names[key]
        except KeyError:
            out = serialize(value)  # an unknown value raises: Strawberry reports it
            if out is None or out is Undefined:
                raise NotCompiled from None
            if len(names) < 1024:
                names[key] = out
            return out
        except TypeError:  # unhashable
            raise NotCompiled from None

    return leaf


def _read(complete: Step, attribute: str | None) -> Step:
    if attribute is None:
        return complete
    return lambda source: complete(getattr(source, attribute))


def _named(fields: dict[str, FieldDetailsList], name: str) -> list[FieldDetailsList]:
    return [entries for entries in fields.values() if entries[0].node.name.value == name]


def _names(fields: dict[str, FieldDetailsList]) -> list[str]:
    return [entries[0].node.name.value for entries in fields.values()]


def _grouped(collected: CollectedFields) -> dict[str, FieldDetailsList]:
    """The fields by response key; not covered when the collection met @defer."""
    if collected.new_defer_usages or collected.forbidden_directive_instances:
        raise _NotCovered
    return collected.grouped_field_set


def _object_type(type_: Any) -> GraphQLObjectType:
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        type_ = type_.of_type
    if not isinstance(type_, GraphQLObjectType):
        raise _NotCovered
    return type_


def _constant(value: Any) -> Callable[[Any], Any]:
    return lambda _source: value


def _nulls(step: Step, nullable: bool) -> Step:
    def completed(value: Any) -> Any:
        if value is None:
            if nullable:
                return None
            raise NotCompiled  # graphql-core reports a null in a non-null field
        return step(value)

    return completed


def _attribute(definition: GraphQLField) -> str:
    """The attribute Strawberry reads for a field without a resolver (and for an AuditLog
    entry field, graphql_api/types.py's EntryField)."""
    strawberry_field = definition.extensions.get(_DEFINITION) if definition.extensions else None
    if strawberry_field is None or strawberry_field.base_resolver is not None:
        raise _NotCovered
    return str(getattr(strawberry_field, "attname", None) or strawberry_field.python_name)


def _entry_id(planner: _Planner, definition: GraphQLField, nodes: FieldDetailsList) -> Step:
    # relay.Node's id: the GlobalID of the type name and the model's primary key.
    return _nulls(lambda entry: to_base64("AuditLog", str(entry.id)), False)


def _entry_details(planner: _Planner, definition: GraphQLField, nodes: FieldDetailsList) -> Step:
    # The JSON scalar passes its value through: embed PostgreSQL's text of it unparsed.
    def details(entry: Any) -> Any:
        text = entry.details_json
        if text is None:
            raise NotCompiled
        return orjson.Fragment(text)

    return details


def _entry_user(planner: _Planner, definition: GraphQLField, nodes: FieldDetailsList) -> Step:
    resolver = definition.extensions[_DEFINITION].base_resolver
    complete = planner.complete(definition.type, nodes)
    # As graphql_api/types.py's EntryField calls it: both self and root are the entry.
    return lambda entry: complete(resolver(entry, entry))


def _connection_total(planner: _Planner, definition: GraphQLField, nodes: FieldDetailsList) -> Step:
    complete = planner.complete(definition.type, nodes)
    return lambda connection: complete(connection.total)


_SPECIAL: dict[tuple[str, str], Callable[[_Planner, GraphQLField, FieldDetailsList], Step]] = {
    ("AuditLog", "id"): _entry_id,
    ("AuditLog", "details"): _entry_details,
    ("AuditLog", "user"): _entry_user,
    ("AuditLogConnection", "totalCount"): _connection_total,
}


# --- the caches and the entry point ---------------------------------------------------------

_documents: LRUCache[tuple[Any, ...], _Document | None] = LRUCache(256)
_plans: LRUCache[tuple[Any, ...], Plan | None] = LRUCache(256)


def configure(maxsize: int) -> None:
    """Empty both caches and bound each to ``maxsize`` entries."""
    for cache in (_documents, _plans):
        cache.clear()
        cache.maxsize = maxsize


_answered = 0  # operations the compiled path answered, since the process started


def cache_info() -> dict[str, Any]:
    """The caches' hits, misses and sizes, and how many operations were answered here."""
    info: dict[str, Any] = {
        name: {"hits": cache.hits, "misses": cache.misses, "size": len(cache)}
        for name, cache in (("documents", _documents), ("plans", _plans))
    }
    info["answered"] = _answered
    return info


def _plan_for(document: _Document, variables: VariableValues) -> Plan | None:
    try:
        return _Planner(document, variables).root()
    except (_NotCovered, GraphQLError):
        return None


class EncodedResponse(dict[str, Any]):
    """A response body the compiled path made: the view writes it with orjson."""

    def encode(self) -> bytes:
        return orjson.dumps(self)


@dataclass
class CompiledResult(ExecutionResult):
    response: EncodedResponse | None = None


@dataclass(frozen=True, slots=True)
class Prepared:
    """An operation with its plan and its coerced variables, ready to run."""

    plan: Plan
    variables: VariableValues

    @property
    def database(self) -> bool:
        return self.plan.database

    def run(self, context: GraphQLContext) -> EncodedResponse | None:
        """The response (synchronous: in a worker thread when ``database``), or None
        when Strawberry must answer: the operation meets an error."""
        try:
            data = self.plan.run(context, self.variables)
        except Exception as error:
            if context.caller_guard is not None:
                # A caller from memory that no statement has checked yet: Strawberry must
                # not trust it, it looks the caller up.
                context.forget_caller()
            if (
                not isinstance(error, NotCompiled | GraphQLError)
                and database_failure(error) is None
            ):
                logger.warning("The compiled read path failed; Strawberry answers.", exc_info=True)
            return None
        global _answered
        _answered += 1
        return EncodedResponse(data=data)


def prepare(*, query: Any, variables: Any, operation_name: Any) -> Prepared | None:
    """The operation's plan, or None when the compiled path does not cover it (or is off).
    Cheap after the first time: two cache lookups and the variables' coercion."""
    if not settings.GRAPHQL_COMPILED_READS:
        return None
    if not isinstance(query, str) or len(query) > PLAN_TEXT_MAX:
        return None
    if operation_name is not None and not isinstance(operation_name, str):
        return None
    if variables is not None and not isinstance(variables, dict):
        return None
    limits = (settings.GRAPHQL_MAX_TOKENS, settings.GRAPHQL_MAX_DEPTH, settings.GRAPHQL_MAX_ALIASES)
    document_key = (query, operation_name, limits)
    document = _documents.get(document_key, lambda: _prepare(query, operation_name))
    if document is None:
        return None
    coerced = get_variable_values(
        _SCHEMA, document.operation.variable_definitions or (), variables or {}, max_errors=50
    )
    if not isinstance(coerced, VariableValues):
        return None  # Strawberry reports the variables' errors
    valuation = tuple(coerced.coerced.get(name) for name in document.directive_variables)
    plan = _plans.get((document_key, valuation), lambda: _plan_for(document, coerced))
    return Prepared(plan, coerced) if plan is not None else None


async def execute(
    *,
    query: Any,
    variables: dict[str, Any] | None,
    operation_name: Any,
    context: GraphQLContext,
) -> CompiledResult | None:
    """The operation's result from its compiled plan, or None for Strawberry to answer it."""
    prepared = prepare(query=query, variables=variables, operation_name=operation_name)
    if prepared is None:
        return None
    if prepared.database:
        response = await sync_to_async(prepared.run)(context)
    else:
        response = prepared.run(context)
    if response is None:
        return None
    return CompiledResult(data=None, errors=None, response=response)
