"""manage.py create_org SLUG --name NAME --plan {free,paid}"""

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.services import organization_create


class Command(BaseCommand):
    help = "Register an organization (records USER_REGISTERED)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="Short unique identifier: letters, digits, - and _.")
        parser.add_argument("--name", required=True, help="Display name.")
        parser.add_argument("--plan", required=True, choices=["free", "paid"], type=str.lower)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            org = organization_create(
                slug=options["slug"], name=options["name"], plan=options["plan"]
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(f"Created organization {org.slug} ({org.name}, plan {org.plan}).")
