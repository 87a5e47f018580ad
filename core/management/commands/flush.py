"""manage.py flush: Django's, run through the database owner's connection.

Emptying tables takes TRUNCATE, which the server's role may not do (core/roles.py). Both
connections name the same database, so ``--database default`` flushes it as the owner too.
"""

from __future__ import annotations

from typing import Any

from django.core.management.commands.flush import Command as DjangoFlush

from core.roles import APP_ALIAS, OWNER_ALIAS


class Command(DjangoFlush):
    def handle(self, **options: Any) -> None:
        if options.get("database") == APP_ALIAS:
            options["database"] = OWNER_ALIAS
        super().handle(**options)
