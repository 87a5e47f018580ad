"""How long an organization's audit entries are kept (README, "Retention").

The period is the organization's own ``audit_retention_days`` when set, else its plan's
(``AUDIT_RETENTION_DAYS_PAID`` / ``AUDIT_RETENTION_DAYS_FREE``); 0 keeps entries forever.
prune_audit_logs removes what is older (audit.services.audit_log_prune), never with a
period shorter than ``AUDIT_RETENTION_MIN_DAYS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from core.models import Organization


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    days: int  # 0: forever
    source: str  # "organization" or "plan"

    @property
    def forever(self) -> bool:
        return self.days == 0

    @property
    def below_minimum(self) -> bool:
        return not self.forever and self.days < settings.AUDIT_RETENTION_MIN_DAYS

    def cutoff(self, now: datetime | None = None) -> datetime:
        """Entries older than this are past the period."""
        return (now or timezone.now()) - timedelta(days=self.days)


def retention_policy(organization: Organization) -> RetentionPolicy:
    if organization.audit_retention_days is not None:
        return RetentionPolicy(organization.audit_retention_days, "organization")
    days = (
        settings.AUDIT_RETENTION_DAYS_PAID
        if organization.plan == Organization.Plan.PAID
        else settings.AUDIT_RETENTION_DAYS_FREE
    )
    return RetentionPolicy(days, "plan")
