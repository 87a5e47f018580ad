"""Indexes for the ip, search and details filters (audit/filters.py).

* ``audit_log_org_ip_time`` (btree: organization, ip, time, id): an address or CIDR
  range is one range of it (``ip <<= range``), and a total counts it from the index.
* ``audit_log_details_words`` (GIN on the details' words, as PostgreSQL's text search
  splits them with the ``simple`` configuration): ``search``. An expression index, so
  it is written here rather than in the model; a condition must repeat its expression
  exactly (``audit.filters.WORDS_VECTOR``).
* ``audit_log_details_contains`` (GIN, ``jsonb_path_ops``): ``details`` containment.

Built CONCURRENTLY, so entries keep being recorded and read while an installation
migrates (docs/PERFORMANCE.md gives the build times measured).
"""

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

WORDS_INDEX = """
CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_log_details_words ON audit_log
USING gin (jsonb_to_tsvector('simple'::regconfig, details, '"all"'::jsonb))
"""


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("audit", "0014_self_audit_events"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="auditlog",
            index=models.Index(
                fields=["organization", "ip", "-time", "-id"], name="audit_log_org_ip_time"
            ),
        ),
        migrations.RunSQL(
            WORDS_INDEX,
            reverse_sql="DROP INDEX CONCURRENTLY IF EXISTS audit_log_details_words",
        ),
        AddIndexConcurrently(
            model_name="auditlog",
            index=GinIndex(
                fields=["details"], opclasses=["jsonb_path_ops"], name="audit_log_details_contains"
            ),
        ),
    ]
