"""The live stream of audit entries, behind the auditLogCreated subscription.

**Order.** The stream orders entries by ``(stream_txid, id)``: the id of the transaction
that inserted the entry (``xid8``, assigned when the transaction first writes), then the
entry's id. Commit order cannot be read back from PostgreSQL, and ids alone are not enough:
a transaction that took id 5 may commit after one that took id 6, and a reader that had
moved past 6 would miss 5 forever. So an entry is *deliverable* only once every
transaction older than its own has ended: its ``stream_txid`` is below the *horizon*,
``pg_snapshot_xmin(pg_current_snapshot())``, the oldest transaction still running. No
entry can then appear behind a position already passed, which is what makes resuming
exact: a subscriber that resumes after a position gets exactly the entries that follow
it, whatever was committed meanwhile. The price: an entry waits for any older
transaction to end, even one that writes nothing to the audit log, so a long-running
transaction on the database delays the stream (it never loses anything).

**Fan-out.** One ``StreamHub`` per process (per event loop): one connection LISTENs on
``audit_log_created`` (sent by a trigger at commit, with organization ids only), and a pump
reads, in stream order, the new deliverable entries of every organization that has
subscribers, then offers each entry to that organization's subscribers. Reads go by
position, not by notification, so a dropped listening connection loses nothing: the hub
reconnects with backoff and reads on from its position. Notifications only wake the pump;
it also polls, every ``AUDIT_STREAM_POLL_SECONDS``, and at short intervals while committed
entries wait behind an older transaction.

**Subscribers.** A subscriber first catches up by itself (replay from its cursor, read in
batches), up to the hub's position, then registers with the hub in the same step (no
``await`` in between), so the hub hands it exactly the entries after that position. Each
subscriber has a bounded buffer (``AUDIT_STREAM_BUFFER`` entries); one that falls further
behind is dropped with ``SubscriberTooSlow`` and can resume with its last cursor.

Entries are read with psycopg's async API on connections of the hub's own small pool
(``AUDIT_STREAM_DB_CONNECTIONS``), not Django's, so a stream never holds one of the
request pool's connections; the SQL comes from audit/selectors.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from django.conf import settings
from django.db import connection as django_connection
from django.db.models import F, Func, QuerySet, TextField
from django.db.models.functions import Upper
from psycopg.rows import TupleRow
from psycopg.types.string import TextLoader
from psycopg_pool import AsyncConnectionPool

from audit.filters import SEARCH_WORDS_SQL, WORDS_SQL, AuditLogFilter
from audit.models import AuditLog
from audit.selectors import (
    AuditLogPosition,
    StreamPosition,
    audit_log_replay,
    audit_log_stream,
)
from core.models import Organization

logger = logging.getLogger("audit.stream")

CHANNEL: Final = "audit_log_created"
# The columns an entry is rebuilt from (attribute names of AuditLog).
FIELDS: Final = (
    "id",
    "organization_id",
    "event",
    "actor_id",
    "actor_email",
    "actor_name",
    "ip",
    "details",
    "time",
    "stream_txid",
)
READ_BATCH: Final = 500
# While committed entries wait behind an older transaction, poll this often at first,
# then at doubling intervals up to the maximum.
HELD_POLL_SECONDS: Final = 0.05
HELD_POLL_MAX_SECONDS: Final = 1.0
RECONNECT_MAX_SECONDS: Final = 5.0


class SubscriberTooSlow(Exception):
    """The subscriber's buffer filled up: it fell too far behind the stream. ``resume``
    is the stream position to resume from: that of the last entry delivered live, or
    where the live part started if none was."""

    def __init__(self, resume: StreamPosition) -> None:
        super().__init__("the subscriber fell too far behind the stream")
        self.resume = resume


@dataclass(frozen=True)
class Snapshot:
    """A ``pg_snapshot``: which transactions had committed when it was taken."""

    xmin: int
    xmax: int
    running: frozenset[int]
    text: str

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        xmin, xmax, running = text.split(":")
        return cls(int(xmin), int(xmax), frozenset(int(x) for x in running.split(",") if x), text)

    def sees(self, txid: int) -> bool:
        """Whether the transaction ``txid`` had committed (or aborted) by then; the same
        test as PostgreSQL's ``pg_visible_in_snapshot``."""
        return txid < self.xmin or (txid < self.xmax and txid not in self.running)


def _configure_loaders(connection: psycopg.AsyncConnection[Any]) -> None:
    # The same Python values Django's backend produces: addresses as text. xid8 has no
    # loader and arrives as text; it is converted in ``_entry``.
    for type_name in ("inet", "cidr"):
        connection.adapters.register_loader(type_name, TextLoader)


def _connection_kwargs() -> dict[str, Any]:
    """Django's connection parameters, minus what only Django's own cursors understand."""
    params = django_connection.get_connection_params()
    for key in ("cursor_factory", "context"):
        params.pop(key, None)
    # No server-side prepared statements (psycopg prepares a query from its 5th run): a
    # generic plan of the stream's reads, made without the organization and position,
    # can be far slower than the plan for the actual values.
    params["prepare_threshold"] = None
    params["options"] = (params.get("options", "") + " -c TimeZone=UTC").strip()
    return params


def _compiled(queryset: QuerySet[AuditLog], limit: int, words: bool) -> tuple[str, tuple[Any, ...]]:
    # The actor email as PostgreSQL upper-cases it, for the in-memory email filter; with
    # ``words``, the details' words as PostgreSQL splits them, for a search.
    extra: dict[str, Any] = {"stream_actor_email_upper": Upper("actor_email")}
    if words:
        extra["stream_words"] = Func(
            F("details"),
            template=WORDS_SQL.format(details="%(expressions)s"),
            output_field=TextField(),
        )
    sql, params = (
        queryset.annotate(**extra).values_list(*FIELDS, *extra)[:limit].query.sql_with_params()
    )
    return sql, tuple(params)


def _entry(row: TupleRow) -> AuditLog:
    values = list(row[: len(FIELDS)])
    values[-1] = int(values[-1]) if values[-1] is not None else None
    entry = AuditLog.from_db("default", FIELDS, values)
    entry.actor_email_upper = row[len(FIELDS)]  # type: ignore[attr-defined]
    entry.words = row[len(FIELDS) + 1] if len(row) > len(FIELDS) + 1 else None  # type: ignore[attr-defined]
    return entry


def position_of(entry: AuditLog) -> StreamPosition:
    assert entry.stream_txid is not None
    return (entry.stream_txid, entry.pk)


class Subscriber:
    """One subscription's view of the hub: its organization, filter and buffer."""

    def __init__(
        self,
        *,
        organization_id: int,
        filters: AuditLogFilter,
        capacity: int,
        exclude: Snapshot | None,
        user_email_upper: str | None = None,
        search_words: frozenset[str] | None = None,
    ) -> None:
        self.organization_id = organization_id
        self.filters = filters
        # The filter's email as PostgreSQL upper-cases it (AuditLogFilter.matches).
        self.user_email_upper = user_email_upper
        # The search's words as PostgreSQL splits them (AuditLogFilter.matches).
        self.search_words = search_words
        self.capacity = capacity
        # Entries committed as of this snapshot were replayed or precede the subscription.
        self.exclude = exclude
        self.buffer: deque[AuditLog] = deque()
        self.ready = asyncio.Event()
        self.too_slow = False

    def wants(self, entry: AuditLog) -> bool:
        assert entry.stream_txid is not None
        return (
            entry.organization_id == self.organization_id
            and not (self.exclude is not None and self.exclude.sees(entry.stream_txid))
            and self.filters.matches(
                event=entry.event,
                actor_email_upper=entry.actor_email_upper,  # type: ignore[attr-defined]
                time=entry.time,
                user_email_upper=self.user_email_upper,
                ip=entry.ip,
                details=entry.details,
                words=entry.words,  # type: ignore[attr-defined]
                search_words=self.search_words,
            )
        )

    def offer(self, entry: AuditLog) -> None:
        if self.too_slow or not self.wants(entry):
            return
        if len(self.buffer) >= self.capacity:
            self.too_slow = True
            self.buffer.clear()  # it is dropped; its memory goes now
        else:
            self.buffer.append(entry)
        self.ready.set()


class StreamHub:
    """The process's fan-out (see the module docstring)."""

    def __init__(self) -> None:
        self.position: StreamPosition | None = None
        self._subscribers: dict[int, set[Subscriber]] = defaultdict(set)
        self._wake = asyncio.Event()
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started: asyncio.Task[None] | None = None
        self._next_poll = float(settings.AUDIT_STREAM_POLL_SECONDS)
        self._held_poll = HELD_POLL_SECONDS / 2

    # --- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._started is None:
            self._started = asyncio.get_running_loop().create_task(self._start())
        try:
            await asyncio.shield(self._started)
        except Exception:
            # The database may be back by the next subscription: it starts afresh.
            self._started = None
            if self._pool is not None:
                await self._pool.close()
                self._pool = None
            raise

    async def _start(self) -> None:
        kwargs = _connection_kwargs()

        async def configure(connection: psycopg.AsyncConnection[Any]) -> None:
            _configure_loaders(connection)
            await connection.set_autocommit(True)

        self._pool = AsyncConnectionPool(
            kwargs=kwargs,
            min_size=1,
            max_size=settings.AUDIT_STREAM_DB_CONNECTIONS,
            configure=configure,
            # A connection broken by a database restart is replaced, not handed out.
            check=AsyncConnectionPool.check_connection,
            open=False,
            name="audit-stream",
        )
        await self._pool.open(wait=True)
        self.position = (await self._horizon(), 0)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._listen(kwargs), name="audit-stream-listen"),
            loop.create_task(self._pump(), name="audit-stream-pump"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._pool is not None:
            await self._pool.close()

    # --- subscribers --------------------------------------------------------------------

    def register(self, subscriber: Subscriber) -> None:
        self._subscribers[subscriber.organization_id].add(subscriber)
        self._wake.set()

    def unregister(self, subscriber: Subscriber) -> None:
        subscribers = self._subscribers.get(subscriber.organization_id)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self._subscribers[subscriber.organization_id]

    # --- reading ------------------------------------------------------------------------

    async def fetch(
        self, queryset: QuerySet[AuditLog], limit: int = READ_BATCH, *, words: bool = False
    ) -> list[AuditLog]:
        """Up to ``limit`` entries of ``queryset``; with ``words``, each carries the words
        of its details (for subscribers with a search)."""
        sql, params = _compiled(queryset, limit, words)
        assert self._pool is not None
        async with self._pool.connection() as connection:
            cursor = await connection.execute(sql, params)
            return [_entry(row) for row in await cursor.fetchall()]

    async def upper(self, text: str) -> str:
        """``text`` upper-cased by PostgreSQL, as the SQL filters do it."""
        assert self._pool is not None
        async with self._pool.connection() as connection:
            cursor = await connection.execute("SELECT UPPER(%s::text)", (text,))
            row = await cursor.fetchone()
        assert row is not None
        return str(row[0])

    async def search_words(self, text: str) -> frozenset[str]:
        """The words PostgreSQL makes of a search, as its filters split them."""
        assert self._pool is not None
        async with self._pool.connection() as connection:
            cursor = await connection.execute(SEARCH_WORDS_SQL, (text,))
            row = await cursor.fetchone()
        assert row is not None
        return frozenset(row[0])

    async def snapshot(self) -> Snapshot:
        assert self._pool is not None
        async with self._pool.connection() as connection:
            cursor = await connection.execute("SELECT pg_current_snapshot()::text")
            row = await cursor.fetchone()
        assert row is not None
        return Snapshot.parse(row[0])

    async def _horizon(self) -> int:
        assert self._pool is not None
        async with self._pool.connection() as connection:
            cursor = await connection.execute(
                "SELECT pg_snapshot_xmin(pg_current_snapshot())::text"
            )
            row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    async def _held(self, organization_ids: list[int], horizon: int) -> bool:
        """Whether committed entries of these organizations wait behind the horizon."""
        assert self._pool is not None
        async with self._pool.connection() as connection:
            cursor = await connection.execute(
                "SELECT EXISTS (SELECT 1 FROM audit_log WHERE organization_id = ANY(%s)"
                " AND stream_txid >= %s::xid8)",
                (organization_ids, str(horizon)),
            )
            row = await cursor.fetchone()
        return bool(row and row[0])

    # --- the two tasks ------------------------------------------------------------------

    async def _listen(self, kwargs: dict[str, Any]) -> None:
        delay = 0.1
        while True:
            try:
                connection = await psycopg.AsyncConnection.connect(**kwargs, autocommit=True)
                async with connection:
                    await connection.execute(f"LISTEN {CHANNEL}")
                    delay = 0.1
                    # Anything committed while not listening is read from the position.
                    self._wake.set()
                    async for notify in connection.notifies():
                        if not notify.payload or any(
                            int(o) in self._subscribers for o in notify.payload.split(",")
                        ):
                            self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the connection dropped, or could not be made
                logger.warning(
                    "Audit stream: lost the listening connection (%s); reconnecting in %.1fs",
                    type(error).__name__,
                    delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    async def _pump(self) -> None:
        delay = 0.1
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._next_poll)
            self._wake.clear()
            try:
                await self._advance()
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as error:
                logger.warning(
                    "Audit stream: reading new entries failed (%s); retrying in %.1fs",
                    type(error).__name__,
                    delay,
                )
                self._next_poll = delay
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    def _searching(self) -> bool:
        return any(
            subscriber.filters.search is not None
            for subscribers in self._subscribers.values()
            for subscriber in subscribers
        )

    async def _advance(self) -> None:
        """Hand every deliverable entry after the position to its subscribers."""
        if not self._subscribers:
            self._next_poll = float(settings.AUDIT_STREAM_POLL_SECONDS)
            return
        horizon = await self._horizon()
        while True:
            # Organizations are read afresh for every batch: a subscriber that registered
            # between two batches gets the entries after the position it caught up to.
            organization_ids = list(self._subscribers)
            if not organization_ids:
                break
            assert self.position is not None
            while True:
                # Words only for subscribers with a search; read again with them when such
                # a subscriber registered during the read.
                searching = self._searching()
                entries = await self.fetch(
                    audit_log_stream(
                        organization_ids=organization_ids, after=self.position, below=horizon
                    ),
                    words=searching,
                )
                if searching or not self._searching():
                    break
            for entry in entries:
                for subscriber in list(self._subscribers.get(entry.organization_id, ())):
                    subscriber.offer(entry)
                self.position = position_of(entry)
            if len(entries) < READ_BATCH:
                break
        # Everything below the horizon has been handed out (no await since the last read).
        assert self.position is not None
        self.position = max(self.position, (horizon, 0))
        held = await self._held(list(self._subscribers), horizon) if self._subscribers else False
        if held:  # look again soon, less often the longer the older transaction lasts
            self._held_poll = min(self._held_poll * 2, HELD_POLL_MAX_SECONDS)
            self._next_poll = self._held_poll
        else:
            self._held_poll = HELD_POLL_SECONDS / 2
            self._next_poll = float(settings.AUDIT_STREAM_POLL_SECONDS)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, StreamHub] = weakref.WeakKeyDictionary()


async def stream_hub() -> StreamHub:
    """The running event loop's hub, started on first use."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = StreamHub()
    await hub.start()
    return hub


async def stream_hubs_stop() -> None:
    """Stop the running loop's hub (at server shutdown)."""
    hub = _hubs.pop(asyncio.get_running_loop(), None)
    if hub is not None:
        await hub.stop()


@dataclass(frozen=True)
class StreamStart:
    """Where a subscription starts: right after a stream position (a cursor of the
    stream), after a position in time (an auditLogs cursor), or now (neither)."""

    after_stream: StreamPosition | None = None
    after_time: AuditLogPosition | None = None


async def audit_log_follow(
    *,
    organization_id: int,
    filters: AuditLogFilter,
    start: StreamStart,
    still_allowed: Callable[[], Awaitable[None]] | None = None,
    recheck_seconds: float | None = None,
) -> AsyncIterator[tuple[AuditLog, bool]]:
    """Every entry of the organization matching ``filters`` from ``start`` on: the replay,
    then live entries as they become deliverable, each exactly once, until the consumer
    stops. Each comes with whether it belongs to the replay by time (its position is a
    time, not a stream position). ``still_allowed`` is awaited every ``recheck_seconds``
    (between batches of a replay too) and may raise to end the stream: the caller's
    credentials were revoked. Raises ``SubscriberTooSlow`` when the consumer falls more
    than ``AUDIT_STREAM_BUFFER`` entries behind."""
    hub = await stream_hub()
    loop = asyncio.get_running_loop()
    next_check = loop.time() + recheck_seconds if recheck_seconds else None

    async def recheck_when_due() -> None:
        nonlocal next_check
        if next_check is not None and loop.time() >= next_check:
            if still_allowed is not None:
                await still_allowed()
            next_check = loop.time() + (recheck_seconds or 0)

    exclude: Snapshot | None = None
    if start.after_stream is not None:
        position = start.after_stream
    else:
        exclude = await hub.snapshot()
        position = (exclude.xmin, 0)
        if start.after_time is not None:
            after_time = start.after_time
            while True:  # entries newer than the cursor, committed as of the snapshot
                replayed = await hub.fetch(
                    audit_log_replay(
                        organization=Organization(pk=organization_id),
                        filters=filters,
                        newer_than=after_time,
                        snapshot=exclude.text,
                    )
                )
                for entry in replayed:
                    yield entry, True
                await recheck_when_due()
                if len(replayed) < READ_BATCH:
                    break
                after_time = AuditLogPosition.of(replayed[-1])

    live_from = position
    delivered: StreamPosition | None = None
    subscriber = Subscriber(
        organization_id=organization_id,
        filters=filters,
        capacity=settings.AUDIT_STREAM_BUFFER,
        exclude=exclude,
        user_email_upper=(
            await hub.upper(filters.user_email) if filters.user_email is not None else None
        ),
        search_words=(
            await hub.search_words(filters.search) if filters.search is not None else None
        ),
    )
    # Catch up to the hub's position by reading, then register at exactly that position.
    while True:
        target = hub.position
        assert target is not None
        if position < target:
            entries = await hub.fetch(
                audit_log_stream(
                    organization_ids=[organization_id],
                    filters=filters,
                    after=position,
                    through=target,
                ),
                words=filters.search is not None,
            )
            for entry in entries:
                position = position_of(entry)
                if subscriber.wants(entry):
                    delivered = position
                    yield entry, False
            await recheck_when_due()
            if len(entries) == READ_BATCH:
                continue
            position = max(position, target)
        if hub.position == target:
            hub.register(subscriber)
            break

    try:
        while True:
            timeout = None if next_check is None else max(0.0, next_check - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(subscriber.ready.wait(), timeout=timeout)
            await recheck_when_due()
            if subscriber.too_slow:
                raise SubscriberTooSlow(delivered or live_from)
            subscriber.ready.clear()
            while subscriber.buffer:
                entry = subscriber.buffer.popleft()
                if position_of(entry) > position:
                    position = delivered = position_of(entry)
                    yield entry, False
                if subscriber.too_slow:
                    raise SubscriberTooSlow(delivered or live_from)
    finally:
        hub.unregister(subscriber)
