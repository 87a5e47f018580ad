"""API token (``Authorization: Bearer <token>``) authentication.

The secret is hashed and looked up by its hash (only hashes are stored); the match is
confirmed with a constant-time comparison. Expired and revoked tokens, and tokens of
deactivated users, authenticate nobody. The token's last use is recorded at most once per
``API_TOKEN_LAST_USED_RESOLUTION`` (core/services.py), not on every request.

``api_token_remembered`` saves the lookup's round trip for a reader that queries the
database anyway (the compiled read path): a token authenticated before in this process is
taken from memory, with a ``CredentialsGuard``, a condition the reader adds to its own
statement. The guard compares a digest of the token's, user's, role's and organization's
rows with the one remembered, in the same snapshot as the data
read; when anything about them changed (a revocation, a new role, a plan, a deactivated
user), the reader discards what it read (``StaleCredentials``) and the caller is looked
up again. So a change is seen by the very next statement, in every process.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from django.db import connection, models
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from core.models import ApiToken, Organization, Role, User
from core.services import api_token_hash, api_token_record_use

# Secrets are "alog_" + 43 URL-safe characters; anything much longer is not a token and is
# refused before hashing.
API_TOKEN_MAX_LENGTH = 128


class MalformedAuthorization(ValueError):
    """The Authorization header is present but is not ``Bearer <token>``."""


@dataclass(frozen=True)
class BearerCredentials:
    secret: str


def bearer_credentials(header: str | None) -> BearerCredentials | None:
    """The token in an Authorization header; None when there is no header.

    Raises MalformedAuthorization for any other scheme or shape: a client that sends
    credentials must learn they were not accepted, not be treated as anonymous.
    """
    if header is None:
        return None
    scheme, _, secret = header.strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret or " " in secret:
        raise MalformedAuthorization("expected 'Authorization: Bearer <token>'")
    if len(secret) > API_TOKEN_MAX_LENGTH:
        raise MalformedAuthorization("the token is too long to be valid")
    return BearerCredentials(secret=secret)


_JOINED: list[tuple[type[models.Model], str]] = [
    (ApiToken, "t"),
    (User, "u"),
    (Role, "r"),
    (Organization, "o"),
]


@functools.cache
def _token_query() -> tuple[str, list[list[str]]]:
    """SELECT the token, its user, the user's role and organization, every column of each.

    Written once as SQL: through the ORM's select_related query a lookup took 1.1-1.2 ms,
    mostly compiling it on every request; this one takes 0.4 ms (profiling notes in
    docs/PERFORMANCE.md)."""
    columns, attnames = [], []
    for model, alias in _JOINED:
        fields = model._meta.concrete_fields
        columns += [f"{alias}.{connection.ops.quote_name(f.column)}" for f in fields]
        attnames.append([f.attname for f in fields])
    sql = (
        f"SELECT {', '.join(columns)}, {_fingerprint_sql()} {_TOKEN_JOINS} WHERE t.token_hash = %s"
    )
    return sql, attnames


_TOKEN_JOINS = (
    f"FROM {ApiToken._meta.db_table} t"
    f" JOIN {User._meta.db_table} u ON u.id = t.user_id"
    f" LEFT JOIN {Role._meta.db_table} r ON r.id = u.role_id"
    f" LEFT JOIN {Organization._meta.db_table} o ON o.id = u.organization_id"
)


@functools.cache
def _fingerprint_sql() -> str:
    """A digest of every column of the four rows a caller is made of."""
    columns = [
        f"{alias}.{connection.ops.quote_name(f.column)}"
        for model, alias in _JOINED
        for f in model._meta.concrete_fields
    ]
    return f"md5(row({', '.join(columns)})::text)"


def _fingerprint(digest: str) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {_fingerprint_sql()} {_TOKEN_JOINS} WHERE t.token_hash = %s", [digest]
        )
        row = cursor.fetchone()
    return row[0] if row is not None else None


def _token_with_user(digest: str) -> ApiToken | None:
    found = _token_and_fingerprint(digest)
    return found[0] if found is not None else None


def _token_and_fingerprint(digest: str) -> tuple[ApiToken, str] | None:
    sql, attnames = _token_query()
    with connection.cursor() as cursor:
        cursor.execute(sql, [digest])
        row = cursor.fetchone()
    if row is None:
        return None
    fingerprint = row[-1]
    loaded: list[models.Model | None] = []
    start = 0
    for (model, _), names in zip(_JOINED, attnames, strict=True):
        values = row[start : start + len(names)]
        start += len(names)
        # A LEFT JOIN that found nothing (a user without a role or organization).
        loaded.append(None if values[0] is None else model.from_db("default", names, values))
    token, user, role, organization = loaded
    assert isinstance(token, ApiToken) and isinstance(user, User)
    user.role = role  # type: ignore[assignment]
    user.organization = organization  # type: ignore[assignment]
    token.user = user
    return token, fingerprint


def api_token_authenticate(credentials: BearerCredentials) -> ApiToken | None:
    """The usable token with this secret, with its user, role and organization loaded;
    None when the secret is unknown, expired or revoked, or its user is inactive."""
    digest = api_token_hash(credentials.secret)
    token = _token_with_user(digest)
    if token is None or not constant_time_compare(token.token_hash, digest):
        return None
    now = timezone.now()
    user: User = token.user
    if not token.is_usable(now) or not user.is_active:
        return None
    api_token_record_use(token=token, now=now)
    return token


# --- remembered tokens ------------------------------------------------------------------------


@dataclass(frozen=True)
class CredentialsGuard:
    """A condition for a reader's own statement: true while the remembered caller's rows
    are as they were; false or null once anything about them changed."""

    digest: str
    sql: str
    params: tuple[Any, ...]


class StaleCredentials(Exception):
    """What a statement read under a guard must be discarded: the caller changed."""

    def __init__(self, guard: CredentialsGuard) -> None:
        super().__init__("the caller's credentials changed")
        self.guard = guard


REMEMBERED_MAX = 1024
_remembered: OrderedDict[str, tuple[ApiToken, str]] = OrderedDict()
_remembered_lock = threading.Lock()


def api_token_remembered(
    credentials: BearerCredentials,
) -> tuple[ApiToken | None, CredentialsGuard | None]:
    """``api_token_authenticate``, from memory when this process authenticated the token
    before: the token and the guard its reader's statement must check (None when the
    token was looked up just now, or was refused)."""
    digest = api_token_hash(credentials.secret)
    with _remembered_lock:
        remembered = _remembered.get(digest)
        if remembered is not None:
            _remembered.move_to_end(digest)
    now = timezone.now()
    if remembered is not None:
        token, fingerprint = remembered
        if token.is_usable(now) and token.user.is_active:
            if api_token_record_use(token=token, now=now):
                # Its last use was written (every few minutes): the rows' digest moved.
                fingerprint = _fingerprint(digest) or ""
                _remember(digest, token, fingerprint)
            guard_sql = f"(SELECT {_fingerprint_sql()} {_TOKEN_JOINS} WHERE t.token_hash = %s) = %s"
            return token, CredentialsGuard(digest, guard_sql, (digest, fingerprint))
        api_token_forget(digest)  # expired since
    found = _token_and_fingerprint(digest)
    if found is None or not constant_time_compare(found[0].token_hash, digest):
        return None, None
    token, fingerprint = found
    if not token.is_usable(now) or not token.user.is_active:
        return None, None
    if api_token_record_use(token=token, now=now):
        fingerprint = _fingerprint(digest) or ""
    _remember(digest, token, fingerprint)
    return token, None


def _remember(digest: str, token: ApiToken, fingerprint: str) -> None:
    with _remembered_lock:
        _remembered[digest] = (token, fingerprint)
        _remembered.move_to_end(digest)
        while len(_remembered) > REMEMBERED_MAX:
            _remembered.popitem(last=False)


def api_token_forget(digest: str) -> None:
    with _remembered_lock:
        _remembered.pop(digest, None)
