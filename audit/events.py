"""The closed vocabulary of audit events: the one place where event types are defined.

The database constraint, the Django admin filter, the import validation and (later) the
GraphQL enum and the frontend's dropdown are all derived from ``AuditEventType``. The
seventeen types of the product's actions are joined by the audit log's own
(``RECORDED_BY_THE_AUDIT_LOG``): retention (``AUDIT_LOG_PRUNED``), exports
(``AUDIT_LOG_EXPORTED``) and the log streams' changes (``AUDIT_LOG_STREAM_*``).

Each event type also declares the shape of its details (``DETAILS_FAMILIES``): the keys,
their types, which are required. Event types that describe the same kind of thing form a
family (users, sessions, resources, ...), which is one type of the GraphQL union
``AuditDetails`` (graphql_api/details.py); the same definitions are published as JSON
Schema (audit/details.py, ``make schema``), and ``recordAuditEvents`` and
``import_audit_events`` check every event against them (required keys present, values of
the declared type; keys not declared are kept, so senders can add context).

To add an event type: add a member here with its description and put it in a family
(with the keys it requires), make a migration (the CHECK constraint on ``audit_log.event``
lists the values), run ``make schema``, and update the pinned set in
``tests/audit/test_events.py`` -- the test is there so that the vocabulary never changes
by accident. Never rename or remove a value, or a declared key: stored entries and
clients use them. A key may be added to a family, as optional.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from django.db import models


class AuditEventType(models.TextChoices):
    """Each value is stored as is; the label is its human description."""

    USER_REGISTERED = "USER_REGISTERED", "A new organization was registered"
    USER_LOGIN = "USER_LOGIN", "A user signed in"
    USER_CREATED = "USER_CREATED", "An admin created a user"
    USER_UPDATED = "USER_UPDATED", "A user's profile or status changed"
    USER_DELETED = "USER_DELETED", "A user was removed from the organization"
    SESSION_STARTED = "SESSION_STARTED", "A session was created"
    SESSION_STOPPED = "SESSION_STOPPED", "A session was stopped by hand"
    SESSION_EXTENDED = "SESSION_EXTENDED", "A session's duration was extended"
    SESSION_EXPIRED = "SESSION_EXPIRED", "A session expired on its own"
    RESOURCE_CREATED = "RESOURCE_CREATED", "A cloud resource was added"
    RESOURCE_UPDATED = "RESOURCE_UPDATED", "A cloud resource was modified"
    RESOURCE_DELETED = "RESOURCE_DELETED", "A cloud resource was removed"
    CREDENTIAL_CREATED = "CREDENTIAL_CREATED", "A cloud credential was added"
    CREDENTIAL_DELETED = "CREDENTIAL_DELETED", "A cloud credential was removed"
    ROLE_CREATED = "ROLE_CREATED", "A role was created"
    ROLE_UPDATED = "ROLE_UPDATED", "A role was modified"
    ROLE_DELETED = "ROLE_DELETED", "A role was removed"
    AUDIT_LOG_PRUNED = "AUDIT_LOG_PRUNED", "Entries older than the retention period were removed"
    AUDIT_LOG_EXPORTED = "AUDIT_LOG_EXPORTED", "Entries of the audit log were exported to a file"
    AUDIT_LOG_STREAM_CREATED = (
        "AUDIT_LOG_STREAM_CREATED",
        "A log stream now pushes entries to a destination",
    )
    AUDIT_LOG_STREAM_UPDATED = "AUDIT_LOG_STREAM_UPDATED", "A log stream's settings changed"
    AUDIT_LOG_STREAM_DELETED = "AUDIT_LOG_STREAM_DELETED", "A log stream was deleted"
    AUDIT_LOG_STREAM_PAUSED = (
        "AUDIT_LOG_STREAM_PAUSED",
        "A log stream was paused after failing for too long",
    )


# Recorded by the audit log itself, never by an integration (recordAuditEvents refuses
# them), so that no client can make the log claim, say, that it was pruned.
RECORDED_BY_THE_AUDIT_LOG = frozenset(
    {
        AuditEventType.AUDIT_LOG_PRUNED.value,
        AuditEventType.AUDIT_LOG_EXPORTED.value,
        AuditEventType.AUDIT_LOG_STREAM_CREATED.value,
        AuditEventType.AUDIT_LOG_STREAM_UPDATED.value,
        AuditEventType.AUDIT_LOG_STREAM_DELETED.value,
        AuditEventType.AUDIT_LOG_STREAM_PAUSED.value,
    }
)

# The longest value decides the column width; checked by the vocabulary test.
EVENT_MAX_LENGTH = 32


# --- the shape of each event type's details -----------------------------------------------


class Kind(enum.Enum):
    """The type of a key's value (JSON Schema / GraphQL)."""

    STRING = "string"
    INTEGER = "integer"  # within GraphQL's Int: -2^31 .. 2^31-1; 3.0 counts, as in JSON Schema
    BOOLEAN = "boolean"
    DATETIME = "datetime"  # an RFC 3339 string with its offset: 2026-01-31T12:00:00Z
    STRINGS = "strings"  # a list of strings
    CHANGES = "changes"  # {"<field>": {"from": <any JSON>, "to": <any JSON>}, ...}
    OBJECT = "object"  # nested keys (Key.shape)


@dataclass(frozen=True)
class Shape:
    """A nested object: a GraphQL type of its own (``name``) and a JSON Schema definition."""

    name: str
    description: str
    keys: tuple[Key, ...]


@dataclass(frozen=True)
class Key:
    """One key of the details. ``required`` keys must be present (nested keys: whenever
    their object is); ``nullable`` ones may be null; ``min_length`` applies to strings.
    ``graphql`` names the GraphQL field when the key's camelCase would clash with a field
    of another type of the union (GraphQL wants one type per field name across them)."""

    name: str
    kind: Kind
    description: str
    required: bool = False
    nullable: bool = False
    min_length: int = 0
    shape: Shape | None = None
    graphql: str | None = None


@dataclass(frozen=True)
class Family:
    """Event types whose details describe the same kind of thing, with the keys they may
    carry. ``events`` maps each event type to the keys it requires (the others are
    optional for it)."""

    name: str
    description: str
    keys: tuple[Key, ...]
    events: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def key(self, name: str) -> Key:
        return next(key for key in self.keys if key.name == name)


_E = AuditEventType
_CHANGES = "What changed, by field: each field's value before (`from`) and after (`to`)."
_ID = "A non-empty string."

ORGANIZATION = Shape(
    "AuditDetailsOrganization",
    "The organization as it was registered.",
    (
        Key("id", Kind.INTEGER, "The organization's id.", required=True),
        Key("slug", Kind.STRING, "Its unique short name.", required=True, min_length=1),
        Key("name", Kind.STRING, "Its display name.", required=True),
        Key("plan", Kind.STRING, "Its plan: FREE or PAID.", required=True),
    ),
)
USER = Shape(
    "AuditDetailsUser",
    "The user an action was about (not who did it: that is the entry's user), as they "
    "were at the time.",
    (
        Key("email", Kind.STRING, "The user's email.", required=True, min_length=1),
        Key("id", Kind.INTEGER, "The user's id in this backend."),
        Key("name", Kind.STRING, "The user's name, possibly empty."),
    ),
)
ROLE = Shape(
    "AuditDetailsRole",
    "The role an action was about, as it was after the action (before it, for a deletion).",
    (
        Key("name", Kind.STRING, "The role's name, unique in its organization.", required=True),
        Key("id", Kind.INTEGER, "The role's id in this backend."),
        Key("is_admin", Kind.BOOLEAN, "Whether it is the organization's Administrator role."),
        Key(
            "permissions",
            Kind.STRINGS,
            "The permissions the role grants, as the sending platform names them.",
        ),
    ),
)

STREAM = Shape(
    "AuditDetailsStream",
    "The log stream concerned, as it was after the action (before it, for a deletion).",
    (
        Key("id", Kind.INTEGER, "The stream's id.", required=True),
        Key("name", Kind.STRING, "Its name.", required=True),
        Key(
            "destination",
            Kind.STRING,
            "Where it delivers: the URL's scheme, host, port and path (never its query).",
            required=True,
        ),
        Key("format", Kind.STRING, "JSON, JSONL or SPLUNK_HEC.", required=True),
        Key("enabled", Kind.BOOLEAN, "Whether it delivers.", required=True),
    ),
)

_PRODUCT_FAMILIES: tuple[Family, ...] = (
    Family(
        "RegistrationDetails",
        "The details of USER_REGISTERED: the organization that was registered.",
        (
            Key(
                "organization",
                Kind.OBJECT,
                "The new organization.",
                shape=ORGANIZATION,
            ),
        ),
        {_E.USER_REGISTERED: ("organization",)},
    ),
    Family(
        "SignInDetails",
        "The details of USER_LOGIN: how the user signed in.",
        (
            Key(
                "method",
                Kind.STRING,
                "How the user proved who they are: `password` for this backend's sign-in "
                "form; integrations name their own (`sso`, `passkey`, ...).",
                min_length=1,
            ),
            Key("user_agent", Kind.STRING, "The browser's User-Agent header, when it sent one."),
        ),
        {_E.USER_LOGIN: ("method",)},
    ),
    Family(
        "UserDetails",
        "The details of USER_CREATED, USER_UPDATED (with `changes`) and USER_DELETED.",
        (
            Key("user", Kind.OBJECT, "The user concerned.", shape=USER),
            Key(
                "role",
                Kind.STRING,
                "USER_CREATED: the name of the role the user was given; null for none.",
                nullable=True,
                graphql="roleName",
            ),
            Key("changes", Kind.CHANGES, _CHANGES),
        ),
        {
            _E.USER_CREATED: ("user",),
            _E.USER_UPDATED: ("user", "changes"),
            _E.USER_DELETED: ("user",),
        },
    ),
    Family(
        "SessionDetails",
        "The details of SESSION_STARTED, SESSION_STOPPED, SESSION_EXTENDED and SESSION_EXPIRED.",
        (
            Key("session_id", Kind.STRING, "The session's id. " + _ID, min_length=1),
            Key(
                "duration_seconds",
                Kind.INTEGER,
                "How long the session was granted (STARTED) or lasted (STOPPED, EXPIRED).",
            ),
            Key("expires_at", Kind.DATETIME, "When the session expires (or expired)."),
            Key(
                "extended_by_seconds",
                Kind.INTEGER,
                "SESSION_EXTENDED: how many seconds were added to the session.",
            ),
        ),
        {
            _E.SESSION_STARTED: ("session_id",),
            _E.SESSION_STOPPED: ("session_id",),
            _E.SESSION_EXTENDED: ("session_id", "extended_by_seconds"),
            _E.SESSION_EXPIRED: ("session_id",),
        },
    ),
    Family(
        "ResourceDetails",
        "The details of RESOURCE_CREATED, RESOURCE_UPDATED (with `changes`) and "
        "RESOURCE_DELETED: a cloud resource of the organization.",
        (
            Key(
                "resource",
                Kind.STRING,
                "The resource's id in the cloud platform (e.g. `vm-12`). " + _ID,
                min_length=1,
            ),
            Key("kind", Kind.STRING, "What sort of resource it is (e.g. `vm`, `bucket`)."),
            Key("name", Kind.STRING, "Its display name."),
            Key("changes", Kind.CHANGES, _CHANGES),
        ),
        {
            _E.RESOURCE_CREATED: ("resource",),
            _E.RESOURCE_UPDATED: ("resource", "changes"),
            _E.RESOURCE_DELETED: ("resource",),
        },
    ),
    Family(
        "CredentialDetails",
        "The details of CREDENTIAL_CREATED and CREDENTIAL_DELETED: a cloud credential (never "
        "its secret).",
        (
            Key(
                "credential",
                Kind.STRING,
                "The credential's id (e.g. an access key id; never the secret). " + _ID,
                min_length=1,
            ),
            Key("kind", Kind.STRING, "What sort of credential it is (e.g. `aws-access-key`)."),
            Key("name", Kind.STRING, "Its display name."),
        ),
        {_E.CREDENTIAL_CREATED: ("credential",), _E.CREDENTIAL_DELETED: ("credential",)},
    ),
    Family(
        "RoleDetails",
        "The details of ROLE_CREATED, ROLE_UPDATED (with `changes`) and ROLE_DELETED.",
        (
            Key("role", Kind.OBJECT, "The role concerned.", shape=ROLE),
            Key("changes", Kind.CHANGES, _CHANGES),
        ),
        {
            _E.ROLE_CREATED: ("role",),
            _E.ROLE_UPDATED: ("role", "changes"),
            _E.ROLE_DELETED: ("role",),
        },
    ),
    Family(
        "RetentionDetails",
        "The details of AUDIT_LOG_PRUNED: one batch of entries removed by retention, with "
        "the digest of their ids that the signed prune record holds.",
        (
            Key("entries", Kind.INTEGER, "How many entries the batch removed."),
            Key("before", Kind.DATETIME, "Entries older than this were removed."),
            Key("retentionDays", Kind.INTEGER, "The retention period applied, in days."),
            Key(
                "pruneRecordIdsSha256",
                Kind.STRING,
                "SHA-256 (hex) of the removed entries' ids, as the prune record packs them.",
            ),
        ),
        {
            _E.AUDIT_LOG_PRUNED: (
                "entries",
                "before",
                "retentionDays",
                "pruneRecordIdsSha256",
            )
        },
    ),
)

DETAILS_FAMILIES: Final[tuple[Family, ...]] = (
    *_PRODUCT_FAMILIES,
    Family(
        "ExportDetails",
        "The details of AUDIT_LOG_EXPORTED: a file export of the log, recorded when it starts.",
        (
            Key("format", Kind.STRING, "csv or jsonl."),
            Key(
                "filter",
                Kind.STRING,
                "The export's filter as its query string (eventType, userEmail, from, to); "
                "empty for everything.",
            ),
            Key("via", Kind.STRING, "`http` (/audit-logs/export) or `command` (manage.py)."),
        ),
        {_E.AUDIT_LOG_EXPORTED: ("format", "filter", "via")},
    ),
    Family(
        "StreamDetails",
        "The details of AUDIT_LOG_STREAM_CREATED, _UPDATED (with `changes`), _DELETED and "
        "_PAUSED (with `reason`).",
        (
            Key("stream", Kind.OBJECT, "The log stream.", shape=STREAM),
            Key(
                "changes",
                Kind.CHANGES,
                _CHANGES + " A rotated secret is `secret`; a credential, `credential`, by "
                "its header name: neither value is ever recorded.",
            ),
            Key("reason", Kind.STRING, "AUDIT_LOG_STREAM_PAUSED: the last error, and since when."),
        ),
        {
            _E.AUDIT_LOG_STREAM_CREATED: ("stream",),
            _E.AUDIT_LOG_STREAM_UPDATED: ("stream", "changes"),
            _E.AUDIT_LOG_STREAM_DELETED: ("stream",),
            _E.AUDIT_LOG_STREAM_PAUSED: ("stream", "reason"),
        },
    ),
)

# Each event type's family.
FAMILY_OF: Final[Mapping[str, Family]] = {
    event: family for family in DETAILS_FAMILIES for event in family.events
}
