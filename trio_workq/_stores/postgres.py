# SPDX-License-Identifier: MIT
"""`PostgresStore`: the `Store` protocol on PostgreSQL, for workers on many hosts.

How it runs under trio:

* psycopg 3's async connection needs asyncio's loop, so every operation is
  one call of the sync driver through `trio.to_thread.run_sync`, on one
  connection of a small pool (a `trio.CapacityLimiter` bounds how many run
  at once). Each operation is a single SQL statement in autocommit mode
  (one round trip, atomic), or an explicit transaction where it needs more.
* Concurrent `add` calls, and concurrent `complete` calls, share one
  statement and one commit (`_GroupCommit`).
* `wait_for_work` waits on the socket of a dedicated ``LISTEN`` connection
  with `trio.lowlevel.wait_readable`: no thread, cancellable.

Clocks: lease and due decisions use the database's clock inside SQL. Times
crossing the `Store` boundary are the caller's wall clock (``time.time()``):
each call sends its own ``time.time()`` and the SQL rebases between the two
clocks, so a host whose clock is off still schedules delays and retries
relative to its own "now", and sees times in its own clock.
"""

from __future__ import annotations

import logging
import math
import re
import select
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, cast
from urllib.parse import unquote

import attrs
import outcome
import psycopg
import trio
from psycopg import errors as pg_errors
from psycopg import pq, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow

from .._core.status import TaskStatus
from .checks import (
    INT32_MAX,
    check_bytes,
    check_held,
    check_int,
    check_new_task,
    check_owner,
    check_page,
    check_recovery,
    check_seconds,
    check_text,
    check_time,
    headers_json,
    parse_id,
)
from .protocol import (
    Claimed,
    NewTask,
    Page,
    Recovery,
    Renewal,
    StoreDataError,
    StoredTask,
    StoreError,
    read_row,
)

logger = logging.getLogger("trio_workq")

if TYPE_CHECKING:
    from typing_extensions import LiteralString

T = TypeVar("T")
R = TypeVar("R")
Connection = psycopg.Connection[TupleRow]
Operation = Callable[[Connection], R]

#: The schema version this code writes; a database at a newer one is refused.
SCHEMA_VERSION: Final = 2

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# Namespaces of our advisory locks (first key); the second key is the schema's hash.
_MIGRATION_LOCK: Final = 0x74777101
_MAINTENANCE_LOCK: Final = 0x74777102
# libpq reports why a connection was refused only as text; these causes do not heal by retrying.
_PERMANENT_CONNECT_ERRORS = (
    "authentication failed",
    "does not exist",
    "no pg_hba.conf entry",
    "no password supplied",
    "permission denied",
)
#: Pause between attempts to re-open a dropped LISTEN connection.
_LISTEN_RECONNECT_PAUSE: Final = 1.0

# {now} is the database's clock; {skew} is how far it is ahead of the caller's
# clock (the caller sends time.time() as %(cnow)s). now() is the transaction's
# start, so one operation sees one instant.
_NOW = "extract(epoch from now())::float8"
_SKEW = "(extract(epoch from now())::float8 - %(cnow)s::float8)"

# The row as StoredTask wants it, times rebased to the caller's clock.
_COLUMNS = """t.id, t.name, t.payload, t.status, t.priority, t.attempts, t.max_attempts,
    t.timeout, t.created_at - {skew} AS created_at, t.due_at - {skew} AS due_at,
    t.started_at - {skew} AS started_at, t.finished_at - {skew} AS finished_at, t.owner,
    t.lease_until - {skew} AS lease_until, t.cancel_requested, t.result, t.errors, t.headers"""

_MIGRATIONS: Final[dict[int, tuple[LiteralString, ...]]] = {
    1: (
        """CREATE TABLE {tasks} (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name text NOT NULL,
            payload bytea NOT NULL,
            status text NOT NULL CHECK (status IN ('queued', 'scheduled', 'running',
                'retrying', 'completed', 'failed', 'cancelled')),
            priority bigint NOT NULL,
            attempts integer NOT NULL DEFAULT 0,
            max_attempts integer NOT NULL,
            timeout double precision,
            created_at double precision NOT NULL,
            due_at double precision NOT NULL,
            started_at double precision,
            finished_at double precision,
            owner text,
            lease_until double precision,
            cancel_requested boolean NOT NULL DEFAULT false,
            result bytea,
            errors text[] NOT NULL DEFAULT ARRAY[]::text[]
        )""",
        # The claim walks this index in claim order, skipping rows not due yet.
        """CREATE INDEX tasks_claim ON {tasks} (priority DESC, due_at, id)
            WHERE status IN ('queued', 'scheduled', 'retrying')""",
        # The earliest due time still ahead (Claimed.next_due).
        """CREATE INDEX tasks_due ON {tasks} (due_at)
            WHERE status IN ('queued', 'scheduled', 'retrying')""",
        "CREATE INDEX tasks_lease ON {tasks} (lease_until) WHERE status = 'running'",
        """CREATE INDEX tasks_finished ON {tasks} (finished_at)
            WHERE status IN ('completed', 'failed', 'cancelled')""",
    ),
    # Propagation headers (a JSON object), NULL for none: written by add, read with
    # the row. A nullable column without a default is added without rewriting rows.
    2: ("ALTER TABLE {tasks} ADD COLUMN headers jsonb",),
}

_ADD = """WITH new AS (
    INSERT INTO {tasks} AS t
        (name, payload, status, priority, max_attempts, timeout, created_at, due_at, headers)
    SELECT v.name, v.payload, v.status, v.priority, v.max_attempts, v.timeout, {now},
        CASE WHEN v.status = 'queued' THEN least(v.due_at + {skew}, {now})
            ELSE v.due_at + {skew} END,
        v.headers::jsonb
    FROM unnest(%(names)s::text[], %(payloads)s::bytea[], %(statuses)s::text[],
        %(priorities)s::int8[], %(max_attempts)s::int4[], %(timeouts)s::float8[],
        %(due_ats)s::float8[], %(headers)s::text[]) WITH ORDINALITY
        AS v(name, payload, status, priority, max_attempts, timeout, due_at, headers, ord)
    ORDER BY v.ord
    RETURNING t.id
)
SELECT array_agg(id ORDER BY id), pg_notify(%(channel)s, '') FROM new"""

# A NaN due_at (a corrupt row) is claimed at once, so that the claim fails the
# task instead of leaving it waiting forever.
_CLAIM = """WITH picked AS (
    SELECT id FROM {tasks}
    WHERE status IN ('queued', 'scheduled', 'retrying')
        AND (due_at <= {now} OR due_at = 'NaN'::float8)
    ORDER BY priority DESC, due_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE {tasks} AS t SET status = 'running', attempts = t.attempts + 1,
        owner = %(owner)s, lease_until = {now} + %(lease)s, started_at = {now}
    FROM picked WHERE t.id = picked.id
    RETURNING {columns}
)
SELECT n.due - {skew}, c.*
FROM (SELECT min(due_at) AS due FROM {tasks}
      WHERE status IN ('queued', 'scheduled', 'retrying') AND due_at > {now}) AS n
LEFT JOIN claimed AS c ON true
ORDER BY c.priority DESC, c.due_at, c.id"""

_RENEW = """UPDATE {tasks} AS t SET lease_until = {now} + %(lease)s
FROM unnest(%(ids)s::int8[]) AS r(id)
WHERE t.id = r.id AND t.status = 'running' AND t.owner = %(owner)s
RETURNING t.id, t.cancel_requested"""

_COMPLETE = """UPDATE {tasks} AS t SET status = 'completed', result = v.result,
    finished_at = {now}, owner = NULL, lease_until = NULL
FROM unnest(%(ids)s::int8[], %(owners)s::text[], %(attempts)s::int4[], %(results)s::bytea[])
    AS v(id, owner, attempt, result)
WHERE t.id = v.id AND t.status = 'running' AND t.owner = v.owner AND t.attempts = v.attempt
RETURNING v.id, v.owner, v.attempt"""

# The runtime decided the target (retrying at retry_at, else failed); the one rule
# left here is a guard, cancel wins: a task whose cancellation was requested is
# never made claimable again.
_FAIL = """UPDATE {tasks} AS t SET
    status = CASE WHEN %(retry_at)s::float8 IS NULL THEN 'failed'
                  WHEN t.cancel_requested THEN 'cancelled' ELSE 'retrying' END,
    due_at = coalesce(%(retry_at)s::float8 + {skew}, t.due_at),
    finished_at = CASE WHEN %(retry_at)s::float8 IS NULL OR t.cancel_requested THEN {now} END,
    errors = t.errors || %(error)s::text, owner = NULL, lease_until = NULL
WHERE t.id = %(id)s AND t.status = 'running' AND t.owner = %(owner)s
    AND t.attempts = %(attempt)s
RETURNING t.status, CASE WHEN t.status = 'retrying' THEN pg_notify(%(channel)s, '') END"""

_FINISH_CANCELLED = """UPDATE {tasks} AS t SET status = 'cancelled', finished_at = {now},
    owner = NULL, lease_until = NULL
WHERE t.id = %(id)s AND t.status = 'running' AND t.owner = %(owner)s
    AND t.attempts = %(attempt)s
RETURNING t.id"""

_RELEASE = """UPDATE {tasks} AS t SET
    status = CASE WHEN t.cancel_requested THEN 'cancelled' ELSE 'queued' END,
    finished_at = CASE WHEN t.cancel_requested THEN {now} END,
    due_at = {now}, attempts = t.attempts - 1, owner = NULL, lease_until = NULL
WHERE t.id = %(id)s AND t.status = 'running' AND t.owner = %(owner)s
    AND t.attempts = %(attempt)s
RETURNING t.status, CASE WHEN t.status = 'queued' THEN pg_notify(%(channel)s, '') END"""

# FOR UPDATE waits for a concurrent claim or completion, so the status read is
# the one the UPDATE acts on.
_CANCEL = """WITH old AS (SELECT id, status FROM {tasks} WHERE id = %(id)s FOR UPDATE),
changed AS (
    UPDATE {tasks} AS t SET
        status = CASE WHEN old.status = 'running' THEN t.status ELSE 'cancelled' END,
        cancel_requested = (old.status = 'running'),
        finished_at = CASE WHEN old.status = 'running' THEN NULL ELSE {now} END
    FROM old
    WHERE t.id = old.id AND old.status IN ('queued', 'scheduled', 'retrying', 'running')
)
SELECT status FROM old"""

_REQUEUE = """WITH old AS (SELECT id, status FROM {tasks} WHERE id = %(id)s FOR UPDATE),
changed AS (
    UPDATE {tasks} AS t SET status = 'queued', due_at = {now}, finished_at = NULL,
        cancel_requested = false, result = NULL, owner = NULL, lease_until = NULL,
        max_attempts = greatest(t.max_attempts, t.attempts + 1)
    FROM old WHERE t.id = old.id AND old.status IN ('failed', 'cancelled')
    RETURNING pg_notify(%(channel)s, '')
)
SELECT old.status, (SELECT count(*) FROM changed) FROM old"""

_GET = "SELECT {columns} FROM {tasks} AS t WHERE t.id = %(id)s"

_COUNTS = "SELECT status, count(*) FROM {tasks} GROUP BY status"

# Both times on the server's clock; NaN is above every time, -Infinity is corrupt.
_OLDEST_DUE = """SELECT {now} - min(due_at) FROM {tasks}
    WHERE status IN ('queued', 'scheduled', 'retrying')
        AND due_at <= {now} AND due_at > '-Infinity'::float8"""

_TRY_MAINTENANCE_LOCK = "SELECT pg_try_advisory_xact_lock(%(lock_ns)s, %(lock_key)s)"

_EXPIRED = """SELECT {columns} FROM {tasks} AS t
WHERE t.status = 'running' AND t.lease_until < {now}
ORDER BY t.lease_until LIMIT %(limit)s"""

# Each decided target, guarded by the expired holder (owner, attempt, lease still
# expired, re-read by the UPDATE): a row renewed, finished or recovered elsewhere
# meanwhile no longer matches, so it is left alone. Cancel wins, as in _FAIL.
_RECOVER = """UPDATE {tasks} AS t SET
    status = CASE WHEN v.status = 'retrying' AND t.cancel_requested THEN 'cancelled'
                  ELSE v.status END,
    due_at = CASE WHEN v.status = 'retrying' THEN v.due_at + {skew} ELSE t.due_at END,
    finished_at = CASE WHEN v.status = 'retrying' AND NOT t.cancel_requested THEN NULL
                       ELSE {now} END,
    errors = t.errors || v.error, owner = NULL, lease_until = NULL
FROM unnest(%(ids)s::int8[], %(owners)s::text[], %(attempts)s::int4[], %(statuses)s::text[],
    %(errors)s::text[], %(due_ats)s::float8[]) AS v(id, owner, attempt, status, error, due_at)
WHERE t.id = v.id AND t.status = 'running' AND t.owner IS NOT DISTINCT FROM v.owner
    AND t.attempts = v.attempt AND t.lease_until < {now}
RETURNING t.status"""

# A claimed row that cannot be read is failed at once, never handed out.
_FAIL_CORRUPT = """UPDATE {tasks} AS t SET status = 'failed', finished_at = {now},
    owner = NULL, lease_until = NULL, errors = %(errors)s::text[]
WHERE t.id = %(id)s AND t.status = 'running' AND t.owner = %(owner)s"""

_NOTIFY = "SELECT pg_notify(%(channel)s, '')"

_PURGE = """DELETE FROM {tasks}
WHERE status IN ('completed', 'failed', 'cancelled') AND finished_at < %(older_than)s + {skew}"""


@attrs.frozen
class _Queries:
    """Every statement, rendered once for one schema."""

    add: bytes
    claim: bytes
    renew: bytes
    complete: bytes
    fail: bytes
    finish_cancelled: bytes
    release: bytes
    cancel: bytes
    requeue: bytes
    get: bytes
    counts: bytes
    oldest_due: bytes
    try_maintenance_lock: bytes
    expired: bytes
    recover: bytes
    fail_corrupt: bytes
    notify: bytes
    purge: bytes
    listen: bytes
    create_schema: bytes
    create_meta: bytes
    read_version: bytes
    write_version: bytes
    take_migration_lock: bytes
    migrations: dict[int, tuple[bytes, ...]]
    page_select: sql.Composed

    @classmethod
    def for_schema(cls, schema: str) -> _Queries:
        names: dict[str, sql.Composable] = {
            "tasks": sql.Identifier(schema, "tasks"),
            "meta": sql.Identifier(schema, "meta"),
            "schema": sql.Identifier(schema),
            "now": sql.SQL(_NOW),
            "skew": sql.SQL(_SKEW),
        }
        names["columns"] = sql.SQL(_COLUMNS).format(**names)

        def render(template: sql.SQL) -> bytes:
            return template.format(**names).as_bytes(None)

        return cls(
            add=render(sql.SQL(_ADD)),
            claim=render(sql.SQL(_CLAIM)),
            renew=render(sql.SQL(_RENEW)),
            complete=render(sql.SQL(_COMPLETE)),
            fail=render(sql.SQL(_FAIL)),
            finish_cancelled=render(sql.SQL(_FINISH_CANCELLED)),
            release=render(sql.SQL(_RELEASE)),
            cancel=render(sql.SQL(_CANCEL)),
            requeue=render(sql.SQL(_REQUEUE)),
            get=render(sql.SQL(_GET)),
            counts=render(sql.SQL(_COUNTS)),
            oldest_due=render(sql.SQL(_OLDEST_DUE)),
            try_maintenance_lock=render(sql.SQL(_TRY_MAINTENANCE_LOCK)),
            expired=render(sql.SQL(_EXPIRED)),
            recover=render(sql.SQL(_RECOVER)),
            fail_corrupt=render(sql.SQL(_FAIL_CORRUPT)),
            notify=render(sql.SQL(_NOTIFY)),
            purge=render(sql.SQL(_PURGE)),
            listen=render(sql.SQL("LISTEN {schema}")),
            create_schema=render(sql.SQL("CREATE SCHEMA IF NOT EXISTS {schema}")),
            create_meta=render(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {meta} (key text PRIMARY KEY, value text NOT NULL)"
                )
            ),
            read_version=render(sql.SQL("SELECT value FROM {meta} WHERE key = 'schema_version'")),
            write_version=render(
                sql.SQL(
                    "INSERT INTO {meta} (key, value) VALUES ('schema_version', %(version)s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
                )
            ),
            take_migration_lock=render(
                sql.SQL("SELECT pg_advisory_xact_lock(%(lock_ns)s, %(lock_key)s)")
            ),
            migrations={
                version: tuple(render(sql.SQL(statement)) for statement in statements)
                for version, statements in _MIGRATIONS.items()
            },
            page_select=sql.SQL("SELECT {columns} FROM {tasks} AS t").format(**names),
        )


def _split_schema(url: str) -> tuple[str, str | None]:
    """*url* without its ``schema`` query parameter (ours, not libpq's), and that parameter."""
    base, separator, query = url.partition("?")
    if not separator:
        return url, None
    kept: list[str] = []
    schema = None
    for item in query.split("&"):
        key, _, value = item.partition("=")
        if key == "schema":
            schema = unquote(value)
        else:
            kept.append(item)  # as written: libpq decodes it
    return (f"{base}?{'&'.join(kept)}" if kept else base), schema


def _redact(url: str) -> str:
    """*url* without its password, for messages."""
    url = re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url)


def _readable(fd: int) -> bool:
    """Whether *fd* has input waiting (without blocking)."""
    if sys.platform == "win32":
        return bool(select.select([fd], [], [], 0)[0])
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def _usable(conn: Connection) -> bool:
    """Whether a pooled connection can take a statement.

    An idle connection has nothing to read: if its socket is readable, the
    server has closed it (a restart, ``pg_terminate_backend``, an idle
    timeout). Checking costs no round trip, and a connection found dead
    here is replaced before anything is sent, so no operation is lost.
    """
    if conn.closed or conn.broken:
        return False
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        return False
    return not _readable(conn.pgconn.socket)


def _is_permanent(exc: psycopg.OperationalError) -> bool:
    text = str(exc).lower()
    return any(cause in text for cause in _PERMANENT_CONNECT_ERRORS)


#: Whether a schema (the parameter) holds our ``meta`` table: a store exists there.
_META_EXISTS = "SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = %s AND tablename = 'meta'"


def _lock_key(schema: str) -> int:
    """The schema's half of our advisory lock keys: a signed 32-bit hash of its name."""
    return int.from_bytes(zlib.crc32(schema.encode()).to_bytes(4, "big"), "big", signed=True)


def _stored_task(row: Sequence[Any]) -> StoredTask:
    return read_row(row)[0]


class _Pool:
    """A few connections, each used by one operation at a time, in a worker thread.

    The limiter bounds the operations in flight (and so the connections).
    Connections are made on demand and kept; one found dead is replaced.
    """

    def __init__(self, conninfo: str, size: int, describe: str) -> None:
        self.conninfo = conninfo
        self.limiter = trio.CapacityLimiter(size)
        self._describe = describe
        self._idle: list[Connection] = []
        self.closed = False

    def connect(self) -> Connection:
        """A new autocommit connection (blocking: call it in a thread)."""
        return psycopg.connect(self.conninfo, autocommit=True)

    def give(self, conn: Connection) -> None:
        """Put a connection (made by `connect`) into the pool."""
        if self.closed:
            conn.close()
        else:
            self._idle.append(conn)

    async def run(self, op: Operation[R], *, idempotent: bool) -> R:
        """Run *op* on a pooled connection in a thread; see `run_locked`."""
        async with self.limiter:
            result = await self.run_locked(op, idempotent=idempotent)
        return result.unwrap()

    async def run_locked(self, op: Operation[R], *, idempotent: bool) -> outcome.Outcome[R]:
        """Run *op* (the caller holds a limiter token); never raises but for bugs.

        Once the thread starts, cancellation waits for it: a call that was
        cancelled did not run, a call that returned did.
        """
        if self.closed:
            await trio.lowlevel.checkpoint()
            return outcome.Error(StoreError(f"{self._describe} is closed"))
        # to_thread.run_sync raises Cancelled before starting the thread if the
        # caller is cancelled: check first, or the connection taken below is lost.
        await trio.lowlevel.checkpoint_if_cancelled()
        conn = self._idle.pop() if self._idle else None
        conn, result = await trio.to_thread.run_sync(self._execute, conn, op, idempotent)
        if conn is not None:
            self.give(conn)
        return result

    def _execute(
        self, conn: Connection | None, op: Operation[R], idempotent: bool
    ) -> tuple[Connection | None, outcome.Outcome[R]]:
        # Retry once where that is safe: after a rollback the server reported
        # (deadlock, serialization failure), or, for idempotent operations,
        # after the connection dropped mid-statement (the statement may or may
        # not have run). A connection found dead before sending is just replaced.
        for attempt in (1, 2):
            try:
                if conn is not None and not _usable(conn):
                    conn.close()
                    conn = None
                if conn is None:
                    conn = self.connect()
                return conn, outcome.Value(op(conn))
            except psycopg.Error as exc:
                lost = conn is not None and conn.broken
                if conn is not None and (lost or conn.closed):
                    conn.close()
                    conn = None
                rolled_back = isinstance(
                    exc, (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)
                )
                if attempt == 1 and (rolled_back or (lost and idempotent)):
                    continue
                return conn, outcome.Error(self._error(exc, lost=lost))
            except UnicodeError as exc:  # psycopg encodes text before sending: nothing was sent
                error = StoreDataError(f"{self._describe}: cannot store a value: {exc}")
                error.__cause__ = exc
                return conn, outcome.Error(error)
            except Exception as exc:  # a StoreError raised by op, or a bug
                return conn, outcome.Error(exc)
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(self, exc: psycopg.Error, *, lost: bool) -> StoreError:
        message = f"{self._describe}: {type(exc).__name__}: {str(exc).strip()}"
        if lost:
            message += (
                " (the connection was lost during the operation:"
                " it may or may not have been applied)"
            )
        # A data error (NUL in text, a value out of range...) fails the same way every time.
        kind = StoreDataError if isinstance(exc, psycopg.DataError) else StoreError
        error = kind(message)
        error.__cause__ = exc
        return error

    def close(self) -> None:
        """Close idle connections now, and busy ones when their operation ends."""
        self.closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


_LEAD: Final = object()  # tells a parked caller that it flushes the next batch


@attrs.define(eq=False)
class _Entry(Generic[T]):
    item: T
    task: trio.lowlevel.Task | None = None  # set while the caller is parked
    taken: bool = False  # part of a batch in flight: its outcome will come


class _GroupCommit(Generic[T, R]):
    """Calls that overlap share one statement (and one commit).

    The first caller leads: it waits for a connection, takes every pending
    item, runs one operation for all of them and hands each caller its own
    outcome. Callers arriving meanwhile park; when the batch is done, the
    first of them leads the next one. Cancelling a parked caller withdraws
    its item unless its batch is already in flight, in which case the call
    waits for that outcome: a call that returns was committed, a call that
    raised `trio.Cancelled` was not.
    """

    def __init__(
        self,
        pool: _Pool,
        make_op: Callable[[list[T]], Operation[list[R]]],
        *,
        idempotent: bool,
    ) -> None:
        self._pool = pool
        self._make_op = make_op
        self._idempotent = idempotent
        self._pending: list[_Entry[T]] = []
        self._leading = False

    async def run(self, item: T) -> R:
        entry = _Entry(item)
        self._pending.append(entry)
        if self._leading:
            signal = await self._park(entry)  # raises the batch's error, if any
            if signal is not _LEAD:
                return cast("R", signal)
        self._leading = True
        batch: list[_Entry[T]] = []
        try:
            async with self._pool.limiter:
                batch, self._pending = self._pending, []
                for taken in batch:
                    taken.taken = True
                result = await self._pool.run_locked(
                    self._make_op([taken.item for taken in batch]), idempotent=self._idempotent
                )
        except BaseException as exc:
            # Cancelled while waiting for a connection (nothing was sent), or a bug.
            if not entry.taken:
                self._pending.remove(entry)
            for other in batch:
                if other is not entry:
                    self._wake(other, outcome.Error(StoreError(f"batch failed: {exc!r}")))
            self._hand_off()
            raise
        mine: outcome.Outcome[R] | None = None
        for position, member in enumerate(batch):
            member_result: outcome.Outcome[R]
            if isinstance(result, outcome.Value):
                member_result = outcome.Value(result.value[position])
            else:
                assert isinstance(result, outcome.Error)
                # Each caller raises its own exception object, of the same kind.
                kind = StoreDataError if isinstance(result.error, StoreDataError) else StoreError
                error = kind(*result.error.args)
                error.__cause__ = result.error.__cause__ or result.error
                member_result = outcome.Error(error)
            if member is entry:
                mine = member_result
            else:
                self._wake(member, member_result)
        self._hand_off()
        assert mine is not None
        return mine.unwrap()

    async def _park(self, entry: _Entry[T]) -> Any:
        """Wait for this entry's result (or its error, raised), or for `_LEAD`."""
        entry.task = trio.lowlevel.current_task()

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            if entry.taken:
                return trio.lowlevel.Abort.FAILED  # in flight: wait for its outcome
            self._pending.remove(entry)
            entry.task = None
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)

    def _wake(self, entry: _Entry[T], result: outcome.Outcome[Any]) -> None:
        task, entry.task = entry.task, None
        if task is not None:
            trio.lowlevel.reschedule(task, result)

    def _hand_off(self) -> None:
        for entry in self._pending:
            if entry.task is not None:
                self._wake(entry, outcome.Value(_LEAD))
                return
        self._leading = False


class _Listener:
    """The ``LISTEN`` connection; trio waits on its socket directly.

    Several tasks may wait: one reads the socket at a time, and every
    notification counted while a task waited wakes it.
    """

    def __init__(self, pool: _Pool, listen: bytes) -> None:
        self._pool = pool
        self._listen = listen
        self._conn: Connection | None = None
        self._lock = trio.Lock()
        self._received = 0  # notifications (and reconnects) seen so far
        self.closed = False

    def _connect_and_listen(self) -> Connection:
        conn = self._pool.connect()
        try:
            conn.execute(self._listen)
        except BaseException:
            conn.close()
            raise
        return conn

    async def start(self) -> None:
        self._conn = await trio.to_thread.run_sync(self._connect_and_listen)
        if self.closed:  # closed while connecting
            self._conn.close()
            self._conn = None

    async def wait(self, seconds: float) -> None:
        seen = self._received
        with trio.move_on_after(seconds):
            async with self._lock:
                while self._received == seen and not self.closed:
                    conn = self._conn
                    if conn is None:
                        await self._reconnect()
                    elif not self._drain(conn):
                        try:
                            await trio.lowlevel.wait_readable(conn.pgconn.socket)
                        except trio.ClosedResourceError:
                            return  # closed by aclose()

    def _drain(self, conn: Connection) -> bool:
        """Read what arrived; count notifications. False if there were none."""
        pgconn = conn.pgconn
        try:
            pgconn.consume_input()
            lost = pgconn.status == pq.ConnStatus.BAD
        except psycopg.OperationalError:
            lost = True
        if lost:
            self._drop(conn)
            self._received += 1  # notifications may have been lost with it
            return True
        got = False
        while pgconn.notifies() is not None:
            got = True
        if got:
            self._received += 1
        return got

    async def _reconnect(self) -> None:
        try:
            conn = await trio.to_thread.run_sync(self._connect_and_listen)
        except psycopg.Error:
            await trio.sleep(_LISTEN_RECONNECT_PAUSE)
            return
        if self.closed:
            conn.close()
            return
        self._conn = conn
        self._received += 1  # notifications sent while it was down were missed

    def _drop(self, conn: Connection) -> None:
        if self._conn is conn:
            self._conn = None
        try:
            fd = conn.pgconn.socket
        except psycopg.OperationalError:  # libpq already closed it
            fd = -1
        if fd >= 0:
            trio.lowlevel.notify_closing(fd)  # wakes a task waiting on it
        conn.close()

    def close(self) -> None:
        self.closed = True
        if self._conn is not None:
            self._drop(self._conn)


class PostgresStore:
    """A `Store` in a PostgreSQL database, shared by worker processes on any number of hosts.

    Args:
        url: A libpq URL, ``postgresql://user:password@host:port/dbname?...``.
            A ``schema=name`` query parameter names the schema (so that a URL
            alone, as on the command line, can pick one); libpq never sees it.
        schema: The schema holding this store's tables (created if missing);
            a letter or underscore, then letters, digits, underscores (at most
            63). Default: the URL's ``schema`` parameter, else ``trio_workq``.
            Stores in different schemas are independent queues.
        pool_size: Connections for operations; the store opens one more for
            ``LISTEN``.
        connect_retry_seconds: How long `open` keeps retrying a server that
            cannot be reached. Refused credentials are not retried.
        create: Whether `open` creates the schema and its tables when they
            are missing. ``False`` (for tools that only look, such as
            ``trio-workq tasks list``) makes `open` raise `StoreError`
            instead, so that a mistyped schema does not create an empty store.

    Raises:
        TypeError, ValueError: For a bad argument.

    Attributes:
        url: The URL given.
        schema: The schema in use.

    Needs the ``postgres`` extra: ``pip install 'trio_workq[postgres]'``.
    """

    url: str
    schema: str

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        pool_size: int = 4,
        connect_retry_seconds: float = 5.0,
        create: bool = True,
    ) -> None:
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, not {type(url).__name__}")
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"not a PostgreSQL URL (postgresql://...): {_redact(url)!r}")
        libpq_url, url_schema = _split_schema(url)
        if schema is None:
            schema = "trio_workq" if url_schema is None else url_schema
        elif url_schema is not None and url_schema != schema:
            raise ValueError(f"schema={schema!r} contradicts the URL's schema={url_schema!r}")
        try:
            params = conninfo_to_dict(libpq_url)
        except psycopg.ProgrammingError as exc:
            raise ValueError(f"bad PostgreSQL URL {_redact(url)!r}: {exc}") from None
        if not isinstance(schema, str):
            raise TypeError(f"schema must be a str, not {type(schema).__name__}")
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(
                f"schema must be a letter or underscore followed by letters, digits or "
                f"underscores (at most 63), got {schema!r}"
            )
        check_int("pool_size", pool_size, minimum=1, maximum=1000)
        self._connect_retry_seconds = check_seconds(
            "connect_retry_seconds", connect_retry_seconds, allow_zero=True
        )
        self.url = url
        self.schema = schema
        self._create = bool(create)
        defaults: dict[str, Any] = {}
        if "application_name" not in params:
            defaults["application_name"] = f"trio_workq {schema}"
        if "connect_timeout" not in params:
            defaults["connect_timeout"] = 5
        self._describe = f"PostgreSQL store {_redact(url)} (schema {schema})"
        self._pool = _Pool(make_conninfo(libpq_url, **defaults), pool_size, self._describe)
        self._queries = _Queries.for_schema(schema)
        self._listener = _Listener(self._pool, self._queries.listen)
        self._lock_key = _lock_key(schema)
        self._state = "new"
        #: The caller's wall clock (tests skew it).
        self._clock: Callable[[], float] = time.time
        self._adds: _GroupCommit[list[NewTask], list[str]] = _GroupCommit(
            self._pool, self._add_op, idempotent=False
        )
        self._completions: _GroupCommit[tuple[int, str, int, bytes], bool] = _GroupCommit(
            self._pool, self._complete_op, idempotent=False
        )

    def now(self) -> float:
        """This host's wall clock, `time.time` (SQL rebases it to the server's). No checkpoint."""
        return self._clock()

    def __repr__(self) -> str:
        return f"PostgresStore({_redact(self.url)!r}, schema={self.schema!r})"

    # -- lifecycle -----------------------------------------------------------------

    async def open(self) -> None:
        """Connect, create or migrate the schema, and start listening.

        Retries an unreachable server for ``connect_retry_seconds``.
        Checkpoints.

        Raises:
            StoreError: If the server cannot be reached in that time, refuses
                the credentials, or holds a schema from a newer version; or
                if the store was opened before.
        """
        if self._state != "new":
            raise StoreError(f"{self._describe} was already opened")
        self._state = "opening"
        try:
            self._pool.give(await self._connect_with_retry())
            await self._pool.run(self._migrate, idempotent=True)
            try:
                await self._listener.start()
            except psycopg.Error as exc:
                raise StoreError(f"{self._describe}: cannot LISTEN: {exc}") from exc
        except BaseException:
            self._close_now()
            raise
        self._state = "open"

    async def _connect_with_retry(self) -> Connection:
        deadline = trio.current_time() + self._connect_retry_seconds
        pause = 0.1
        attempts = 0
        while True:
            attempts += 1
            try:
                return await trio.to_thread.run_sync(self._pool.connect)
            except psycopg.OperationalError as exc:
                if _is_permanent(exc):
                    raise StoreError(f"{self._describe}: connection refused: {exc}") from exc
                left = deadline - trio.current_time()
                if left <= 0:
                    raise StoreError(
                        f"{self._describe}: cannot connect after {attempts} attempt(s) "
                        f"over {self._connect_retry_seconds:g} s: {exc}"
                    ) from exc
            await trio.sleep(min(pause, left))
            pause = min(pause * 2, 1.0)

    def _migrate(self, conn: Connection) -> None:
        q = self._queries
        lock = {"lock_ns": _MIGRATION_LOCK, "lock_key": self._lock_key}
        with conn.transaction():
            # Serialises processes that start at once; each then sees the
            # version the previous one wrote.
            conn.execute(q.take_migration_lock, lock)
            if not self._create and not conn.execute(_META_EXISTS, [self.schema]).fetchone():
                raise StoreError(
                    f"{self._describe}: the schema holds no trio_workq store (not created: "
                    "check the schema name, or start a worker or a producer on it first)"
                )
            conn.execute(q.create_schema)
            conn.execute(q.create_meta)
            row = conn.execute(q.read_version).fetchone()
            version = int(row[0]) if row is not None else 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self._describe}: the schema is at version {version}, newer than "
                    f"version {SCHEMA_VERSION} that this trio_workq supports; upgrade trio_workq"
                )
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in q.migrations[step]:
                    conn.execute(statement)
            if version != SCHEMA_VERSION:
                conn.execute(q.write_version, {"version": str(SCHEMA_VERSION)})

    async def aclose(self) -> None:
        """Close the connections (busy ones when their operation ends). Safe to call twice.

        Checkpoints.
        """
        self._close_now()
        await trio.lowlevel.checkpoint()

    def _close_now(self) -> None:
        self._state = "closed"
        self._listener.close()
        self._pool.close()

    def _check_open(self) -> None:
        if self._state != "open":
            raise StoreError(f"{self._describe} is not open")

    async def _run(self, op: Operation[R], *, idempotent: bool) -> R:
        self._check_open()
        return await self._pool.run(op, idempotent=idempotent)

    # -- the queue's operations -------------------------------------------------------

    async def add(self, tasks: Sequence[NewTask]) -> list[str]:
        """Insert *tasks* in one transaction; return their ids, in order.

        Adds that overlap share one statement. Notifies listeners once per
        transaction. Checkpoints.
        """
        if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Sequence):
            raise TypeError(f"tasks must be a sequence of NewTask, not {type(tasks).__name__}")
        batch = [check_new_task(task, max_attempts=INT32_MAX) for task in tasks]
        self._check_open()
        if not batch:
            await trio.lowlevel.checkpoint()
            return []
        return await self._adds.run(batch)

    def _add_op(self, batches: list[list[NewTask]]) -> Operation[list[list[str]]]:
        tasks = [task for batch in batches for task in batch]

        def op(conn: Connection) -> list[list[str]]:
            row = conn.execute(
                self._queries.add,
                {
                    "names": [task.name for task in tasks],
                    "payloads": [task.payload for task in tasks],
                    "statuses": [task.status.value for task in tasks],
                    "priorities": [task.priority for task in tasks],
                    "max_attempts": [task.max_attempts for task in tasks],
                    "timeouts": [task.timeout for task in tasks],
                    "due_ats": [task.due_at for task in tasks],
                    "headers": [headers_json(task.headers) for task in tasks],
                    "channel": self.schema,
                    "cnow": self._clock(),
                },
            ).fetchone()
            assert row is not None
            # Ids come from a sequence in insertion order, and rows are inserted in input order.
            ids = iter(str(task_id) for task_id in row[0])
            return [[next(ids) for _ in batch] for batch in batches]

        return op

    async def claim(self, owner: str, limit: int, lease_seconds: float) -> Claimed:
        """Take up to *limit* due tasks, highest priority first, then earliest due, then oldest.

        One statement: ``FOR UPDATE SKIP LOCKED`` lets processes claim at
        the same time without waiting for or taking each other's rows.
        Checkpoints.
        """
        check_owner(owner)
        check_int("limit", limit, minimum=1, maximum=INT32_MAX)
        lease = check_seconds("lease_seconds", lease_seconds)

        def op(conn: Connection) -> Claimed:
            rows = conn.execute(
                self._queries.claim,
                {"owner": owner, "limit": limit, "lease": lease, "cnow": self._clock()},
            ).fetchall()
            tasks: list[StoredTask] = []
            for row in rows:
                if row[1] is None:  # no task claimed: the row only carries next_due
                    continue
                task, problem = read_row(row[1:])
                if problem is None:
                    tasks.append(task)
                else:
                    conn.execute(
                        self._queries.fail_corrupt,
                        {"id": row[1], "owner": owner, "errors": list(task.errors)},
                    )
                    logger.error("%s; the task was failed without running", problem)
            next_due = rows[0][0]
            if next_due is not None and not math.isfinite(next_due):
                next_due = None  # a corrupt due_at (NaN, infinity) is not a time to wake at
            return Claimed(tasks=tuple(tasks), next_due=next_due)

        # Not retried after a drop mid-statement: the rows may be ours, unseen,
        # until their lease expires and recover_expired re-queues them.
        return await self._run(op, idempotent=False)

    async def renew(self, owner: str, ids: Sequence[str], lease_seconds: float) -> Renewal:
        """Extend the leases of the running tasks *ids* held by *owner*. Checkpoints."""
        check_owner(owner)
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
            raise TypeError(f"ids must be a sequence of str, not {type(ids).__name__}")
        lease = check_seconds("lease_seconds", lease_seconds)
        parsed = {task_id: parse_id(task_id) for task_id in ids}
        row_ids = [row_id for row_id in parsed.values() if row_id is not None]

        def op(conn: Connection) -> Renewal:
            rows = conn.execute(
                self._queries.renew,
                {"owner": owner, "ids": row_ids, "lease": lease, "cnow": self._clock()},
            ).fetchall()
            held = {row[0] for row in rows}
            flagged = {row[0] for row in rows if row[1]}
            return Renewal(
                lost=frozenset(task_id for task_id, row_id in parsed.items() if row_id not in held),
                cancel_requested=frozenset(
                    task_id for task_id, row_id in parsed.items() if row_id in flagged
                ),
            )

        return await self._run(op, idempotent=True)

    async def complete(self, owner: str, task_id: str, attempt: int, result: bytes) -> bool:
        """Mark a running task ``completed``; False if *owner* no longer holds *attempt*.

        Completions that overlap share one statement. Checkpoints.
        """
        row_id = check_held(owner, task_id, attempt, max_attempts=INT32_MAX)
        check_bytes("result", result)
        self._check_open()
        if row_id is None:
            await trio.lowlevel.checkpoint()
            return False
        return await self._completions.run((row_id, owner, attempt, result))

    async def complete_many(
        self, owner: str, completions: Sequence[tuple[str, int, bytes]]
    ) -> list[bool]:
        """`complete` for several ``(task_id, attempt, result)`` at once: one statement.

        Checkpoints. Returns one flag per item, in order: False where *owner*
        no longer holds that attempt (that row is left as it is).

        Raises:
            ValueError, TypeError: An item is malformed; nothing is changed.
        """
        check_owner(owner)
        items: list[tuple[int, str, int, bytes]] = []
        # Ids this store could not have made match no row: 0 is never an id.
        for task_id, attempt, result in completions:
            check_int("attempt", attempt, minimum=1, maximum=INT32_MAX)
            items.append((parse_id(task_id) or 0, owner, attempt, check_bytes("result", result)))
        self._check_open()
        if not items:
            await trio.lowlevel.checkpoint()
            return []
        return await self._run(self._complete_op(items), idempotent=False)

    def _complete_op(self, items: list[tuple[int, str, int, bytes]]) -> Operation[list[bool]]:
        # An attempt completed twice in one statement would be updated once, with either
        # result: only its first completion is sent (and can be True), as if run in order.
        first: dict[tuple[int, str, int], bytes] = {}
        for item in items:
            first.setdefault(item[:3], item[3])

        def op(conn: Connection) -> list[bool]:
            rows = conn.execute(
                self._queries.complete,
                {
                    "ids": [key[0] for key in first],
                    "owners": [key[1] for key in first],
                    "attempts": [key[2] for key in first],
                    "results": list(first.values()),
                    "cnow": self._clock(),
                },
            ).fetchall()
            done = {(row[0], row[1], row[2]) for row in rows}
            flags: list[bool] = []
            for item in items:
                key = item[:3]
                flags.append(key in done)
                done.discard(key)  # a repeat of it was not recorded
            return flags

        return op

    async def fail(
        self, owner: str, task_id: str, attempt: int, error: str, retry_at: float | None
    ) -> TaskStatus | None:
        """Apply a failed attempt's target: ``retrying`` until *retry_at*, else ``failed``.

        Cancel wins: a task whose cancellation was requested becomes
        ``cancelled`` instead of ``retrying``. Returns the status written, or
        ``None`` if *owner* no longer holds *attempt*. Checkpoints.
        """
        row_id = check_held(owner, task_id, attempt, max_attempts=INT32_MAX)
        check_text("error", error)
        due = None if retry_at is None else check_time("retry_at", retry_at)
        params = {
            "owner": owner,
            "id": row_id,
            "attempt": attempt,
            "error": error,
            "retry_at": due,
            "channel": self.schema,
        }
        return await self._held_transition(self._queries.fail, row_id, params)

    async def finish_cancelled(self, owner: str, task_id: str, attempt: int) -> bool:
        """Mark a running task that was cancelled ``cancelled``; False if no longer held.

        Checkpoints.
        """
        row_id = check_held(owner, task_id, attempt, max_attempts=INT32_MAX)
        params = {"owner": owner, "id": row_id, "attempt": attempt}
        return await self._held_update(self._queries.finish_cancelled, row_id, params)

    async def release(self, owner: str, task_id: str, attempt: int) -> TaskStatus | None:
        """Give back a running task interrupted by shutdown: ``queued``, due now.

        The attempt is not counted; owner and lease are cleared. Cancel wins:
        a task whose cancellation was requested becomes ``cancelled`` instead.
        Returns the status written, or ``None`` if *owner* no longer holds
        *attempt*. Checkpoints.
        """
        row_id = check_held(owner, task_id, attempt, max_attempts=INT32_MAX)
        params = {"owner": owner, "id": row_id, "attempt": attempt, "channel": self.schema}
        return await self._held_transition(self._queries.release, row_id, params)

    async def _held_transition(
        self, query: bytes, row_id: int | None, params: dict[str, Any]
    ) -> TaskStatus | None:
        """Run an UPDATE conditioned on owner and attempt; the status it wrote, or None."""
        self._check_open()
        if row_id is None:
            await trio.lowlevel.checkpoint()
            return None

        def op(conn: Connection) -> TaskStatus | None:
            row = conn.execute(query, {**params, "cnow": self._clock()}).fetchone()
            return None if row is None else TaskStatus(row[0])

        # Not retried after a drop mid-statement (see _held_update).
        return await self._run(op, idempotent=False)

    async def _held_update(self, query: bytes, row_id: int | None, params: dict[str, Any]) -> bool:
        """Run an UPDATE conditioned on owner and attempt; True if it changed the row."""
        self._check_open()
        if row_id is None:
            await trio.lowlevel.checkpoint()
            return False

        def op(conn: Connection) -> bool:
            return conn.execute(query, {**params, "cnow": self._clock()}).rowcount == 1

        # Not retried after a drop mid-statement: if the first try was applied,
        # a second would report False for a change that was made.
        return await self._run(op, idempotent=False)

    async def cancel(self, task_id: str) -> TaskStatus | None:
        """Cancel a task from anywhere; return the status it had, or ``None`` if unknown.

        A queued, scheduled or retrying task becomes ``cancelled``; a running
        one gets ``cancel_requested``; a finished one is left alone.
        Checkpoints.
        """
        return await self._status_change(self._queries.cancel, task_id)

    async def requeue(self, task_id: str) -> TaskStatus | None:
        """Queue a ``failed`` or ``cancelled`` task again, due now; return the status it had.

        Its attempts and errors still count; ``max_attempts`` is raised to
        ``attempts + 1`` if it was used up, so one more attempt is allowed.
        Other tasks are left alone; ``None`` if the id is unknown. Checkpoints.
        """
        return await self._status_change(self._queries.requeue, task_id)

    async def _status_change(self, query: bytes, task_id: str) -> TaskStatus | None:
        row_id = parse_id(task_id)
        self._check_open()
        if row_id is None:
            await trio.lowlevel.checkpoint()
            return None

        def op(conn: Connection) -> TaskStatus | None:
            params = {"id": row_id, "channel": self.schema, "cnow": self._clock()}
            row = conn.execute(query, params).fetchone()
            return None if row is None else TaskStatus(row[0])

        return await self._run(op, idempotent=False)

    async def get(self, task_id: str) -> StoredTask | None:
        """The task with this id, or ``None``. Checkpoints."""
        row_id = parse_id(task_id)
        self._check_open()
        if row_id is None:
            await trio.lowlevel.checkpoint()
            return None

        def op(conn: Connection) -> StoredTask | None:
            row = conn.execute(self._queries.get, {"id": row_id, "cnow": self._clock()}).fetchone()
            return None if row is None else _stored_task(row)

        return await self._run(op, idempotent=True)

    async def page(
        self,
        *,
        status: TaskStatus | None,
        name: str | None,
        limit: int,
        cursor: str | None,
    ) -> Page:
        """Tasks newest first (by id), optionally of one status and/or name. Checkpoints.

        Raises:
            ValueError: If *limit* is not in 1..1000, or *cursor* is not one
                this store returned.
        """
        before = check_page(status, name, limit, cursor)
        conditions: list[sql.Composable] = []
        if status is not None:
            conditions.append(sql.SQL("t.status = %(status)s"))
        if name is not None:
            conditions.append(sql.SQL("t.name = %(name)s"))
        if before is not None:
            conditions.append(sql.SQL("t.id < %(before)s"))
        query = self._queries.page_select
        if conditions:
            query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)
        query += sql.SQL(" ORDER BY t.id DESC LIMIT %(limit)s")
        statement = query.as_bytes(None)

        def op(conn: Connection) -> Page:
            params = {
                "status": None if status is None else status.value,
                "name": name,
                "before": before,
                "limit": limit + 1,
                "cnow": self._clock(),
            }
            rows = conn.execute(statement, params).fetchall()
            tasks = tuple(_stored_task(row) for row in rows[:limit])
            return Page(tasks=tasks, next_cursor=tasks[-1].id if len(rows) > limit else None)

        return await self._run(op, idempotent=True)

    async def counts(self) -> dict[TaskStatus, int]:
        """How many tasks the store holds in each status (every status, zeros included).

        Checkpoints.
        """

        def op(conn: Connection) -> dict[TaskStatus, int]:
            counted = dict.fromkeys(TaskStatus, 0)
            for status, count in conn.execute(self._queries.counts).fetchall():
                counted[TaskStatus(status)] = count
            return counted

        return await self._run(op, idempotent=True)

    async def oldest_due_age(self) -> float | None:
        """Seconds since the earliest due time of a due claimable task, or ``None``.

        Measured on the server's clock (the ``tasks_due`` index). Checkpoints.
        """

        def op(conn: Connection) -> float | None:
            row = conn.execute(self._queries.oldest_due).fetchone()
            age = None if row is None else row[0]
            return None if age is None else float(age)

        return await self._run(op, idempotent=True)

    async def expired(self, limit: int) -> tuple[StoredTask, ...]:
        """Up to *limit* running tasks whose lease has run out, oldest lease first.

        Changes nothing (see `recover`). *limit* is 1..1000. Checkpoints.
        """
        check_int("limit", limit, minimum=1, maximum=1000)
        self._check_open()

        def op(conn: Connection) -> tuple[StoredTask, ...]:
            params = {"limit": limit, "cnow": self._clock()}
            rows = conn.execute(self._queries.expired, params).fetchall()
            return tuple(_stored_task(row) for row in rows)

        return await self._run(op, idempotent=True)

    async def recover(self, recoveries: Sequence[Recovery]) -> int:
        """Apply decided targets to tasks whose lease expired, in one statement.

        Each applies only while its row is still running, held by the
        expired owner at that attempt, with its lease still expired (the
        UPDATE re-reads the row, waiting for a concurrent writer); cancel
        wins as in `fail`. Runs under the transaction-scoped maintenance
        lock: while another process holds it, this returns 0 (the rows stay
        expired for the next round). Returns how many rows changed. Checkpoints.
        """
        ids: list[int] = []
        owners: list[str | None] = []
        attempts: list[int] = []
        statuses: list[str] = []
        errors: list[str] = []
        due_ats: list[float | None] = []
        for raw in recoveries:
            item, due = check_recovery(raw, max_attempts=INT32_MAX)
            row_id = parse_id(item.task_id)
            if row_id is None:
                continue
            ids.append(row_id)
            owners.append(item.owner)
            attempts.append(item.attempt)
            statuses.append(item.status.value)
            errors.append(item.error)
            due_ats.append(due)
        self._check_open()
        if not ids:
            await trio.lowlevel.checkpoint()
            return 0
        params = {
            "ids": ids,
            "owners": owners,
            "attempts": attempts,
            "statuses": statuses,
            "errors": errors,
            "due_ats": due_ats,
        }

        def op(conn: Connection) -> int:
            q = self._queries
            with conn.transaction():
                # One recoverer at a time: two UPDATEs locking the same rows in
                # different orders could deadlock (the guard alone keeps it correct).
                if not self._try_maintenance_lock(conn):
                    return 0
                rows = conn.execute(q.recover, {**params, "cnow": self._clock()}).fetchall()
                if any(row[0] == TaskStatus.RETRYING.value for row in rows):
                    conn.execute(q.notify, {"channel": self.schema})
                return len(rows)

        # Idempotent: the guard makes a second try change nothing the first did.
        return await self._run(op, idempotent=True)

    async def purge_finished(self, older_than: float) -> int:
        """Delete finished tasks whose ``finished_at`` is before *older_than*; return the count.

        Under the same advisory lock as `recover_expired` (0 while another
        process holds it). Checkpoints.
        """
        cutoff = check_time("older_than", older_than)

        def op(conn: Connection) -> int:
            with conn.transaction():
                if not self._try_maintenance_lock(conn):
                    return 0
                params = {"older_than": cutoff, "cnow": self._clock()}
                return conn.execute(self._queries.purge, params).rowcount

        return await self._run(op, idempotent=True)

    def _try_maintenance_lock(self, conn: Connection) -> bool:
        params = {"lock_ns": _MAINTENANCE_LOCK, "lock_key": self._lock_key}
        row = conn.execute(self._queries.try_maintenance_lock, params).fetchone()
        return bool(row and row[0])

    async def wait_for_work(self, timeout: float) -> None:  # noqa: ASYNC109 - the Store protocol's
        """Return when a ``NOTIFY`` says tasks may have arrived, or after *timeout* seconds.

        Also returns early after the ``LISTEN`` connection dropped (it is
        re-opened on the next call; notifications sent meanwhile are lost).
        Waits on the socket in trio, no thread. Checkpoints.
        """
        seconds = check_seconds("timeout", timeout, allow_zero=True, allow_inf=True)
        self._check_open()
        await self._listener.wait(seconds)  # always checkpoints (its lock)
