"""Rate-limit counters (core/rate_limit.py), in an UNLOGGED table: counts that may be lost
in a crash, written without the write-ahead log."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("core", "0002_api_token_scopes")]

    operations = [
        migrations.CreateModel(
            name="RateLimitWindow",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("key", models.CharField(max_length=80)),
                (
                    "window_start",
                    models.BigIntegerField(help_text="Start of the window, in Unix seconds."),
                ),
                ("hits", models.IntegerField()),
            ],
            options={
                "db_table": "rate_limit_window",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("key", "window_start"), name="rate_limit_window_key"
                    )
                ],
            },
        ),
        migrations.RunSQL(
            "ALTER TABLE rate_limit_window SET UNLOGGED;",
            "ALTER TABLE rate_limit_window SET LOGGED;",
        ),
    ]
