"""manage.py create_api_token EMAIL [--name NAME] [--expires-in-days N] [--scope SCOPE ...]

Prints the new token alone on stdout (for scripts: TOKEN=$(manage.py create_api_token ...)).
"""

from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from core.models import ApiTokenScope, User
from core.services import api_token_create


class Command(BaseCommand):
    help = "Create an API token for a user and print it (it is shown only this once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        parser.add_argument("--name", default="", help="What the token is for.")
        parser.add_argument(
            "--expires-in-days", type=int, default=None, help="Expiry (default: never)."
        )
        parser.add_argument(
            "--scope",
            action="append",
            choices=ApiTokenScope.values,
            dest="scopes",
            help=(
                "What the token may be used for; repeat for several. "
                + "; ".join(f"{s.value}: {s.label}" for s in ApiTokenScope)
                + f". Default: {ApiTokenScope.READ.value}."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = User.objects.get(email__iexact=options["email"].strip())
        except User.DoesNotExist:
            raise CommandError(f"no user with email {options['email']!r}") from None
        days = options["expires_in_days"]
        if days is not None and days <= 0:
            raise CommandError("--expires-in-days must be a positive number of days")
        expires_at = timezone.now() + timedelta(days=days) if days else None
        try:
            _, secret = api_token_create(
                user=user,
                name=options["name"],
                expires_at=expires_at,
                scopes=options["scopes"] or [ApiTokenScope.READ],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(secret)
