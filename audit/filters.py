"""The filters of the auditLogs API: validation, and the conditions shared by the page
query (audit/selectors.py) and the totals (audit/totals.py), so both always mean the same
thing.

Three filters search what the rollups know nothing of (``ip``, ``search``, ``details``),
so a total with any of them counts the matching entries themselves, up to a limit
(audit/totals.py). Each is one SQL condition, written once here (``search_conditions``)
and served by an index of migration 0015:

* ``ip``: an address or CIDR range, ``ip <<= range`` on the btree
  ``audit_log_org_ip_time`` (organization, ip, time, id), which PostgreSQL reads as one
  index range. An IPv4-mapped IPv6 range (``::ffff:203.0.113.0/120``) means the IPv4
  range it maps, because entries are stored with such addresses unmapped (core/client_ip).
* ``search``: words, each of which must be a word of the details (keys or values),
  ignoring case, as PostgreSQL's text search parser splits text with the ``simple``
  configuration (no stemming, no stop words): ``jsonb_to_tsvector(...) @@
  plainto_tsquery(...)`` on the GIN index ``audit_log_details_words``.
* ``details``: JSON containment, ``details @> value`` (PostgreSQL's jsonb rules) on the
  GIN index ``audit_log_details_contains`` (jsonb_path_ops).

Both GIN indexes hold the organization beside the details (``ORG_WORDS_VECTOR``,
``ORG_DETAILS``): without it, a search read every tenant's matches from the table before
keeping its own (a containment search of a 100,000-entry organization took 112 ms because
a 10M-entry one had about 47,000 matches).

The live stream tests entries in memory (``AuditLogFilter.matches``): the address with
``ipaddress``, containment with ``jsonb_contains`` (the same rules), and words against
the entry's words as PostgreSQL splits them (``WORDS_SQL``, read with the entry).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import BooleanField, F, Func, Q, QuerySet

from audit.events import AuditEventType
from audit.models import AuditActorEmail
from audit.storable import as_utc, json_problem, text_problem
from core.models import Organization

USER_EMAIL_MAX_LENGTH = 254
IP_MAX_LENGTH = 64
SEARCH_MAX_LENGTH = 200
DETAILS_FILTER_MAX_BYTES = 4096
DETAILS_FILTER_MAX_DEPTH = 8

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
# A word, as far as this side can tell before PostgreSQL splits the text: a letter or digit.
_WORD_CHARACTER = re.compile(r"[^\W_]")

# The words of an entry's details (keys, strings, numbers and booleans), as PostgreSQL's
# text search splits them with the ``simple`` configuration.
WORDS_VECTOR = "jsonb_to_tsvector('simple'::regconfig, {details}, '\"all\"'::jsonb)"
# The same words as a text[] (for the live stream's in-memory test).
WORDS_SQL = "tsvector_to_array(" + WORDS_VECTOR + ")"
# The expressions of the GIN indexes of migration 0015, which a condition must repeat
# exactly. Each holds the organization, so that a search reads its own organization's
# matches only, not every tenant's: as a lexeme no text makes (a space, then the id; the
# parser never puts a space in a word), and as the first element of an array before the
# details (``[42, {...}] @> [42, {"k": "v"}]`` holds exactly when the details contain
# ``{"k": "v"}``: a number contains no object).
ORG_WORDS_VECTOR = "(" + WORDS_VECTOR + " || array_to_tsvector(ARRAY[' ' || {org}::text]))"
ORG_DETAILS = "(('[' || {org}::text || ']')::jsonb || {details})"
# The three conditions, on their columns ({org}, {ip}, {details}); ``search_parts`` gives
# their parameters. A search of no words matches nothing (as ``@@`` with an empty query
# does; ``numnode`` is folded into a constant when the statement is planned).
IP_CONDITION = "{ip} <<= %s::inet"
WORDS_CONDITION = (
    "(" + ORG_WORDS_VECTOR + " @@ (plainto_tsquery('simple'::regconfig, %s) && %s::tsquery)"
    " AND numnode(plainto_tsquery('simple'::regconfig, %s)) > 0)"
)
CONTAINS_CONDITION = ORG_DETAILS + " @> %s::jsonb"


# Filter bounds are clamped to these (entries carry ENTRY_TIME_MIN to ENTRY_TIME_MAX).
FILTER_TIME_MIN = datetime(2, 1, 1, tzinfo=UTC)
FILTER_TIME_MAX = datetime(9998, 12, 31, tzinfo=UTC)


@dataclass(frozen=True)
class AuditLogFilter:
    """The filters of the auditLogs API, already validated. ``event_types`` is the union
    of ``eventType`` and ``eventTypes``; None means every event type."""

    event_types: frozenset[AuditEventType] | None = None
    user_email: str | None = None
    time_from: datetime | None = None
    time_to: datetime | None = None
    ip: IPNetwork | None = None
    search: str | None = None
    # The containment value as canonical JSON text (sorted keys), so the filter stays
    # hashable: two requests with the same filter share a total (graphql_api/queries.py).
    details_json: str | None = None

    @functools.cached_property
    def details(self) -> dict[str, Any] | None:
        """The containment value, decoded once per filter (the live stream tests every
        entry against it)."""
        return json.loads(self.details_json) if self.details_json is not None else None

    @property
    def searches(self) -> bool:
        """Whether a filter the rollups cannot answer is set (``ip``, ``search``,
        ``details``): its total counts entries (audit/totals.py)."""
        return self.ip is not None or self.search is not None or self.details_json is not None

    @classmethod
    def build(
        cls,
        *,
        event_type: AuditEventType | str | None = None,
        event_types: Iterable[AuditEventType | str] | None = None,
        user_email: str | None = None,
        time_from: datetime | None = None,
        time_to: datetime | None = None,
        ip: str | None = None,
        search: str | None = None,
        details: object = None,
    ) -> AuditLogFilter:
        """Combine and check raw filter values; ValueError says what is wrong."""
        chosen: set[AuditEventType] | None = None
        if event_types is not None and not list(event_types):
            raise ValueError(
                "eventTypes must name at least one event type; omit it (or pass null) for all events"
            )
        if event_type is not None or event_types is not None:
            chosen = {AuditEventType(e) for e in (event_types or ())}
            if event_type is not None:
                chosen.add(AuditEventType(event_type))
        if user_email is not None and len(user_email) > USER_EMAIL_MAX_LENGTH:
            raise ValueError(f"userEmail must be at most {USER_EMAIL_MAX_LENGTH} characters")
        if user_email is not None and (unstorable := text_problem(user_email)) is not None:
            raise ValueError(f"userEmail {unstorable}")
        email = user_email.strip() if user_email is not None else None
        if time_from is not None and time_to is not None and time_from > time_to:
            raise ValueError("from must not be after to")
        # Bounds beyond any entry's time mean the same as none, and arithmetic near the
        # ends of the calendar (UTC offsets, hour and day buckets) would overflow. Then
        # UTC: PostgreSQL refuses offsets beyond +-15:59, which ISO 8601 allows.
        if time_from is not None:
            time_from = as_utc(min(max(time_from, FILTER_TIME_MIN), FILTER_TIME_MAX))
        if time_to is not None:
            time_to = as_utc(min(max(time_to, FILTER_TIME_MIN), FILTER_TIME_MAX))
        return cls(
            event_types=frozenset(chosen) if chosen is not None else None,
            user_email=email or None,
            time_from=time_from,
            time_to=time_to,
            ip=ip_filter(ip),
            search=search_filter(search),
            details_json=details_filter(details),
        )

    def matches(
        self,
        *,
        event: str,
        actor_email_upper: str | None,
        time: datetime,
        user_email_upper: str | None,
        ip: str | None = None,
        details: Any = None,
        words: Iterable[str] | None = None,
        search_words: frozenset[str] | None = None,
    ) -> bool:
        """Whether an entry with these values passes the filter, for entries already in
        memory (the live stream's fan-out). The same test as the SQL conditions below,
        provided both emails were upper-cased by PostgreSQL (``UPPER``), whose case
        mapping depends on the database's locale: the email condition is then plain
        containment, as ``UPPER(email) LIKE UPPER('%needle%')`` with the needle escaped.
        With ``search``, ``words`` are the entry's words and ``search_words`` the
        search's, both as PostgreSQL splits them (``WORDS_SQL``, ``SEARCH_WORDS_SQL``)."""
        if self.event_types is not None and event not in self.event_types:
            return False
        if self.user_email is not None:
            assert user_email_upper is not None
            if actor_email_upper is None or user_email_upper not in actor_email_upper:
                return False
        if self.time_from is not None and time < self.time_from:
            return False
        if self.time_to is not None and time > self.time_to:
            return False
        if self.ip is not None and not ip_in(ip, self.ip):
            return False
        if self.details_json is not None and not jsonb_contains(details, self.details):
            return False
        if self.search is not None:
            assert search_words is not None and words is not None
            # PostgreSQL's @@ with a query of no words matches nothing.
            if not search_words or not search_words <= set(words):
                return False
        return True


def ip_filter(value: str | None) -> IPNetwork | None:
    """The network an ``ip`` filter means (an address is a network of one), or None for
    no filter; ValueError says what is wrong. Bits beyond the prefix are ignored
    (203.0.113.7/24 is 203.0.113.0/24); an IPv4-mapped IPv6 range is the IPv4 range."""
    if value is None:
        return None
    if len(value) > IP_MAX_LENGTH:
        raise ValueError(f"ip must be at most {IP_MAX_LENGTH} characters")
    text = value.strip()
    if not text:
        return None
    try:
        if "%" in text:  # a zone index names an interface of the client's machine
            raise ValueError
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(
            f"ip {text[:IP_MAX_LENGTH]!r} is not an IPv4 or IPv6 address or CIDR range "
            "(such as 203.0.113.7, 203.0.113.0/24 or 2001:db8::/32)"
        ) from None
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        mapped = int(network.network_address) & 0xFFFFFFFF
        return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def ip_in(address: str | None, network: IPNetwork) -> bool:
    """Whether a stored address is in ``network``: PostgreSQL's ``inet <<= cidr``
    (addresses of the other family never are)."""
    if address is None:
        return False
    parsed = ipaddress.ip_address(address)
    return parsed.version == network.version and parsed in network


def search_filter(value: str | None) -> str | None:
    """The ``search`` text to hand to PostgreSQL, or None for no filter; ValueError says
    what is wrong."""
    if value is None:
        return None
    if len(value) > SEARCH_MAX_LENGTH:
        raise ValueError(f"search must be at most {SEARCH_MAX_LENGTH} characters")
    if (unstorable := text_problem(value)) is not None:
        raise ValueError(f"search {unstorable}")
    text = " ".join(value.split())
    if not text:
        return None
    if not _WORD_CHARACTER.search(text):
        raise ValueError("search must contain a word: a letter or a digit")
    return text


def details_filter(value: object) -> str | None:
    """The ``details`` containment value as canonical JSON text, or None for no filter
    (null or an empty object, which every entry's details contain); ValueError says
    what is wrong."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError('details must be a JSON object, such as {"resource": "vm-12"}')
    if (problem := json_problem(value, max_depth=DETAILS_FILTER_MAX_DEPTH)) is not None:
        raise ValueError(f"details {problem}")
    if not value:
        return None
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError("details must be a JSON object") from error
    if len(text.encode()) > DETAILS_FILTER_MAX_BYTES:
        raise ValueError(f"details must be at most {DETAILS_FILTER_MAX_BYTES} bytes of JSON")
    return text


def _number(value: object) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return Decimal(str(value)) if isinstance(value, float) else Decimal(value)


def jsonb_contains(container: object, contained: object, *, top: bool = True) -> bool:
    """PostgreSQL's ``jsonb @> jsonb`` on decoded JSON: an object contains an object
    whose every key it has with a contained value; an array contains an array whose
    every element is contained in one of its elements (and, at the top level only, a
    scalar equal to one of its elements); scalars contain an equal scalar (numbers by
    value, so 1 and 1.0 are equal)."""
    if isinstance(contained, Mapping):
        return isinstance(container, Mapping) and all(
            key in container and jsonb_contains(container[key], value, top=False)
            for key, value in contained.items()
        )
    if isinstance(contained, list):
        if not isinstance(container, list):
            return False
        return all(
            any(jsonb_contains(candidate, element, top=False) for candidate in container)
            for element in contained
        )
    if isinstance(container, list):
        return top and any(
            not isinstance(candidate, list | Mapping) and _scalar_equal(candidate, contained)
            for candidate in container
        )
    return _scalar_equal(container, contained)


def _scalar_equal(left: object, right: object) -> bool:
    if isinstance(left, list | Mapping):
        return False
    numbers = _number(left), _number(right)
    if numbers[0] is not None or numbers[1] is not None:
        return numbers[0] == numbers[1]
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    return left == right


COLUMNS = ("organization_id", "ip", "details")


def _search_parts(f: AuditLogFilter, organization_id: int) -> list[tuple[str, list[Any]]]:
    """(template, parameters) of each of ``ip``, ``search`` and ``details`` set."""
    parts: list[tuple[str, list[Any]]] = []
    if f.ip is not None:
        parts.append((IP_CONDITION, [str(f.ip)]))
    if f.search is not None:
        parts.append((WORDS_CONDITION, [f.search, f"' {organization_id}'", f.search]))
    if f.details_json is not None:
        parts.append((CONTAINS_CONDITION, [f"[{organization_id}, {f.details_json}]"]))
    return parts


def search_conditions(
    alias: str, f: AuditLogFilter, organization_id: int
) -> tuple[list[str], list[Any]]:
    """The SQL conditions of ``ip``, ``search`` and ``details`` on the organization's
    entries aliased ``alias``, with their parameters, each written as its index's
    expression."""
    names = {"org": f"{alias}.organization_id", "ip": f"{alias}.ip", "details": f"{alias}.details"}
    parts = _search_parts(f, organization_id)
    return (
        [template.format(**names) for template, _ in parts],
        [value for _, values in parts for value in values],
    )


class _Condition(Func):
    """One of ``search_conditions`` for the ORM: its columns resolved (and aliased) by
    Django, so that it holds in subqueries too."""

    output_field = BooleanField()

    def __init__(self, template: str, values: list[Any]) -> None:
        super().__init__(*(F(column) for column in COLUMNS))
        self.condition_template, self.values = template, values

    def as_sql(  # type: ignore[override]
        self, compiler: Any, connection: Any, **extra: Any
    ) -> tuple[str, list[Any]]:
        names: dict[str, str] = {}
        params: list[Any] = []
        for key, expression in zip(("org", "ip", "details"), self.source_expressions, strict=True):
            names[key], column_params = compiler.compile(expression)
            params += column_params
        return self.condition_template.format(**names), [*params, *self.values]


def search_q(f: AuditLogFilter, organization_id: int) -> list[_Condition]:
    """``search_conditions`` as ORM expressions, for ``QuerySet.filter``."""
    return [_Condition(template, values) for template, values in _search_parts(f, organization_id)]


def matching_sql(
    alias: str, organization: Organization, f: AuditLogFilter, *, cte: bool
) -> tuple[str, list[Any]]:
    """Every condition of ``f`` on the organization's entries aliased ``alias``, as SQL
    with its parameters: what ``audit_log_list`` selects, for statements written by hand
    (audit/page_sql.py, audit/totals.py). An email search reads its addresses from the
    statement's CTE with ``cte`` (``matched_emails_sql``)."""
    conditions = [f"{alias}.organization_id = %s"]
    params: list[Any] = [organization.pk]
    if f.event_types is not None:
        values = event_values(f.event_types)
        conditions.append(f"{alias}.event IN ({', '.join(['%s'] * len(values))})")
        params += values
    if f.user_email is not None:
        emails, emails_params = matched_emails_sql(organization, f.user_email, cte=cte)
        conditions.append(f"{alias}.actor_email IN ({emails})")
        params += emails_params
    if f.time_from is not None:
        conditions.append(f"{alias}.time >= %s")
        params.append(f.time_from)
    if f.time_to is not None:
        conditions.append(f"{alias}.time <= %s")
        params.append(f.time_to)
    searched, searched_params = search_conditions(alias, f, organization.pk)
    return " AND ".join(conditions + searched), params + searched_params


# The words PostgreSQL makes of a search (the query's lexemes), for ``matches``.
SEARCH_WORDS_SQL = "SELECT tsvector_to_array(to_tsvector('simple'::regconfig, %s))"


def event_values(event_types: frozenset[AuditEventType]) -> list[str]:
    return sorted(e.value for e in event_types)


def event_condition(event_types: frozenset[AuditEventType]) -> Q:
    values = event_values(event_types)
    return Q(event=values[0]) if len(values) == 1 else Q(event__in=values)


def actor_emails_matching(organization: Organization, needle: str) -> QuerySet[Any, Any]:
    """The organization's recorded actor emails that contain ``needle``, ignoring case, as
    a subquery. An email search resolves to these few addresses first, then reads their
    entries (or counts) by index. icontains escapes % and _ itself: they match literally."""
    return AuditActorEmail.objects.filter(
        organization=organization, email__icontains=needle
    ).values("email")


def actor_emails_matching_sql(organization: Organization, needle: str) -> tuple[str, list[Any]]:
    """``actor_emails_matching`` for hand-written SQL: a condition on the directory rows
    aliased ``d`` (``FROM audit_actor_email d``), with its parameters. The same test as
    Django's icontains: UPPER on both sides, and %, _ and \\ escaped in the needle."""
    pattern = "%" + connection.ops.prep_for_like_query(needle) + "%"
    return (
        "d.organization_id = %s AND UPPER(d.email::text) LIKE UPPER(%s)",
        [organization.pk, pattern],
    )


# Where a statement reads the matched addresses once, as a CTE of this name (audit/page_sql.py).
MATCHED_EMAILS = "audit_matched_emails"


def matched_emails_sql(
    organization: Organization, needle: str, *, cte: bool = False
) -> tuple[str, list[Any]]:
    """The addresses of the directory that ``needle`` matches, as a subquery (one column,
    ``email``) with its parameters; with ``cte``, read from a CTE named MATCHED_EMAILS
    that the statement defines with the subquery itself."""
    if cte:
        return f"SELECT email FROM {MATCHED_EMAILS}", []  # noqa: S608 - a fixed name
    condition, params = actor_emails_matching_sql(organization, needle)
    return f"SELECT d.email FROM audit_actor_email d WHERE {condition}", params  # noqa: S608


def filter_query(filters: AuditLogFilter) -> str:
    """The filter as the export endpoint's query string (eventType, userEmail, from, to,
    ip, search, details),
    for the log's record of an export or a stream's change; empty for no filter."""
    from urllib.parse import urlencode

    pairs = [("eventType", e.value) for e in sorted(filters.event_types or (), key=str)]
    if filters.user_email:
        pairs.append(("userEmail", filters.user_email))
    if filters.time_from:
        pairs.append(("from", filters.time_from.isoformat()))
    if filters.time_to:
        pairs.append(("to", filters.time_to.isoformat()))
    if filters.ip is not None:
        pairs.append(("ip", str(filters.ip)))
    if filters.search is not None:
        pairs.append(("search", filters.search))
    if filters.details_json is not None:
        pairs.append(("details", filters.details_json))
    return urlencode(pairs)
