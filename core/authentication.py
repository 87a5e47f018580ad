"""API token (``Authorization: Bearer <token>``) authentication.

The secret is hashed and looked up by its hash (only hashes are stored); the match is
confirmed with a constant-time comparison. Expired and revoked tokens, and tokens of
deactivated users, authenticate nobody. The token's last use is recorded at most once per
``API_TOKEN_LAST_USED_RESOLUTION`` (core/services.py), not on every request.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

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
        f"SELECT {', '.join(columns)} FROM {ApiToken._meta.db_table} t"  # noqa: S608
        f" JOIN {User._meta.db_table} u ON u.id = t.user_id"
        f" LEFT JOIN {Role._meta.db_table} r ON r.id = u.role_id"
        f" LEFT JOIN {Organization._meta.db_table} o ON o.id = u.organization_id"
        " WHERE t.token_hash = %s"
    )
    return sql, attnames


def _token_with_user(digest: str) -> ApiToken | None:
    sql, attnames = _token_query()
    with connection.cursor() as cursor:
        cursor.execute(sql, [digest])
        row = cursor.fetchone()
    if row is None:
        return None
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
    return token


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
