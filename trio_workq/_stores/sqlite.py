# SPDX-License-Identifier: MIT
"""`SQLiteStore`: a durable `Store` in one SQLite file (stdlib `sqlite3`, WAL).

One dedicated writer thread per store owns the connection. Trio tasks hand it
operations and park; the thread takes every operation waiting at that moment,
runs them in one transaction, commits once, and wakes all their callers with
one hop into trio. Many concurrent submits, claims and completions thus share
one commit, which is what makes SQLite fast enough here: one commit (and one
thread hop) per operation would cap the store at a few thousand operations per
second. An operation that fails fails only its caller (see
`SQLiteStore._run_batch`).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar, cast

import outcome
import trio

from .._core.status import TaskStatus
from .checks import (
    INT64_MAX,
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
    CLAIMABLE_STATUSES,
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

T = TypeVar("T")

# Status sets as OR chains, not IN lists: SQLite (3.40) evaluates an IN list
# in a CHECK or partial-index predicate by filling a temporary b-tree on every
# row written, which tripled the cost of each write. Each partial index's
# predicate appears word for word in the queries that use it: SQLite uses a
# partial index only when the query's WHERE contains that predicate.
_CLAIMABLE_SQL: Final = "(status = 'queued' OR status = 'scheduled' OR status = 'retrying')"
_DELAYED_SQL: Final = "(status = 'scheduled' OR status = 'retrying')"
_TERMINAL_SQL: Final = "(status = 'completed' OR status = 'failed' OR status = 'cancelled')"

#: The schema version this code writes, kept in ``PRAGMA user_version``.
#: ``_MIGRATIONS[n]`` moves a database from version ``n`` to ``n + 1``; once
#: released, a migration's text never changes.
_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        # AUTOINCREMENT: a purged id is never handed out again, so an old id
        # (a handle, a log line) can never name a different task.
        f"""
        CREATE TABLE tasks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            payload BLOB NOT NULL,
            status TEXT NOT NULL CHECK ({_CLAIMABLE_SQL} OR status = 'running' OR {_TERMINAL_SQL}),
            priority INTEGER NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            max_attempts INTEGER NOT NULL,
            timeout REAL,
            created_at REAL NOT NULL,
            due_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            owner TEXT,
            lease_until REAL,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            result BLOB,
            errors TEXT NOT NULL DEFAULT '[]'
        )
        """,
        # Four partial indexes, each holding only the rows one query needs:
        # every index costs an update at each status change of every task.
        # The claim walks this in order and stops after LIMIT due rows.
        f"CREATE INDEX tasks_claim ON tasks (priority DESC, due_at, id) WHERE {_CLAIMABLE_SQL}",
        # The next-due lookup. Queued rows are always due (add clamps their
        # due_at to the transaction's now), so only delayed rows need it.
        f"CREATE INDEX tasks_delayed ON tasks (due_at) WHERE {_DELAYED_SQL}",
        # recover_expired looks at running rows only.
        "CREATE INDEX tasks_running ON tasks (lease_until) WHERE status = 'running'",
        # purge_finished deletes by age without scanning every finished row.
        f"CREATE INDEX tasks_finished ON tasks (finished_at) WHERE {_TERMINAL_SQL}",
    ),
    (
        # Propagation headers (a JSON object as text), NULL for none: written by
        # add, read with the row. Adding a nullable column rewrites no row.
        "ALTER TABLE tasks ADD COLUMN headers TEXT",
    ),
)
SCHEMA_VERSION: Final = len(_MIGRATIONS)

#: Failed attempts whose error text a task keeps (the oldest are dropped).
MAX_ERRORS: Final = 10
#: How long a statement waits for another process's write lock before failing.
BUSY_TIMEOUT_SECONDS: Final = 30.0
#: The largest page `SQLiteStore.page` returns.
MAX_PAGE: Final = 1000

_SYNCHRONOUS: Final = ("NORMAL", "FULL")
_URL_PREFIX: Final = "sqlite:///"
# Keeps each renew statement well under SQLite's bound-parameter limit.
_RENEW_CHUNK: Final = 500

_COLUMNS: Final = (
    "id, name, payload, status, priority, attempts, max_attempts, timeout, created_at, due_at,"
    " started_at, finished_at, owner, lease_until, cancel_requested, result, errors, headers"
)
_HELD_SQL: Final = "id = ? AND owner = ? AND attempts = ? AND status = 'running'"

# A due_at that is not a number (a corrupt row) is claimed at once, so that the
# claim fails the task instead of leaving it waiting forever.
# INDEXED BY pins the hot queries to their index: without statistics the
# planner may prefer another index plus a sort of every claimable row
# (measured: 37 ms instead of 26 µs per claim with 100,000 rows).
_CLAIM: Final = f"""
    UPDATE tasks SET status = 'running', attempts = attempts + 1, owner = ?, lease_until = ?,
        started_at = ?
    WHERE id IN (
        SELECT id FROM tasks INDEXED BY tasks_claim WHERE {_CLAIMABLE_SQL}
            AND (due_at <= ? OR typeof(due_at) NOT IN ('real', 'integer'))
        ORDER BY priority DESC, due_at, id LIMIT ?
    )
    RETURNING {_COLUMNS}
"""
_NEXT_DUE: Final = (
    f"SELECT MIN(due_at) FROM tasks INDEXED BY tasks_delayed WHERE {_DELAYED_SQL} AND due_at > ?"
)
# A corrupt due_at (not a number) is no time to measure from.
_OLDEST_DUE: Final = (
    f"SELECT MIN(due_at) FROM tasks INDEXED BY tasks_claim WHERE {_CLAIMABLE_SQL}"
    " AND due_at <= ? AND typeof(due_at) IN ('real', 'integer')"
)
# A queued task is due at once: its due_at is at most the transaction's now.
_INSERT: Final = (
    "INSERT INTO tasks"
    " (name, payload, status, priority, max_attempts, timeout, due_at, headers, created_at)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, CASE WHEN ?3 = 'queued' THEN MIN(?7, ?9) ELSE ?7 END, ?8, ?9)"
)
# The runtime decided the target (?1: 'retrying', 'failed' or 'cancelled'; ?2 the
# due time of 'retrying'); the one rule left here is a guard, cancel wins: a task
# whose cancellation was requested never becomes claimable again.
_APPLY_TARGET: Final = """
        status = CASE WHEN ?1 = 'retrying' AND cancel_requested THEN 'cancelled' ELSE ?1 END,
        due_at = CASE WHEN ?1 = 'retrying' THEN ?2 ELSE due_at END,
        finished_at = CASE WHEN ?1 = 'retrying' AND NOT cancel_requested THEN NULL ELSE ?3 END,
        owner = NULL, lease_until = NULL, errors = append_error(errors, ?4)
"""
_FAIL: Final = f"""
    UPDATE tasks SET {_APPLY_TARGET}
    WHERE id = ?5 AND owner = ?6 AND attempts = ?7 AND status = 'running'
    RETURNING status
"""
_COMPLETE: Final = f"""
    UPDATE tasks SET status = 'completed', result = ?, finished_at = ?, owner = NULL,
        lease_until = NULL
    WHERE {_HELD_SQL}
"""
_FINISH_CANCELLED: Final = f"""
    UPDATE tasks SET status = 'cancelled', finished_at = ?, owner = NULL, lease_until = NULL
    WHERE {_HELD_SQL}
"""
# Given back (the attempt uncounted), unless cancel wins.
_RELEASE: Final = """
    UPDATE tasks SET
        status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END,
        finished_at = CASE WHEN cancel_requested THEN ?1 END,
        attempts = attempts - 1, due_at = ?1, owner = NULL, lease_until = NULL
    WHERE id = ?2 AND owner = ?3 AND attempts = ?4 AND status = 'running'
    RETURNING status
"""
_EXPIRED: Final = f"""
    SELECT {_COLUMNS} FROM tasks INDEXED BY tasks_running
    WHERE status = 'running' AND lease_until < ? ORDER BY lease_until LIMIT ?
"""
# Guarded by the expired holder: a task renewed, finished or re-claimed since
# `expired` read it no longer matches, so it is left alone.
_RECOVER: Final = f"""
    UPDATE tasks SET {_APPLY_TARGET}
    WHERE id = ?5 AND owner IS ?6 AND attempts = ?7 AND status = 'running' AND lease_until < ?3
"""
# A claimed row that cannot be read is failed at once, never handed out.
_FAIL_CORRUPT: Final = """
    UPDATE tasks SET status = 'failed', finished_at = ?, owner = NULL, lease_until = NULL,
        errors = ?
    WHERE id = ?
"""
_PURGE: Final = (
    f"DELETE FROM tasks INDEXED BY tasks_finished WHERE {_TERMINAL_SQL} AND finished_at < ?"
)

_STATUS_BY_VALUE: Final = {status.value: status for status in TaskStatus}
_CLAIMABLE_VALUES: Final = frozenset(status.value for status in CLAIMABLE_STATUSES)
_REQUEUEABLE_VALUES: Final = frozenset({TaskStatus.FAILED.value, TaskStatus.CANCELLED.value})

_Run = Callable[[sqlite3.Connection, float], Any]


class _Op:
    """One operation handed to the writer thread, and its outcome once run."""

    __slots__ = ("result", "run", "task", "write")

    def __init__(self, run: _Run, write: bool, task: trio.lowlevel.Task) -> None:
        self.run = run
        self.write = write
        self.task = task
        self.result: outcome.Outcome[Any] | None = None


class SQLiteStore:
    """A durable task store in one SQLite file, shared safely by several processes on one host.

    Several processes may open the same file: SQLite's write lock (WAL mode,
    ``BEGIN IMMEDIATE``) serialises their transactions, so no task is
    claimed twice. The file must be on a local disk (WAL needs shared memory,
    which network filesystems do not provide).

    Every method (except the constructor) is a checkpoint. Operations are
    group-committed by one writer thread per store. A caller cancelled while
    its operation still waits for the thread raises `trio.Cancelled`, and
    the operation does not happen. Once the thread has taken it, the
    cancellation cannot stop it (a commit cannot be taken back): the caller
    waits for the transaction to end (at most the busy timeout), gets the
    result, and is cancelled at its next checkpoint. So a call that raises
    `trio.Cancelled` did nothing, and a call that returns did its work.
    A call that raises `StoreError` stored nothing when its transaction
    failed; if the writer thread died, it may or may not have been
    committed, and every waiting and later call raises `StoreError`
    (callers never hang).

    Wall-clock times (`time.time`) are read by the writer thread once per
    transaction, under the write lock, so every operation in one group
    commit sees the same ``now``, and no row committed before it (by any
    process on this host) carries a later time.

    SQLite cannot notify other processes of new tasks: ``wait_for_work`` is
    woken by this store object's own writes and otherwise returns after
    its *timeout* (the poll interval).

    Args:
        path_or_url: A filesystem path, or a URL ``sqlite:///relative.db`` or
            ``sqlite:////absolute/path.db``. The directory must exist; the
            file is created (with the schema) if it does not.
        synchronous: ``"NORMAL"`` (default): a commit survives a crash of
            the process; the last commits may be lost on power loss or an
            OS crash. ``"FULL"``: commits also survive power loss, at about
            2-3 times the cost of each commit (an fsync per group commit).

    Attributes:
        url: The store as a URL, ``sqlite:///`` followed by `path`.
        path: The database file, as given.
        synchronous: ``"NORMAL"`` or ``"FULL"``.

    Raises:
        ValueError: A malformed URL or an unknown *synchronous* value.
        TypeError: *path_or_url* or *synchronous* is not a string (or path).
    """

    url: str
    path: str
    synchronous: str

    def __init__(self, path_or_url: str | os.PathLike[str], *, synchronous: str = "NORMAL") -> None:
        if not isinstance(path_or_url, (str, os.PathLike)):
            raise TypeError(f"path_or_url must be a str or path, not {type(path_or_url).__name__}")
        if not isinstance(synchronous, str):
            raise TypeError(f"synchronous must be a str, not {type(synchronous).__name__}")
        if synchronous.upper() not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', not {synchronous!r}")
        path = os.fspath(path_or_url)
        if path.startswith("sqlite:"):
            if not path.startswith(_URL_PREFIX):
                raise ValueError(
                    f"malformed SQLite URL {path!r}: use sqlite:///relative.db or"
                    " sqlite:////absolute/path.db"
                )
            path = path[len(_URL_PREFIX) :]
        if not path or path == ":memory:" or path.endswith(("/", os.sep)):
            raise ValueError(f"{path_or_url!r} does not name a database file")
        self.path = path
        self.url = _URL_PREFIX + path
        self.synchronous = synchronous.upper()
        # Wall clock for every time the store writes; tests replace it.
        self._clock: Callable[[], float] = time.time
        self._cond = threading.Condition(threading.Lock())
        self._pending: list[_Op] = []
        # Whether the writer thread sleeps in _cond.wait(): only then does a
        # new op need to notify it (a busy thread takes the op with its next batch).
        self._writer_asleep = False
        # Set under _cond once no operation can be accepted: why, as a message.
        self._refusal: str | None = f"{self._describe()} is not open"
        self._opened = False
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._work_added = trio.Event()
        # Group-commit statistics, read by tests and the benchmark.
        self._commits = 0
        self._ops = 0

    def now(self) -> float:
        """The wall clock, `time.time`, of every time this store writes. Not a checkpoint."""
        return self._clock()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.url!r}, synchronous={self.synchronous!r})"

    def _describe(self) -> str:
        return f"SQLite store {self.path!r}"

    # --- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        """Open the file, create or migrate its schema, and start the writer thread.

        Checkpoints. A store opens once.

        Raises:
            StoreError: The directory does not exist; the file is not a
                database, is corrupted, belongs to another application or
                has a newer schema version than this code supports.
            RuntimeError: The store was opened before.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._opened:
            raise RuntimeError(f"{self._describe()} was already opened")
        self._opened = True
        self._token = trio.lowlevel.current_trio_token()
        ready = _Op(_nothing, False, trio.lowlevel.current_task())
        with self._cond:
            self._refusal = None
            self._pending.append(ready)
        self._thread = threading.Thread(
            target=self._writer_main, name=f"trio_workq {self._describe()}", daemon=True
        )
        self._thread.start()
        try:
            # The thread connects and migrates before it runs this first op.
            await self._wait(ready)
        except BaseException:
            self._stop_nowait(f"{self._describe()} failed to open")
            raise

    async def aclose(self) -> None:
        """Finish the operations already submitted, then close the file and stop the thread.

        Checkpoints. Safe to call twice, and before `open`. Later calls on the
        store raise `StoreError`. If cancelled, it stops waiting for the
        thread, which still finishes the accepted operations and closes the
        file by itself.
        """
        self._stop_nowait(f"{self._describe()} is closed")
        thread = self._thread
        if thread is None:
            await trio.lowlevel.checkpoint()
            return
        await trio.to_thread.run_sync(thread.join, abandon_on_cancel=True)

    def _stop_nowait(self, reason: str) -> None:
        with self._cond:
            if self._refusal is None:
                self._refusal = reason
            self._cond.notify()

    # --- the writer thread ------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """Open the file and bring its schema to `SCHEMA_VERSION` (writer thread)."""
        directory = os.path.dirname(self.path) or "."
        if not os.path.isdir(directory):
            raise StoreError(f"{self._describe()}: directory {directory!r} does not exist")
        if sqlite3.sqlite_version_info < (3, 35, 0):
            raise StoreError(
                f"{self._describe()}: SQLite {sqlite3.sqlite_version} is too old (3.35+ needed)"
            )
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"{self._describe()}: cannot use WAL mode (journal mode {mode})")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.create_function("append_error", 2, _append_error, deterministic=True)
            self._migrate(conn)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise self._error(exc) from exc
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        # Read and migrate under the write lock, so two processes opening a
        # new file at once cannot both create the schema.
        conn.execute("BEGIN IMMEDIATE")
        try:
            version: int = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self._describe()}: its schema version {version} is newer than this"
                    f" trio_workq supports ({SCHEMA_VERSION}); upgrade trio_workq"
                )
            if version == 0 and conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone():
                raise StoreError(
                    f"{self._describe()}: not a trio_workq database (it has other tables)"
                )
            for statements in _MIGRATIONS[version:]:
                for statement in statements:
                    conn.execute(statement)
            if version != SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _writer_main(self) -> None:
        batch: list[_Op] = []
        conn: sqlite3.Connection | None = None
        try:
            conn = self._connect()
            while True:
                with self._cond:
                    while not self._pending and self._refusal is None:
                        self._writer_asleep = True
                        self._cond.wait()
                        self._writer_asleep = False
                    if not self._pending:
                        return  # closed, and every accepted op is done
                    batch, self._pending = self._pending, []
                self._run_batch(conn, batch)
                self._deliver_soon(batch)
                batch = []
        except BaseException as exc:
            reason = (
                str(exc)
                if isinstance(exc, StoreError)
                else f"{self._describe()}: its writer thread died: {exc!r}"
            )
            with self._cond:
                self._refusal = reason
                batch += self._pending
                self._pending = []
            for op in batch:
                op.result = outcome.Error(StoreError(reason))
            self._deliver_soon(batch)
        finally:
            if conn is not None:
                conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Op]) -> None:
        """Run *batch* and set each op's result (writer thread).

        The whole batch runs as one transaction. If an op fails after it may
        have written, the transaction is rolled back and each op runs again
        in a transaction of its own, so a failing op fails only its caller.
        (A SAVEPOINT per op would do the same at two extra statements per op,
        a third of the cost of an insert, on every op; and SQLite rolls back
        a whole transaction, savepoints included, after some errors such as
        a full disk.) Ops only read and write the database, so running one
        again is safe.
        """
        self._ops += len(batch)
        if not self._run_group(conn, batch):
            for op in batch:
                self._run_group(conn, [op])

    def _run_group(self, conn: sqlite3.Connection, ops: list[_Op]) -> bool:
        """Run *ops* in one transaction; False if it was rolled back to run them one by one."""
        write = any(op.write for op in ops)
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.Error as exc:
            self._fail(ops, exc)
            return True
        # Read under the write lock: every row committed before it (by any
        # process on this host) was written at an earlier time.
        now = self._clock()
        undo = False
        for op in ops:
            try:
                op.result = outcome.Value(op.run(conn, now))
            except Exception as exc:  # the op's own failure belongs to its caller alone
                error = exc
                if isinstance(exc, sqlite3.Error):
                    error = self._error(exc)
                elif isinstance(exc, (UnicodeError, OverflowError)):  # binding a value failed
                    error = StoreDataError(f"{self._describe()}: cannot store a value: {exc}")
                    error.__cause__ = exc
                op.result = outcome.Error(error)
                undo = undo or op.write or not conn.in_transaction
        if undo:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return len(ops) == 1
        try:
            self._commit(conn)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._fail(ops, exc)  # nothing of this group is stored
            return True
        if write:
            self._commits += 1
        return True

    def _fail(self, ops: list[_Op], exc: sqlite3.Error) -> None:
        for op in ops:
            op.result = outcome.Error(self._error(exc))

    def _commit(self, conn: sqlite3.Connection) -> None:
        conn.execute("COMMIT")

    def _deliver_soon(self, batch: list[_Op]) -> None:
        # One hop into trio per group, not per op: the hop, not SQLite, is the
        # expensive part of a small operation.
        if batch and self._token is not None:
            try:
                self._token.run_sync_soon(_deliver, batch)
            except trio.RunFinishedError:
                pass  # the trio run is gone, and with it every waiting caller

    def _error(self, exc: sqlite3.Error) -> StoreError:
        # A data error (a value too big...) fails the same way every time: never retried.
        kind = StoreDataError if isinstance(exc, sqlite3.DataError) else StoreError
        error = kind(f"{self._describe()}: {exc}")
        error.__cause__ = exc
        return error

    # --- the trio side ------------------------------------------------------

    async def _call(self, run: Callable[[sqlite3.Connection, float], T], *, write: bool) -> T:
        """Run ``run(connection, now)`` in the writer thread's next transaction."""
        await trio.lowlevel.checkpoint_if_cancelled()
        op = _Op(run, write, trio.lowlevel.current_task())
        with self._cond:
            if self._refusal is not None:
                raise StoreError(self._refusal)
            self._pending.append(op)
            if self._writer_asleep:
                self._cond.notify()
        result: T = await self._wait(op)
        return result

    async def _wait(self, op: _Op) -> Any:
        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            with self._cond:
                try:
                    self._pending.remove(op)
                except ValueError:
                    # The thread has it: it will run; wait for its result.
                    return trio.lowlevel.Abort.FAILED
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)

    # --- Store methods -------------------------------------------------------

    async def add(self, tasks: Sequence[NewTask]) -> list[str]:
        """Insert *tasks* in one transaction; return their ids, in order.

        Checkpoints. Wakes this process's `wait_for_work`.

        Raises:
            ValueError, TypeError: A task is malformed; nothing is inserted.
        """
        rows = [_new_row(task) for task in tasks]
        if not rows:
            await trio.lowlevel.checkpoint()
            return []

        def run(conn: sqlite3.Connection, now: float) -> list[str]:
            ids: list[str] = []
            for row in rows:
                cursor = conn.execute(_INSERT, (*row, now))
                ids.append(str(cursor.lastrowid))
            return ids

        ids = await self._call(run, write=True)
        self._work_added.set()
        return ids

    async def claim(self, owner: str, limit: int, lease_seconds: float) -> Claimed:
        """Take up to *limit* due tasks, highest priority first, then earliest due, then oldest.

        One ``UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING`` under
        the write lock, plus the next-due lookup, in one transaction.
        Checkpoints.

        Raises:
            ValueError, TypeError: An empty *owner*, *limit* < 1, or a
                *lease_seconds* that is not positive and finite.
        """
        check_owner(owner)
        check_int("limit", limit, minimum=1, maximum=INT64_MAX)
        check_seconds("lease_seconds", lease_seconds)

        def run(conn: sqlite3.Connection, now: float) -> Claimed:
            rows = conn.execute(_CLAIM, (owner, now + lease_seconds, now, now, limit)).fetchall()
            tasks: list[StoredTask] = []
            for row in rows:
                task, problem = read_row(row)
                if problem is None:
                    tasks.append(task)
                else:
                    errors = json.dumps(list(task.errors[-MAX_ERRORS:]))
                    conn.execute(_FAIL_CORRUPT, (now, errors, row[0]))
                    _log_corrupt(problem)
            tasks.sort(key=_claim_order)
            next_due = conn.execute(_NEXT_DUE, (now,)).fetchone()[0]
            if not (type(next_due) is float or type(next_due) is int):
                next_due = None  # a corrupt due_at (text) is not a time to wake at
            return Claimed(tuple(tasks), next_due)

        return await self._call(run, write=True)

    async def renew(self, owner: str, ids: Sequence[str], lease_seconds: float) -> Renewal:
        """Extend the leases of the running tasks *ids* held by *owner*.

        Checkpoints. Ids that are unknown, not running or held by another
        owner are reported ``lost``.
        """
        check_owner(owner)
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
            raise TypeError(f"ids must be a sequence of str, not {type(ids).__name__}")
        check_seconds("lease_seconds", lease_seconds)
        wanted = {task_id: parse_id(task_id) for task_id in ids}
        numbers = [number for number in wanted.values() if number is not None]
        if not wanted:
            await trio.lowlevel.checkpoint()
            return Renewal(frozenset(), frozenset())

        def run(conn: sqlite3.Connection, now: float) -> Renewal:
            held: dict[int, bool] = {}
            for start in range(0, len(numbers), _RENEW_CHUNK):
                chunk = numbers[start : start + _RENEW_CHUNK]
                marks = ", ".join("?" * len(chunk))
                held.update(
                    conn.execute(
                        "UPDATE tasks SET lease_until = ?"
                        f" WHERE owner = ? AND status = 'running' AND id IN ({marks})"
                        " RETURNING id, cancel_requested",
                        (now + lease_seconds, owner, *chunk),
                    ).fetchall()
                )
            lost: set[str] = set()
            cancel_requested: set[str] = set()
            for task_id, number in wanted.items():
                if number is None or number not in held:
                    lost.add(task_id)
                elif held[number]:
                    cancel_requested.add(task_id)
            return Renewal(frozenset(lost), frozenset(cancel_requested))

        return await self._call(run, write=True)

    async def complete(self, owner: str, task_id: str, attempt: int, result: bytes) -> bool:
        """Mark a running task ``completed`` with *result*.

        Checkpoints. Returns False (and changes nothing) if *owner* no longer
        holds *attempt* of the task.
        """
        check_bytes("result", result)
        return await self._held_update(_COMPLETE, (result,), owner, task_id, attempt)

    async def complete_many(
        self, owner: str, completions: Sequence[tuple[str, int, bytes]]
    ) -> list[bool]:
        """`complete` for several ``(task_id, attempt, result)`` at once, in one transaction.

        Checkpoints. Returns one flag per item, in order: False where *owner*
        no longer holds that attempt (that row is left as it is).

        Raises:
            ValueError, TypeError: An item is malformed; nothing is changed.
        """
        check_owner(owner)
        items: list[tuple[bytes, tuple[int, str, int] | None]] = []
        for task_id, attempt, result in completions:
            check_bytes("result", result)
            items.append((result, _held_params(owner, task_id, attempt)))
        if not items:
            await trio.lowlevel.checkpoint()
            return []

        def run(conn: sqlite3.Connection, now: float) -> list[bool]:
            return [
                held is not None and conn.execute(_COMPLETE, (result, now, *held)).rowcount == 1
                for result, held in items
            ]

        return await self._call(run, write=True)

    async def fail(
        self, owner: str, task_id: str, attempt: int, error: str, retry_at: float | None
    ) -> TaskStatus | None:
        """Apply a failed attempt's target: ``retrying`` until *retry_at*, else ``failed``.

        *error* is appended to the task's errors (the last `MAX_ERRORS` are
        kept). Cancel wins: a task whose cancellation was requested ends
        ``cancelled`` instead of retrying. Checkpoints. Returns the status
        written, or ``None`` (and changes nothing) if *owner* no longer holds
        *attempt*.
        """
        check_text("error", error)
        if retry_at is not None:
            check_time("retry_at", retry_at)
        held = _held_params(owner, task_id, attempt)
        if held is None:
            await trio.lowlevel.checkpoint()
            return None

        target = "failed" if retry_at is None else "retrying"

        def run(conn: sqlite3.Connection, now: float) -> TaskStatus | None:
            row = conn.execute(_FAIL, (target, retry_at, now, error, *held)).fetchone()
            return None if row is None else _STATUS_BY_VALUE[row[0]]

        written = await self._call(run, write=True)
        if written is TaskStatus.RETRYING:
            self._work_added.set()  # the claim loop may need an earlier wake-up
        return written

    async def finish_cancelled(self, owner: str, task_id: str, attempt: int) -> bool:
        """Mark a running task that was cancelled ``cancelled``.

        Checkpoints. Returns False (and changes nothing) if *owner* no longer
        holds *attempt*.
        """
        return await self._held_update(_FINISH_CANCELLED, (), owner, task_id, attempt)

    async def release(self, owner: str, task_id: str, attempt: int) -> TaskStatus | None:
        """Give back a running task interrupted by shutdown: ``queued``, due now.

        The attempt is not counted; owner and lease are cleared. Cancel
        wins: a task whose cancellation was requested ends ``cancelled``
        instead. Checkpoints. Returns the status written, or ``None`` (and
        changes nothing) if *owner* no longer holds *attempt*.
        """
        held = _held_params(owner, task_id, attempt)
        if held is None:
            await trio.lowlevel.checkpoint()
            return None

        def run(conn: sqlite3.Connection, now: float) -> TaskStatus | None:
            row = conn.execute(_RELEASE, (now, *held)).fetchone()
            return None if row is None else _STATUS_BY_VALUE[row[0]]

        written = await self._call(run, write=True)
        if written is TaskStatus.QUEUED:
            self._work_added.set()
        return written

    async def _held_update(
        self, sql: str, values: tuple[Any, ...], owner: str, task_id: str, attempt: int
    ) -> bool:
        held = _held_params(owner, task_id, attempt)
        if held is None:
            await trio.lowlevel.checkpoint()
            return False

        def run(conn: sqlite3.Connection, now: float) -> bool:
            return conn.execute(sql, (*values, now, *held)).rowcount == 1

        return await self._call(run, write=True)

    async def cancel(self, task_id: str) -> TaskStatus | None:
        """Cancel a task from anywhere.

        A queued, scheduled or retrying task becomes ``cancelled`` at once; a
        running one gets ``cancel_requested`` (its owner stops it and calls
        `finish_cancelled`). Returns the status the task had, or ``None`` if
        the id is unknown; a finished task is left as it is. Checkpoints.
        """
        number = parse_id(task_id)
        if number is None:
            await trio.lowlevel.checkpoint()
            return None

        def run(conn: sqlite3.Connection, now: float) -> TaskStatus | None:
            row = conn.execute("SELECT status FROM tasks WHERE id = ?", (number,)).fetchone()
            if row is None:
                return None
            status: str = row[0]
            if status in _CLAIMABLE_VALUES:
                conn.execute(
                    "UPDATE tasks SET status = 'cancelled', finished_at = ? WHERE id = ?",
                    (now, number),
                )
            elif status == TaskStatus.RUNNING.value:
                conn.execute("UPDATE tasks SET cancel_requested = 1 WHERE id = ?", (number,))
            return _STATUS_BY_VALUE[status]

        return await self._call(run, write=True)

    async def requeue(self, task_id: str) -> TaskStatus | None:
        """Run a ``failed`` or ``cancelled`` task again, as one more attempt, due now.

        Its attempts so far still count; ``max_attempts`` is raised to
        ``attempts + 1`` if it was used up, so exactly one more attempt is
        allowed then. Its errors are kept. Returns the status it had
        (unchanged unless it was failed or cancelled), or ``None`` if the id
        is unknown. Checkpoints.
        """
        number = parse_id(task_id)
        if number is None:
            await trio.lowlevel.checkpoint()
            return None

        def run(conn: sqlite3.Connection, now: float) -> TaskStatus | None:
            row = conn.execute("SELECT status FROM tasks WHERE id = ?", (number,)).fetchone()
            if row is None:
                return None
            status: str = row[0]
            if status in _REQUEUEABLE_VALUES:
                conn.execute(
                    "UPDATE tasks SET status = 'queued', due_at = ?, finished_at = NULL,"
                    " cancel_requested = 0, max_attempts = MAX(max_attempts, attempts + 1)"
                    " WHERE id = ?",
                    (now, number),
                )
            return _STATUS_BY_VALUE[status]

        status = await self._call(run, write=True)
        if status is not None and status.value in _REQUEUEABLE_VALUES:
            self._work_added.set()
        return status

    async def get(self, task_id: str) -> StoredTask | None:
        """The task with this id, or ``None`` (also for an id this store never makes).

        Checkpoints.
        """
        number = parse_id(task_id)
        if number is None:
            await trio.lowlevel.checkpoint()
            return None

        def run(conn: sqlite3.Connection, now: float) -> StoredTask | None:
            row = conn.execute(f"SELECT {_COLUMNS} FROM tasks WHERE id = ?", (number,)).fetchone()
            return None if row is None else _stored(row)

        return await self._call(run, write=False)

    async def page(
        self,
        *,
        status: TaskStatus | None,
        name: str | None,
        limit: int,
        cursor: str | None,
    ) -> Page:
        """Tasks newest first (by id), optionally of one status and/or name.

        Pass the returned ``next_cursor`` as *cursor* for the next page.
        Checkpoints.

        Raises:
            ValueError: *limit* is not in 1..`MAX_PAGE`, or *cursor* is not
                one this store returned.
            TypeError: *status* is not a `TaskStatus`, or *name* not a str.
        """
        before = check_page(status, name, limit, cursor)
        where: list[str] = []
        params: list[Any] = []
        for clause, value in (("status = ?", status), ("name = ?", name), ("id < ?", before)):
            if value is not None:
                where.append(clause)
                params.append(value.value if isinstance(value, TaskStatus) else value)
        sql = f"SELECT {_COLUMNS} FROM tasks"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit + 1)  # one more row tells whether a next page exists

        def run(conn: sqlite3.Connection, now: float) -> Page:
            rows = conn.execute(sql, params).fetchall()
            tasks = tuple(map(_stored, rows[:limit]))
            return Page(tasks, tasks[-1].id if len(rows) > limit else None)

        return await self._call(run, write=False)

    async def counts(self) -> dict[TaskStatus, int]:
        """How many tasks the store holds in each status (every status is a key). Checkpoints."""

        def run(conn: sqlite3.Connection, now: float) -> dict[TaskStatus, int]:
            counts = dict.fromkeys(TaskStatus, 0)
            for status, count in conn.execute("SELECT status, COUNT(*) FROM tasks GROUP BY status"):
                known = _STATUS_BY_VALUE.get(status)
                if known is not None:  # a corrupt status is not counted
                    counts[known] = count
            return counts

        return await self._call(run, write=False)

    async def oldest_due_age(self) -> float | None:
        """Seconds since the earliest due time of a due claimable task, or ``None``. Checkpoints.

        Reads the claim index (every claimable row: it is ordered by priority first).
        """

        def run(conn: sqlite3.Connection, now: float) -> float | None:
            oldest = conn.execute(_OLDEST_DUE, (now,)).fetchone()[0]
            return None if oldest is None else now - float(oldest)

        return await self._call(run, write=False)

    async def expired(self, limit: int) -> tuple[StoredTask, ...]:
        """Up to *limit* running tasks whose lease has run out, oldest lease first.

        Changes nothing (see `recover`). *limit* is 1..`MAX_PAGE`. Checkpoints.
        """
        check_int("limit", limit, minimum=1, maximum=MAX_PAGE)

        def run(conn: sqlite3.Connection, now: float) -> tuple[StoredTask, ...]:
            return tuple(_stored(row) for row in conn.execute(_EXPIRED, (now, limit)))

        return await self._call(run, write=False)

    async def recover(self, recoveries: Sequence[Recovery]) -> int:
        """Apply decided targets to tasks whose lease expired, in one transaction.

        Each applies only while its row is still running, held by the
        expired owner at that attempt, with its lease still expired (checked
        in the UPDATE itself); cancel wins as in `fail`. SQLite's write lock
        serialises concurrent recoverers: the second finds the rows changed
        and leaves them. Returns how many rows changed. Checkpoints.
        """
        items: list[tuple[Any, ...]] = []
        for raw in recoveries:
            item, due = check_recovery(raw, max_attempts=INT64_MAX)
            number = parse_id(item.task_id)
            if number is not None:
                items.append((item.status.value, due, item.error, number, item.owner, item.attempt))
        if not items:
            await trio.lowlevel.checkpoint()
            return 0

        def run(conn: sqlite3.Connection, now: float) -> int:
            return sum(
                conn.execute(_RECOVER, (status, due, now, error, *held)).rowcount
                for status, due, error, *held in items
            )

        recovered = await self._call(run, write=True)
        if recovered:
            self._work_added.set()
        return recovered

    async def purge_finished(self, older_than: float) -> int:
        """Delete finished tasks whose ``finished_at`` is before *older_than*; return the count.

        Checkpoints.
        """
        check_time("older_than", older_than)

        def run(conn: sqlite3.Connection, now: float) -> int:
            return conn.execute(_PURGE, (older_than,)).rowcount

        return await self._call(run, write=True)

    async def wait_for_work(self, timeout: float) -> None:  # noqa: ASYNC109 - Store's poll interval
        """Return when this process added work since the last wake-up, or after *timeout* seconds.

        SQLite cannot notify other processes, so tasks they add are found by
        polling: *timeout* is the poll interval. Tasks added (or released,
        re-queued, recovered, or failed for a retry) through this store
        object wake the waiter at once; that wake-up is kept until a waiter
        returns, so an ``add`` between a claim and this call is not missed.
        Checkpoints.

        Raises:
            ValueError: *timeout* is negative or NaN.
        """
        check_seconds("timeout", timeout, allow_zero=True, allow_inf=True)
        with trio.move_on_after(timeout):
            await self._work_added.wait()
        if self._work_added.is_set():
            self._work_added = trio.Event()


# --- helpers ------------------------------------------------------------------


def _nothing(conn: sqlite3.Connection, now: float) -> None:
    return None


def _deliver(batch: list[_Op]) -> None:
    for op in batch:
        assert op.result is not None
        trio.lowlevel.reschedule(op.task, op.result)


def _append_error(errors: object, error: str) -> str:
    # An exception here would fail the whole statement (a recovery of every
    # expired lease included): an unreadable history is replaced, and said so.
    loaded: object = None
    try:
        loaded = json.loads(errors) if isinstance(errors, str) else None
    except ValueError:
        pass
    if isinstance(loaded, list):
        history = cast("list[object]", loaded)
    else:
        history = [f"(the earlier errors were unreadable and are lost: {repr(errors)[:80]})"]
    history.append(error)
    return json.dumps(history[-MAX_ERRORS:])


def _stored(row: tuple[Any, ...]) -> StoredTask:
    return read_row(row)[0]


def _log_corrupt(problem: str) -> None:
    logging.getLogger("trio_workq").error("%s; the task was failed without running", problem)


def _claim_order(task: StoredTask) -> tuple[int, float, int]:
    # RETURNING yields rows in no particular order; restore the claim's.
    return (-task.priority, task.due_at or 0.0, int(task.id))


def _held_params(owner: str, task_id: str, attempt: int) -> tuple[int, str, int] | None:
    number = check_held(owner, task_id, attempt, max_attempts=INT64_MAX)
    return None if number is None else (number, owner, attempt)


def _new_row(task: NewTask) -> tuple[Any, ...]:
    check_new_task(task, max_attempts=INT64_MAX)
    return (
        task.name,
        task.payload,
        task.status.value,
        task.priority,
        task.max_attempts,
        task.timeout,
        task.due_at,
        headers_json(task.headers),
    )
