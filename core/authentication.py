"""API token (``Authorization: Bearer <token>``) authentication.

The secret is hashed and looked up by its hash (only hashes are stored); the match is
confirmed with a constant-time comparison. Expired and revoked tokens, and tokens of
deactivated users, authenticate nobody. The token's last use is recorded at most once per
``API_TOKEN_LAST_USED_RESOLUTION`` (core/services.py), not on every request.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils import timezone
from django.utils.crypto import constant_time_compare

from core.models import ApiToken, User
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


def api_token_authenticate(credentials: BearerCredentials) -> ApiToken | None:
    """The usable token with this secret, with its user, role and organization loaded;
    None when the secret is unknown, expired or revoked, or its user is inactive."""
    digest = api_token_hash(credentials.secret)
    token = (
        ApiToken.objects.select_related("user__role", "user__organization")
        .filter(token_hash=digest)
        .first()
    )
    if token is None or not constant_time_compare(token.token_hash, digest):
        return None
    now = timezone.now()
    user: User = token.user
    if not token.is_usable(now) or not user.is_active:
        return None
    api_token_record_use(token=token, now=now)
    return token
