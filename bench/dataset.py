"""The benchmark dataset: one large organization and two smaller ones, built with COPY.

An organization's size is in its slug (``bench<version>-<events>``), so a dataset of a
given size is built once and reused; ``DATASET_VERSION`` changes with what a dataset holds
(the details of its entries, say), so that figures never come from a dataset the current
code would not build. Entries cannot be deleted (append-only): an older version's
organizations stay in the bench database until it is dropped. Events follow the mix of the issue: about 40% USER_LOGIN, 20%
SESSION_STARTED, the rest spread over the other types, 5% system events without a user,
over the 365 days before the build, by 500 users.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from audit.events import AuditEventType as E
from audit.services import AuditEntryDraft, audit_log_bulk_create
from core.management.commands.seed_demo import demo_details
from core.models import Organization, Role, User
from core.services import organization_create, user_create

# 2: details of the shapes audit/events.py declares (seed_demo.demo_details).
DATASET_VERSION = 2
USERS = 500
DAYS = 365
FIRST_NAMES = [
    "ada", "grace", "alan", "edsger", "barbara", "donald", "frances", "ken", "margaret",
    "dennis", "radia", "linus", "hedy", "tim", "anita", "guido", "katherine", "john",
    "sophie", "niklaus",
]  # fmt: skip
LAST_NAMES = ["lovelace", "hopper", "turing", "dijkstra", "liskov", "knuth", "allen", "thompson"]
# The vocabulary's first 18 types, those the dataset was defined with: types added later
# (the log's own exports and streams) would change its mix, and so its figures.
OTHER_EVENTS = [
    e for e in E.values[:18] if e not in (E.USER_LOGIN, E.SESSION_STARTED, E.SESSION_EXPIRED)
]


def bench_email(n: int) -> str:
    first = FIRST_NAMES[n % len(FIRST_NAMES)]
    last = LAST_NAMES[(n // len(FIRST_NAMES)) % len(LAST_NAMES)]
    return f"{first}.{last}{n}@bench.test"


def _drafts(count: int, emails: list[str], seed: int, now: datetime) -> Iterator[AuditEntryDraft]:
    rng = random.Random(seed)
    shapes = random.Random(seed + 1)  # the details' values, apart from the entries' own
    start = now - timedelta(days=DAYS)
    span = DAYS * 86_400
    step = span / max(count, 1)
    for i in range(count):
        # Spread evenly over the year, with jitter; oldest first, as history accumulates.
        moment = start + timedelta(seconds=min(span - 1, i * step + rng.random() * step))
        roll = rng.random()
        if roll < 0.05:
            yield AuditEntryDraft(
                event=E.SESSION_EXPIRED, time=moment, details={"session_id": f"sess_{i}"}
            )
            continue
        event: str
        if roll < 0.45:
            event = E.USER_LOGIN
        elif roll < 0.65:
            event = E.SESSION_STARTED
        else:
            event = rng.choice(OTHER_EVENTS)
        yield AuditEntryDraft(
            event=event,
            time=moment,
            user_email=rng.choice(emails),
            ip=f"203.0.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            details={**demo_details(shapes, event), "n": i},
        )


def bench_organization(
    events: int, *, seed: int, on_progress: Callable[[int], None] | None = None
) -> tuple[Organization, User]:
    """The organization ``bench-<events>`` and its administrator, built if missing."""
    slug = f"bench{DATASET_VERSION}-{events}"
    existing = Organization.objects.filter(slug=slug).first()
    if existing is not None:
        admin = User.objects.get(
            organization=existing, role__is_admin=True, email__startswith="admin@"
        )
        return existing, admin
    with transaction.atomic():
        org = organization_create(slug=slug, name=f"Benchmark ({events:,} events)", plan="paid")
        admin = user_create(organization=org, email=f"admin@{slug}.test", is_admin=True)
        member = Role.objects.get(organization=org, is_admin=False, name="Member")
        User.objects.bulk_create(
            User(email=bench_email(n).replace("@", f"+{slug}@"), name=bench_email(n).split("@")[0],
                 organization=org, role=member)
            for n in range(USERS)
        )  # fmt: skip
        emails = list(
            User.objects.filter(organization=org, role=member).values_list("email", flat=True)
        )
        audit_log_bulk_create(
            organization=org,
            drafts=_drafts(events, emails, seed, timezone.now()),
            on_progress=on_progress,
            progress_every=50_000,
        )
    return org, admin
