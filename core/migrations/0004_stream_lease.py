"""Leases of open live-stream subscriptions, for the cap per token or user (core/services.py)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0003_rate_limit_window"),
    ]

    operations = [
        # Leases need no crash safety: after a crash every stream is gone too.
        migrations.CreateModel(
            name="StreamLease",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("holder", models.CharField(max_length=40)),
                ("expires_at", models.DateTimeField()),
            ],
            options={
                "db_table": "stream_lease",
                "indexes": [models.Index(fields=["holder"], name="stream_lease_holder")],
            },
        ),
        migrations.RunSQL(
            "ALTER TABLE stream_lease SET UNLOGGED;", "ALTER TABLE stream_lease SET LOGGED;"
        ),
    ]
