"""Values PostgreSQL can store, checked before they reach it, so that a client's value
is refused as bad input naming its field instead of failing inside the database.

PostgreSQL's ``text`` and ``jsonb`` hold valid Unicode without U+0000: a NUL, or a lone
surrogate (U+D800 to U+DFFF on its own, which JSON's ``\\ud800`` escapes and Python's
``str`` allow), cannot be stored or even compared. JSON numbers must be finite (Python
reads ``NaN``, ``Infinity`` and ``1e400`` as floats that are not JSON). Details nest at
most ``DETAILS_MAX_DEPTH`` levels: deeper objects are not what an audit entry describes,
and would cost the encoder and the database a stack each.

``text_problem`` and ``json_problem`` return why a value cannot be stored, or None; the
writers (audit/services.py, audit/importing.py) and the filters (audit/filters.py) turn
that into their own kind of refusal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

DETAILS_MAX_DEPTH: Final = 32

NUL_PROBLEM: Final = "must not contain the NUL character (U+0000), which PostgreSQL cannot store"
SURROGATE_PROBLEM: Final = (
    "must be valid Unicode: a lone surrogate (U+D800 to U+DFFF) cannot be stored"
)


def text_problem(value: str) -> str | None:
    """Why PostgreSQL cannot store ``value`` as text, or None."""
    if "\x00" in value:
        return NUL_PROBLEM
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return SURROGATE_PROBLEM
    return None


def json_problem(value: object, max_depth: int = DETAILS_MAX_DEPTH) -> str | None:
    """Why PostgreSQL cannot store ``value`` (decoded JSON: dicts, lists, strings,
    numbers, booleans, None) as jsonb, or None. Keys and strings at every level are
    checked as text, numbers for finiteness, and the nesting for ``max_depth``; other
    values (dates, decimals) are left to the JSON encoder."""
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                return problem
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "must not hold NaN, Infinity or a number beyond the range of a double"
        elif isinstance(item, Mapping | list | tuple):
            if depth > max_depth:
                return f"must not nest more than {max_depth} levels deep"
            if isinstance(item, Mapping):
                for key, member in item.items():
                    if isinstance(key, str) and (problem := text_problem(key)) is not None:
                        return f"keys {problem}"
                    pending.append((member, depth + 1))
            else:
                pending.extend((member, depth + 1) for member in item)
    return None


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC (a naive one is taken as UTC). Python allows offsets up to
    +-23:59, PostgreSQL only to +-15:59; every instant is the same in UTC. ``moment`` must
    lie within the years 2 to 9998, where the conversion cannot overflow."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
