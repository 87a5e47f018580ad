"""Accounts: organizations, their roles, users (email login) and API tokens; and the
organizations' log streams (where their audit entries are pushed: audit/log_streams.py).

Writes go through ``core/services.py`` so that every change records its audit event in the
same transaction; the models hold data and invariants only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone


class Organization(models.Model):
    class Plan(models.TextChoices):
        FREE = "FREE", "Free"
        PAID = "PAID", "Paid"

    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200)
    plan = models.CharField(max_length=4, choices=Plan.choices, default=Plan.FREE)
    created_at = models.DateTimeField(default=timezone.now)
    audit_retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=(
            "Days audit entries are kept (prune_audit_logs); empty for the plan's default "
            "(AUDIT_RETENTION_DAYS_PAID / _FREE), 0 to keep them forever."
        ),
    )

    class Meta:
        ordering = ("slug",)

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"


class Role(models.Model):
    """A named role in one organization. Exactly one role per organization is the
    administrator role (``is_admin``); the others are custom roles."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="roles")
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=500, blank=True)
    is_admin = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    ADMIN_NAME = "Administrator"
    MEMBER_NAME = "Member"

    class Meta:
        ordering = ("organization", "name")
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["organization", "name"], name="role_unique_name"),
            models.UniqueConstraint(
                fields=["organization"], condition=Q(is_admin=True), name="role_one_admin_role"
            ),
        ]

    def __str__(self) -> str:
        return self.name


if TYPE_CHECKING:
    _UserManagerBase = BaseUserManager["User"]
else:
    _UserManagerBase = BaseUserManager


class UserManager(_UserManagerBase):
    def create_user(self, email: str, password: str | None = None, **fields: Any) -> User:
        user = self.model(email=normalize_email(email), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **fields: Any) -> User:
        fields.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **fields)


def normalize_email(email: str) -> str:
    """Emails are compared and stored in lower case (one account per address)."""
    return email.strip().lower()


class User(AbstractBaseUser, PermissionsMixin):
    """A person who signs in with an email address. Members of an organization have a role
    there; operators (Django admin staff) may belong to no organization."""

    email = models.EmailField(max_length=254, unique=True)
    name = models.CharField(max_length=150, blank=True)
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, null=True, blank=True, related_name="users"
    )
    role = models.ForeignKey(
        Role, on_delete=models.PROTECT, null=True, blank=True, related_name="users"
    )
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="May sign in to the Django admin.")
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        ordering = ("email",)
        constraints: ClassVar = [
            models.UniqueConstraint(Lower("email"), name="user_unique_email_ci"),
            models.CheckConstraint(
                condition=Q(role__isnull=True) | Q(organization__isnull=False),
                name="user_role_needs_organization",
            ),
        ]

    def __str__(self) -> str:
        return self.email


class ApiTokenScope(models.TextChoices):
    """What a token may be used for, on top of what its user may do."""

    READ = "read", "Read what the token's user may read (the default)"
    AUDIT_WRITE = "audit:write", "Record audit events into the user's organization"
    STREAMS_MANAGE = "streams:manage", "Manage the organization's log streams (its user's rights)"


def _default_scopes() -> list[str]:
    return [ApiTokenScope.READ.value]


class ApiToken(models.Model):
    """A bearer token for integrations. Only the SHA-256 of the secret is stored; the secret
    itself is shown once, when the token is created (core.services.api_token_create)."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    # The first characters of the secret, to recognize a token in lists without revealing it.
    prefix = models.CharField(max_length=16)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    scopes = ArrayField(
        models.CharField(max_length=32, choices=ApiTokenScope.choices),
        default=_default_scopes,
        help_text="What the token may be used for (ApiTokenScope); never empty.",
    )

    class Meta:
        ordering = ("-created_at",)
        constraints: ClassVar = [
            models.CheckConstraint(
                condition=Q(scopes__contained_by=ApiTokenScope.values) & Q(scopes__len__gt=0),
                name="api_token_scopes_known",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or 'unnamed'})"

    def has_scope(self, scope: ApiTokenScope) -> bool:
        return scope.value in self.scopes

    def is_usable(self, now: Any = None) -> bool:
        now = now or timezone.now()
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > now


class RateLimitWindow(models.Model):
    """Requests counted against one rate-limit key (``t:`` + a token's digest, ``i:`` + a
    client address) in one fixed window. Kept by core/rate_limit.py; the table is UNLOGGED
    (counters need no crash safety, and skip the write-ahead log), and old windows are
    deleted as they pass."""

    key = models.CharField(max_length=80)
    window_start = models.BigIntegerField(help_text="Start of the window, in Unix seconds.")
    hits = models.IntegerField()

    class Meta:
        db_table = "rate_limit_window"
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["key", "window_start"], name="rate_limit_window_key")
        ]

    def __str__(self) -> str:
        return f"{self.key} @ {self.window_start}: {self.hits}"


class StreamLease(models.Model):
    """One open live-stream subscription of a holder (``t:<token id>`` or ``u:<user id>``),
    for the cap on concurrent subscriptions (AUDIT_STREAM_MAX_PER_HOLDER). Renewed while
    the stream is open; a lease whose process died expires by itself. UNLOGGED."""

    holder = models.CharField(max_length=40)
    expires_at = models.DateTimeField()

    class Meta:
        db_table = "stream_lease"
        indexes: ClassVar = [models.Index(fields=["holder"], name="stream_lease_holder")]

    def __str__(self) -> str:
        return f"{self.holder} until {self.expires_at.isoformat()}"


class AuditLogStream(models.Model):
    """A destination an organization's audit entries are pushed to (audit/log_streams.py):
    an HTTPS endpoint, the entries it wants (a filter), the body format, and where delivery
    stands. Written by audit/log_streams.py only; the delivery columns by the one process
    that holds the stream's lease (``lease_holder`` until ``lease_expires_at``)."""

    class Format(models.TextChoices):
        JSON = "JSON", "One JSON object: {stream, events: [entry, ...]}"
        JSONL = "JSONL", "JSON lines: one entry per line"
        SPLUNK_HEC = "SPLUNK_HEC", "Splunk HTTP Event Collector: one {time, event} per line"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="audit_log_streams"
    )
    name = models.CharField(max_length=100)
    url = models.CharField(max_length=2000)
    format = models.CharField(max_length=16, choices=Format.choices, default=Format.JSON)
    # The AuditLogFilter of the entries it delivers (empty: no condition).
    event_types = ArrayField(models.CharField(max_length=32), default=list, blank=True)
    user_email = models.CharField(max_length=254, blank=True)
    time_from = models.DateTimeField(null=True, blank=True)
    time_to = models.DateTimeField(null=True, blank=True)
    ip = models.CharField(max_length=64, blank=True, help_text="An address or CIDR range.")
    search = models.CharField(max_length=200, blank=True)
    details = models.JSONField(null=True, blank=True, help_text="A containment filter.")
    enabled = models.BooleanField(default=True)
    # The signing secret is derived from this and the server's key (never stored).
    secret_salt = models.CharField(max_length=64)
    # A header the destination requires (e.g. Authorization: Splunk <token>): its name, and
    # its value sealed with a key derived from SECRET_KEY (audit/log_streams.py).
    credential_header = models.CharField(max_length=64, blank=True)
    credential_sealed = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Where delivery stands: the last delivered entry's stream position (stream_txid, id).
    position_txid = models.BigIntegerField()
    position_id = models.BigIntegerField(default=0)
    delivered = models.BigIntegerField(default=0)
    last_delivered_at = models.DateTimeField(null=True, blank=True)
    last_delivered_entry = models.BigIntegerField(null=True, blank=True)
    # Failures since the last success: how many, since when, the last one, the next try.
    failures = models.IntegerField(default=0)
    failing_since = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_reason = models.CharField(max_length=600, blank=True)
    lease_holder = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "audit_log_stream"
        ordering = ("organization", "id")
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["organization", "name"], name="audit_log_stream_unique_name"
            ),
            models.CheckConstraint(
                condition=Q(format__in=["JSON", "JSONL", "SPLUNK_HEC"]),
                name="audit_log_stream_format_known",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.organization_id})"
