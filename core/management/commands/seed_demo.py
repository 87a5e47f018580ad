"""manage.py seed_demo [--events N] [--if-empty]

A demo: the Paid organization "acme" with an administrator, members and custom roles, the
Free organization "tinyco", and about 50,000 events over the last 90 days with a realistic
mix. Idempotent: when "acme" exists it only prints how to sign in.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone

from audit.events import AuditEventType as E
from audit.services import AuditEntryDraft, audit_log_bulk_create
from core.database import without_statement_timeout
from core.models import Organization, User
from core.progress import ProgressBar
from core.services import api_token_create, organization_create, role_create, user_create

DEMO_ORG = "acme"
DEMO_ADMIN = "admin@acme.test"
DEMO_PASSWORD = "demo-password"  # noqa: S105 - documented demo credentials
FREE_ORG = "tinyco"
DAYS = 90

# Relative frequencies: many sign-ins and sessions, fewer changes to resources, roles and
# credentials; SESSION_EXPIRED is a system event (no user).
MIX: list[tuple[str, int]] = [
    (E.USER_LOGIN, 400),
    (E.SESSION_STARTED, 200),
    (E.SESSION_STOPPED, 90),
    (E.SESSION_EXTENDED, 60),
    (E.SESSION_EXPIRED, 50),
    (E.RESOURCE_CREATED, 50),
    (E.RESOURCE_UPDATED, 60),
    (E.RESOURCE_DELETED, 25),
    (E.CREDENTIAL_CREATED, 12),
    (E.CREDENTIAL_DELETED, 6),
    (E.USER_UPDATED, 20),
    (E.ROLE_UPDATED, 5),
    (E.ROLE_CREATED, 2),
    (E.ROLE_DELETED, 1),
]
FIRST_NAMES = [
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Donald",
    "Frances",
    "Ken",
    "Margaret",
    "Dennis",
    "Radia",
    "Linus",
    "Hedy",
    "Tim",
    "Anita",
    "Guido",
    "Katherine",
    "John",
    "Sophie",
    "Niklaus",
]
RESOURCE_TYPES = ["virtual-machine", "bucket", "database", "load-balancer", "dns-zone"]
REGIONS = ["eu-west-1", "us-east-1", "ap-south-1"]


class Command(BaseCommand):
    help = "Create demo organizations, users and events (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--events", type=int, default=50_000, help="Events for acme.")
        parser.add_argument(
            "--if-empty", action="store_true", help="Do nothing unless there is no organization."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        has_demo = Organization.objects.filter(slug=DEMO_ORG).exists()
        if options["if_empty"] and not has_demo and Organization.objects.exists():
            self.stdout.write("The database has organizations already; no demo data added.")
            return
        if has_demo:
            self.stdout.write(f"Demo data is already there ({DEMO_ORG}).")
            self._print_login(token=None)
            return
        with without_statement_timeout():  # a large --events is one long COPY
            token = self._seed(options["events"])
        self._print_login(token)

    @transaction.atomic
    def _seed(self, events: int) -> str:
        rng = random.Random(2026)  # noqa: S311 - reproducible demo data
        acme = organization_create(slug=DEMO_ORG, name="Acme Corp", plan="paid")
        admin = user_create(
            organization=acme,
            email=DEMO_ADMIN,
            name="Ada Admin",
            password=DEMO_PASSWORD,
            is_admin=True,
        )
        role_create(organization=acme, name="Auditor", description="Reads reports.")
        role_create(organization=acme, name="Developer", description="Manages resources.")
        members = [admin]
        for i, first in enumerate(FIRST_NAMES):
            members.append(
                user_create(
                    organization=acme,
                    email=f"{first.lower()}.{i}@acme.test",
                    name=f"{first} Example",
                    password=None,
                )
            )
        tiny = organization_create(slug=FREE_ORG, name="Tiny Co", plan="free")
        tiny_admin = user_create(
            organization=tiny,
            email="admin@tinyco.test",
            name="Tom Tiny",
            password=DEMO_PASSWORD,
            is_admin=True,
        )

        progress = ProgressBar(events, "Seeding events")
        audit_log_bulk_create(
            organization=acme,
            drafts=_events(rng, members, events),
            on_progress=progress.update,
            progress_every=5_000,
        )
        progress.finish()
        audit_log_bulk_create(organization=tiny, drafts=_events(rng, [tiny_admin], 300))
        _, secret = api_token_create(user=admin, name="demo")
        self.stdout.write(f"Seeded {events:,} events for {DEMO_ORG} and 300 for {FREE_ORG}.")
        return secret

    def _print_login(self, token: str | None) -> None:
        self.stdout.write(
            f"Demo organization {DEMO_ORG!r} (Paid plan): administrator {DEMO_ADMIN} / "
            f"{DEMO_PASSWORD}\n"
            f"Organization {FREE_ORG!r} (Free plan): administrator admin@tinyco.test / "
            f"{DEMO_PASSWORD}"
        )
        if token:
            self.stdout.write(f"API token for {DEMO_ADMIN} (shown only now): {token}")
        else:
            self.stdout.write(f"A new API token: python manage.py create_api_token {DEMO_ADMIN}")


def _events(rng: random.Random, members: list[User], count: int) -> Iterator[AuditEntryDraft]:
    now = timezone.now()
    start = now - timedelta(days=DAYS)
    span = (now - start).total_seconds()
    # Increasing times, so that ids and times agree as they do for live recording.
    offsets = sorted(rng.random() * span for _ in range(count))
    kinds, weights = zip(*MIX, strict=True)
    ips = {m.pk: f"203.0.113.{rng.randint(1, 254)}" for m in members}
    for offset in offsets:
        event = rng.choices(kinds, weights)[0]
        time = start + timedelta(seconds=offset)
        if event == E.SESSION_EXPIRED:
            yield AuditEntryDraft(event=event, time=time, details=demo_details(rng, event))
            continue
        member = rng.choice(members)
        ip = ips[member.pk] if rng.random() < 0.9 else f"198.51.100.{rng.randint(1, 254)}"
        yield AuditEntryDraft(
            event=event, time=time, user_email=member.email, ip=ip, details=demo_details(rng, event)
        )


def demo_details(rng: random.Random, event: str) -> dict[str, Any]:
    """Details of the shape ``event`` declares (audit/events.py), with plausible values."""
    if event.startswith("SESSION_"):
        details: dict[str, Any] = {"session_id": f"sess_{rng.getrandbits(48):012x}"}
        if event == E.SESSION_EXTENDED:
            details["extended_by_seconds"] = rng.choice([30, 60, 120]) * 60
        elif event in (E.SESSION_STOPPED, E.SESSION_EXPIRED):
            details["duration_seconds"] = rng.randrange(60, 8 * 3600)
        return details
    if event.startswith("RESOURCE_"):
        kind = rng.choice(RESOURCE_TYPES)
        details = {
            "resource": f"{kind[:3]}-{rng.getrandbits(32):08x}",
            "kind": kind,
            "region": rng.choice(REGIONS),
        }
        if event == E.RESOURCE_UPDATED:
            details["changes"] = {"size": {"from": "small", "to": rng.choice(["medium", "large"])}}
        return details
    if event.startswith("CREDENTIAL_"):
        provider = rng.choice(["aws", "gcp", "azure"])
        return {"credential": f"cred_{rng.getrandbits(32):08x}", "kind": f"{provider}-key"}
    if event.startswith("ROLE_"):
        details = {"role": {"name": rng.choice(["Auditor", "Developer", "Support"])}}
        if event == E.ROLE_UPDATED:
            details["changes"] = {"description": {"from": "", "to": "Reads dashboards"}}
        return details
    if event.startswith("USER_") and event not in (E.USER_LOGIN, E.USER_REGISTERED):
        details = {"user": {"email": f"user{rng.randrange(1000)}@acme.test"}}
        if event == E.USER_UPDATED:
            details["changes"] = {"name": {"from": "old", "to": "new"}}
        return details
    if event == E.USER_LOGIN:
        return {"method": rng.choice(["password", "password", "sso"])}
    if event == E.USER_REGISTERED:
        n = rng.randrange(1000)
        return {"organization": {"id": n, "slug": f"org{n}", "name": f"Org {n}", "plan": "PAID"}}
    if event == E.AUDIT_LOG_PRUNED:
        return {
            "entries": 1000,
            "before": "2026-01-01T00:00:00+00:00",
            "retentionDays": 90,
            "pruneRecordIdsSha256": f"{rng.getrandbits(256):064x}",
        }
    if event == E.AUDIT_LOG_EXPORTED:
        return {"format": "csv", "filter": "eventType=USER_LOGIN", "via": "http"}
    if event.startswith("AUDIT_LOG_STREAM_"):
        stream = {
            "id": rng.randrange(1, 100),
            "name": "splunk",
            "destination": "https://siem.acme.test/services/collector",
            "format": "SPLUNK_HEC",
            "enabled": True,
        }
        details = {"stream": stream}
        if event == E.AUDIT_LOG_STREAM_UPDATED:
            details["changes"] = {"name": {"from": "siem", "to": "splunk"}}
        elif event == E.AUDIT_LOG_STREAM_PAUSED:
            details["reason"] = "failing since 2026-01-01T00:00:00+00:00: HTTP 503"
        return details
    raise ValueError(f"no demo details for {event}")
