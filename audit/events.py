"""The closed vocabulary of audit events: the one place where event types are defined.

The database constraint, the Django admin filter, the import validation and (later) the
GraphQL enum and the frontend's dropdown are all derived from ``AuditEventType``. The
seventeen types of the product's actions are joined by the audit log's own
(``RECORDED_BY_THE_AUDIT_LOG``): ``AUDIT_LOG_PRUNED``.

To add an event type: add a member here with its description, make a migration (the
CHECK constraint on ``audit_log.event`` lists the values), and update the pinned set in
``tests/audit/test_events.py`` -- the test is there so that the vocabulary never changes
by accident. Never rename or remove a value: stored entries and clients use it.
"""

from __future__ import annotations

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


# Recorded by the audit log itself, never by an integration (recordAuditEvents refuses
# them), so that no client can make the log claim, say, that it was pruned.
RECORDED_BY_THE_AUDIT_LOG = frozenset({AuditEventType.AUDIT_LOG_PRUNED.value})

# The longest value decides the column width; checked by the vocabulary test.
EVENT_MAX_LENGTH = 32
