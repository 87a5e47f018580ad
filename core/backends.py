"""Session authentication that loads a user's role and organization with the user.

Every request that reads audit data checks the caller's role and plan
(core/predicates.py); loading both in the session's one user query keeps that check free
(and possible at all in async code, where a lazy related-object query is refused).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.db.models import QuerySet

from core.models import User


def _with_role_and_organization(user_id: Any) -> QuerySet[User]:
    return User._default_manager.select_related("role", "organization").filter(pk=user_id)


class UserBackend(ModelBackend):
    def get_user(self, user_id: Any) -> User | None:
        user = _with_role_and_organization(user_id).first()
        return user if user is not None and self.user_can_authenticate(user) else None

    async def aget_user(self, user_id: Any) -> User | None:
        user = await _with_role_and_organization(user_id).afirst()
        return user if user is not None and self.user_can_authenticate(user) else None
