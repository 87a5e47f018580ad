"""The audit log's own events: exports (AUDIT_LOG_EXPORTED) and log streams
(AUDIT_LOG_STREAM_CREATED, _UPDATED, _DELETED, _PAUSED) join the vocabulary.

The CHECK constraint on ``audit_log.event`` only grows, so every stored row already
satisfies the new one: it is added NOT VALID (no scan under the ACCESS EXCLUSIVE lock that
ALTER TABLE takes) and validated after, a scan under a lock that lets writes through.
"""

from django.db import migrations, models

CHOICES = [
    ("USER_REGISTERED", "A new organization was registered"),
    ("USER_LOGIN", "A user signed in"),
    ("USER_CREATED", "An admin created a user"),
    ("USER_UPDATED", "A user's profile or status changed"),
    ("USER_DELETED", "A user was removed from the organization"),
    ("SESSION_STARTED", "A session was created"),
    ("SESSION_STOPPED", "A session was stopped by hand"),
    ("SESSION_EXTENDED", "A session's duration was extended"),
    ("SESSION_EXPIRED", "A session expired on its own"),
    ("RESOURCE_CREATED", "A cloud resource was added"),
    ("RESOURCE_UPDATED", "A cloud resource was modified"),
    ("RESOURCE_DELETED", "A cloud resource was removed"),
    ("CREDENTIAL_CREATED", "A cloud credential was added"),
    ("CREDENTIAL_DELETED", "A cloud credential was removed"),
    ("ROLE_CREATED", "A role was created"),
    ("ROLE_UPDATED", "A role was modified"),
    ("ROLE_DELETED", "A role was removed"),
    ("AUDIT_LOG_PRUNED", "Entries older than the retention period were removed"),
    ("AUDIT_LOG_EXPORTED", "Entries of the audit log were exported to a file"),
    ("AUDIT_LOG_STREAM_CREATED", "A log stream now pushes entries to a destination"),
    ("AUDIT_LOG_STREAM_UPDATED", "A log stream's settings changed"),
    ("AUDIT_LOG_STREAM_DELETED", "A log stream was deleted"),
    ("AUDIT_LOG_STREAM_PAUSED", "A log stream was paused after failing for too long"),
]
VALUES = [value for value, _ in CHOICES]

FORWARD = """
ALTER TABLE audit_log DROP CONSTRAINT audit_log_event_known;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_event_known
    CHECK (event IN ('USER_REGISTERED', 'USER_LOGIN', 'USER_CREATED', 'USER_UPDATED', 'USER_DELETED', 'SESSION_STARTED', 'SESSION_STOPPED', 'SESSION_EXTENDED', 'SESSION_EXPIRED', 'RESOURCE_CREATED', 'RESOURCE_UPDATED', 'RESOURCE_DELETED', 'CREDENTIAL_CREATED', 'CREDENTIAL_DELETED', 'ROLE_CREATED', 'ROLE_UPDATED', 'ROLE_DELETED', 'AUDIT_LOG_PRUNED', 'AUDIT_LOG_EXPORTED', 'AUDIT_LOG_STREAM_CREATED', 'AUDIT_LOG_STREAM_UPDATED', 'AUDIT_LOG_STREAM_DELETED', 'AUDIT_LOG_STREAM_PAUSED')) NOT VALID;
ALTER TABLE audit_log VALIDATE CONSTRAINT audit_log_event_known;
"""
BACKWARD = """
ALTER TABLE audit_log DROP CONSTRAINT audit_log_event_known;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_event_known
    CHECK (event IN ('USER_REGISTERED', 'USER_LOGIN', 'USER_CREATED', 'USER_UPDATED', 'USER_DELETED', 'SESSION_STARTED', 'SESSION_STOPPED', 'SESSION_EXTENDED', 'SESSION_EXPIRED', 'RESOURCE_CREATED', 'RESOURCE_UPDATED', 'RESOURCE_DELETED', 'CREDENTIAL_CREATED', 'CREDENTIAL_DELETED', 'ROLE_CREATED', 'ROLE_UPDATED', 'ROLE_DELETED', 'AUDIT_LOG_PRUNED')) NOT VALID;
ALTER TABLE audit_log VALIDATE CONSTRAINT audit_log_event_known;
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0013_rollup_lookups_by_index")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(FORWARD, BACKWARD)],
            state_operations=[
                migrations.RemoveConstraint(model_name="auditlog", name="audit_log_event_known"),
                migrations.AlterField(
                    model_name="auditlog",
                    name="event",
                    field=models.CharField(choices=CHOICES, max_length=32),
                ),
                migrations.AddConstraint(
                    model_name="auditlog",
                    constraint=models.CheckConstraint(
                        condition=models.Q(("event__in", VALUES)),
                        name="audit_log_event_known",
                    ),
                ),
            ],
        )
    ]
