"""manage.py create_user EMAIL --org SLUG [--admin] [--password PW] [--name NAME]"""

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.management.organizations import organization_named
from core.services import user_create


class Command(BaseCommand):
    help = "Create a member of an organization (records USER_CREATED)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        parser.add_argument("--org", required=True, help="Slug of the user's organization.")
        parser.add_argument("--admin", action="store_true", help="Give the Administrator role.")
        parser.add_argument(
            "--password", help="Password for signing in; without one, only API tokens work."
        )
        parser.add_argument("--name", default="", help="Display name.")

    def handle(self, *args: Any, **options: Any) -> None:
        org = organization_named(options["org"])
        try:
            user = user_create(
                organization=org,
                email=options["email"],
                name=options["name"],
                password=options["password"],
                is_admin=options["admin"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        role = user.role.name if user.role else "no role"
        self.stdout.write(f"Created user {user.email} in {org.slug} ({role}).")
