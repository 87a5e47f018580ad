"""Email searches read indexes only.

An email search reads each matched address's range of the email index, and its total
sums the per-actor rollups. With an event type, each entry of the range had to be read
from the table to learn its event, and each rollup row to learn its count: thousands of
table reads for a page of 50 (docs/PERFORMANCE.md, "Profiling notes"). The email index
now carries the event and the per-actor rollup indexes carry the count (INCLUDE), so
PostgreSQL answers both from the index.

Built CONCURRENTLY, each new index before the one it replaces is dropped, so entries
keep being recorded and searched while an installation migrates.
"""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("audit", "0011_signed_prunes_and_rollbacks"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="auditlog",
            index=models.Index(
                fields=["organization", "actor_email", "-time", "-id"],
                include=("event",),
                name="audit_log_org_email_covering",
            ),
        ),
        RemoveIndexConcurrently(model_name="auditlog", name="audit_log_org_email_time"),
        AddIndexConcurrently(
            model_name="auditcountactorday",
            index=models.Index(
                fields=["organization", "actor_email", "day", "event"],
                include=("n",),
                name="audit_count_actor_day_cover",
            ),
        ),
        RemoveIndexConcurrently(model_name="auditcountactorday", name="audit_count_actor_day_key"),
        AddIndexConcurrently(
            model_name="auditcountactormonth",
            index=models.Index(
                fields=["organization", "actor_email", "month", "event"],
                include=("n",),
                name="audit_count_actor_month_cover",
            ),
        ),
        RemoveIndexConcurrently(
            model_name="auditcountactormonth", name="audit_count_actor_month_key"
        ),
    ]
