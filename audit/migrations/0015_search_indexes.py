"""Indexes for the ip, search and details filters (audit/filters.py).

* ``audit_log_org_ip_time`` (btree: organization, ip, time, id): an address or CIDR
  range is one range of it (``ip <<= range``), and a total counts it from the index.
* ``audit_log_details_words`` (GIN on the details' words, as PostgreSQL's text search
  splits them with the ``simple`` configuration, and the organization as a word no text
  makes): ``search``.
* ``audit_log_details_contains`` (GIN, ``jsonb_path_ops``, on ``[organization, details]``):
  ``details`` containment.

Both are expression indexes, written here rather than in the model; a condition must
repeat their expressions exactly (``audit.filters.ORG_WORDS_VECTOR``, ``ORG_DETAILS``).
They hold the organization so that a search reads its own organization's matches only.

Built CONCURRENTLY, so entries keep being recorded and read while an installation
migrates (docs/PERFORMANCE.md gives the build times measured).
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

WORDS_INDEX = """
CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_log_details_words ON audit_log USING gin ((
    jsonb_to_tsvector('simple'::regconfig, details, '"all"'::jsonb)
    || array_to_tsvector(ARRAY[' ' || organization_id::text])
))
"""
CONTAINS_INDEX = """
CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_log_details_contains ON audit_log
USING gin (((('[' || organization_id::text || ']')::jsonb || details)) jsonb_path_ops)
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
        migrations.RunSQL(
            CONTAINS_INDEX,
            reverse_sql="DROP INDEX CONCURRENTLY IF EXISTS audit_log_details_contains",
        ),
    ]
