"""manage.py migrate: Django's, connecting as the database's owner by default.

The server's own role owns nothing and may not change the schema (core/roles.py);
``--database`` still picks another connection.
"""

from __future__ import annotations

from django.core.management.base import CommandParser
from django.core.management.commands.migrate import Command as DjangoMigrate

from core.roles import OWNER_ALIAS


class Command(DjangoMigrate):
    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.set_defaults(database=OWNER_ALIAS)
