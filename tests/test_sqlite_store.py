# SPDX-License-Identifier: MIT
"""`SQLiteStore` at the store level: every method, every bad input, bad files, group commit.

Times the store writes come from a fake wall clock (``store._clock``), so
leases and due times are deterministic; the writer thread is real, so these
tests do not use ``autojump_clock``. Each test runs under the conftest's
``trio.fail_after``.
"""

from __future__ import annotations

import functools
import json
import math
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from _recovery import recover_expired

import trio_workq._stores.sqlite as sqlite_module
from trio_workq._core.status import TaskStatus
from trio_workq._stores.protocol import Claimed, NewTask, Recovery, Renewal, StoredTask, StoreError
from trio_workq._stores.sqlite import MAX_ERRORS, SCHEMA_VERSION, SQLiteStore

QUEUED = TaskStatus.QUEUED
SCHEDULED = TaskStatus.SCHEDULED
RUNNING = TaskStatus.RUNNING
RETRYING = TaskStatus.RETRYING
COMPLETED = TaskStatus.COMPLETED
FAILED = TaskStatus.FAILED
CANCELLED = TaskStatus.CANCELLED

T0 = 1_000_000.0
OWNER = "worker-1"


class FakeClock:
    """The store's wall clock, moved by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def new(
    name: str = "job",
    *,
    priority: int = 0,
    due_at: float = T0,
    status: TaskStatus = QUEUED,
    max_attempts: int = 3,
    timeout: float | None = None,
    payload: bytes = b"[1]",
) -> NewTask:
    return NewTask(name, payload, priority, due_at, max_attempts, timeout, status)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "tasks.db"


@pytest.fixture
async def store(db_path: Path, clock: FakeClock) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(db_path)
    store._clock = clock
    await store.open()
    yield store
    await store.aclose()


async def claim_one(store: SQLiteStore, owner: str = OWNER, lease: float = 30.0) -> StoredTask:
    claimed = await store.claim(owner, 1, lease)
    assert len(claimed.tasks) == 1
    return claimed.tasks[0]


async def get(store: SQLiteStore, task_id: str) -> StoredTask:
    task = await store.get(task_id)
    assert task is not None
    return task


def read_file(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Query the database file with a connection of the test's own."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@asynccontextmanager
async def writer_blocked(
    store: SQLiteStore, nursery: trio.Nursery
) -> AsyncGenerator[threading.Event, None]:
    """Hold the writer thread inside an op until the yielded event is set.

    Ops submitted meanwhile wait in ``store._pending`` and then run as one group.
    """
    entered = threading.Event()
    release = threading.Event()

    def block(conn: sqlite3.Connection, now: float) -> None:
        entered.set()
        release.wait(10)

    nursery.start_soon(functools.partial(store._call, block, write=False))
    await trio.to_thread.run_sync(entered.wait)
    try:
        yield release
    finally:
        release.set()


async def wait_pending(store: SQLiteStore, count: int) -> None:
    """Wait until the callers have parked; *count* ops then wait for the (blocked) thread."""
    await trio.testing.wait_all_tasks_blocked()
    assert len(store._pending) == count


def write_at(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b" if path.exists() else "wb") as file:
        file.seek(offset)
        file.write(data)


# --- construction -------------------------------------------------------------


class TestConstruction:
    def test_path_and_url_forms(self, tmp_path: Path) -> None:
        """A path (str or PathLike) or a sqlite:/// URL names the file; url round-trips."""
        assert SQLiteStore("rel.db").path == "rel.db"
        assert SQLiteStore("rel.db").url == "sqlite:///rel.db"
        assert SQLiteStore(tmp_path / "x.db").path == str(tmp_path / "x.db")
        assert SQLiteStore("sqlite:///rel.db").path == "rel.db"
        absolute = SQLiteStore("sqlite:////abs/dir/x.db")
        assert absolute.path == "/abs/dir/x.db"
        assert absolute.url == "sqlite:////abs/dir/x.db"
        assert repr(absolute) == "SQLiteStore('sqlite:////abs/dir/x.db', synchronous='NORMAL')"

    @pytest.mark.parametrize(
        "bad", ["sqlite://host/x.db", "sqlite:x.db", "sqlite:///", "", ":memory:", "dir/"]
    )
    def test_bad_path_or_url(self, bad: str) -> None:
        """A URL of another form, or a string naming no file, is refused."""
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            SQLiteStore(bad)

    def test_path_type(self) -> None:
        with pytest.raises(TypeError, match="path_or_url must be a str or path, not int"):
            SQLiteStore(42)  # type: ignore[arg-type]

    @pytest.mark.parametrize(("given", "stored"), [("NORMAL", "NORMAL"), ("full", "FULL")])
    def test_synchronous_values(self, given: str, stored: str) -> None:
        assert SQLiteStore("x.db", synchronous=given).synchronous == stored

    @pytest.mark.parametrize("bad", ["OFF", "EXTRA", "", "NORMAL "])
    def test_bad_synchronous(self, bad: str) -> None:
        with pytest.raises(ValueError, match="synchronous must be 'NORMAL' or 'FULL'"):
            SQLiteStore("x.db", synchronous=bad)

    def test_synchronous_type(self) -> None:
        with pytest.raises(TypeError, match="synchronous must be a str, not int"):
            SQLiteStore("x.db", synchronous=1)  # type: ignore[arg-type]


# --- opening, pragmas, migrations, bad files ----------------------------------


class TestOpen:
    @pytest.mark.parametrize(("synchronous", "level"), [("NORMAL", 1), ("FULL", 2)])
    async def test_pragmas(self, db_path: Path, synchronous: str, level: int) -> None:
        """WAL, the chosen synchronous level and the busy timeout are set on the connection."""
        store = SQLiteStore(db_path, synchronous=synchronous)
        await store.open()
        try:

            def pragmas(conn: sqlite3.Connection, now: float) -> tuple[Any, ...]:
                return tuple(
                    conn.execute(f"PRAGMA {name}").fetchone()[0]
                    for name in ("journal_mode", "synchronous", "busy_timeout")
                )

            assert await store._call(pragmas, write=False) == ("wal", level, 30_000)
        finally:
            await store.aclose()

    async def test_new_file_gets_schema_version(self, db_path: Path) -> None:
        store = SQLiteStore(db_path)
        await store.open()
        await store.aclose()
        assert read_file(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
        tables = {row[0] for row in read_file(db_path, "SELECT name FROM sqlite_master")}
        assert {"tasks", "tasks_claim", "tasks_delayed", "tasks_running"} <= tables

    async def test_reopen_keeps_tasks(self, db_path: Path) -> None:
        """Opening an existing file again migrates nothing and keeps its tasks."""
        first = SQLiteStore(db_path)
        await first.open()
        (task_id,) = await first.add([new()])
        await first.aclose()
        second = SQLiteStore(db_path)
        await second.open()
        try:
            assert (await get(second, task_id)).status is QUEUED
        finally:
            await second.aclose()
        assert read_file(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]

    async def test_two_stores_share_a_file(self, db_path: Path) -> None:
        """Two open stores on one file see each other's commits."""
        one, two = SQLiteStore(db_path), SQLiteStore(db_path)
        await one.open()
        await two.open()
        try:
            (task_id,) = await one.add([new()])
            assert (await get(two, task_id)).id == task_id
        finally:
            await one.aclose()
            await two.aclose()

    async def test_newer_schema_is_refused(self, db_path: Path) -> None:
        conn = sqlite3.connect(db_path)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 6}")
        conn.close()
        store = SQLiteStore(db_path)
        message = (
            f"SQLite store {str(db_path)!r}: its schema version {SCHEMA_VERSION + 6} is newer"
            f" than this trio_workq supports ({SCHEMA_VERSION}); upgrade trio_workq"
        )
        with pytest.raises(StoreError, match=f"^{re.escape(message)}$"):
            await store.open()
        await store.aclose()

    async def test_missing_directory(self, tmp_path: Path) -> None:
        path = tmp_path / "nowhere" / "tasks.db"
        store = SQLiteStore(path)
        with pytest.raises(StoreError, match=re.escape(f"{str(path)!r}: directory")):
            await store.open()
        await store.aclose()
        assert not path.parent.exists()

    async def test_not_a_database(self, db_path: Path) -> None:
        write_at(db_path, 0, b"not the pages you are looking for\n" * 200)
        store = SQLiteStore(db_path)
        message = f"{str(db_path)!r}: file is not a database"
        with pytest.raises(StoreError, match=re.escape(message)):
            await store.open()
        await store.aclose()

    async def test_a_directory_is_not_a_database(self, tmp_path: Path) -> None:
        store = SQLiteStore(tmp_path)
        with pytest.raises(StoreError, match=re.escape(repr(str(tmp_path)))):
            await store.open()
        await store.aclose()

    async def test_another_applications_database(self, db_path: Path) -> None:
        """A database with tables but no schema version gets no tables of ours."""
        conn = sqlite3.connect(db_path)
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
        conn.close()
        store = SQLiteStore(db_path)
        with pytest.raises(StoreError, match="not a trio_workq database"):
            await store.open()
        await store.aclose()
        assert read_file(db_path, "SELECT name FROM sqlite_master") == [("invoices",)]

    async def test_failed_migration_changes_nothing(
        self, db_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Migrations run in one transaction: one failing statement leaves the file as it was."""
        broken = ((*sqlite_module._MIGRATIONS[0], "CREATE INDEX broken ON missing (x)"),)
        monkeypatch.setattr(sqlite_module, "_MIGRATIONS", broken)
        store = SQLiteStore(db_path)
        with pytest.raises(StoreError, match=re.escape("no such table: main.missing")):
            await store.open()
        await store.aclose()
        assert read_file(db_path, "PRAGMA user_version") == [(0,)]
        assert read_file(db_path, "SELECT name FROM sqlite_master") == []

    async def test_sqlite_too_old(self, db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
        store = SQLiteStore(db_path)
        with pytest.raises(StoreError, match=r"too old \(3\.35\+ needed\)"):
            await store.open()
        await store.aclose()

    @staticmethod
    def _real_database(path: Path) -> tuple[int, int]:
        """Fill *path* with a few thousand tasks; return its page size and page count."""
        conn = sqlite3.connect(path)
        for statement in sqlite_module._MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.executemany(
            sqlite_module._INSERT,
            [("job", b"x" * 100, "queued", 0, 1, None, T0, T0)] * 3000,
        )
        conn.commit()
        page_size: int = conn.execute("PRAGMA page_size").fetchone()[0]
        pages: int = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.close()
        return page_size, pages

    async def test_corrupted_data_pages(self, db_path: Path) -> None:
        """Overwritten table and index pages: reading them raises StoreError naming the file."""
        page_size, pages = self._real_database(db_path)
        # Keep page 1 (header and schema); overwrite every table and index page.
        write_at(db_path, page_size, bytes(range(256)) * (page_size * (pages - 1) // 256))
        store = SQLiteStore(db_path)
        with pytest.raises(StoreError, match=re.escape(f"SQLite store {str(db_path)!r}: ")):
            await store.open()
            await store.counts()
            await store.page(status=None, name=None, limit=1000, cursor=None)
        await store.aclose()

    async def test_corrupted_schema_page(self, db_path: Path) -> None:
        """An overwritten first page (past the header) fails the open, naming the file."""
        self._real_database(db_path)
        write_at(db_path, 100, b"\xa5" * 3000)
        store = SQLiteStore(db_path)
        with pytest.raises(StoreError, match=re.escape(f"SQLite store {str(db_path)!r}: ")):
            await store.open()
        await store.aclose()


class TestLifecycle:
    async def test_open_twice(self, store: SQLiteStore) -> None:
        with pytest.raises(RuntimeError, match="was already opened"):
            await store.open()

    async def test_calls_before_open_and_after_close(self, db_path: Path) -> None:
        store = SQLiteStore(db_path)
        with pytest.raises(StoreError, match="is not open"):
            await store.counts()
        await store.aclose()  # before open: fine
        await store.open()
        await store.aclose()
        await store.aclose()  # twice: fine
        with pytest.raises(StoreError, match=re.escape(f"SQLite store {str(db_path)!r} is closed")):
            await store.add([new()])

    async def test_aclose_finishes_accepted_ops(
        self, store: SQLiteStore, nursery: trio.Nursery
    ) -> None:
        """Ops waiting for the thread when aclose is called still run and commit."""
        ids: list[str] = []

        async def add() -> None:
            ids.extend(await store.add([new()]))

        async with writer_blocked(store, nursery) as release:
            async with trio.open_nursery() as adders:
                for _ in range(5):
                    adders.start_soon(add)
                await wait_pending(store, 5)
                adders.start_soon(store.aclose)
                await trio.sleep(0.01)
                release.set()
        assert len(ids) == 5
        rows = read_file(Path(store.path), "SELECT COUNT(*) FROM tasks")
        assert rows == [(5,)]

    async def test_cancelled_aclose_stops_waiting(
        self, store: SQLiteStore, nursery: trio.Nursery
    ) -> None:
        """A cancelled aclose returns at once; the store refuses new calls from then on."""
        async with writer_blocked(store, nursery):
            with trio.move_on_after(0.05) as scope:
                await store.aclose()
            assert scope.cancelled_caught
            with pytest.raises(StoreError, match="is closed"):
                await store.counts()

    async def test_cancelled_open(self, db_path: Path) -> None:
        """An open cancelled before the thread is ready raises Cancelled; aclose still works."""
        store = SQLiteStore(db_path)
        with trio.CancelScope() as scope:
            scope.cancel()
            await store.open()
        assert scope.cancelled_caught
        await store.aclose()


# --- add ----------------------------------------------------------------------


class TestAdd:
    async def test_ids_in_order_and_row(self, store: SQLiteStore, clock: FakeClock) -> None:
        ids = await store.add(
            [new("a", priority=5, timeout=2.5, max_attempts=4), new("b", payload=b"")]
        )
        assert len(ids) == 2
        assert int(ids[0]) < int(ids[1])
        assert await store.get(ids[0]) == StoredTask(
            id=ids[0],
            name="a",
            payload=b"[1]",
            status=QUEUED,
            priority=5,
            attempts=0,
            max_attempts=4,
            timeout=2.5,
            created_at=clock.now,
            due_at=T0,
            started_at=None,
            finished_at=None,
            owner=None,
            lease_until=None,
            cancel_requested=False,
            result=None,
            errors=(),
        )
        assert (await get(store, ids[1])).payload == b""

    async def test_empty(self, store: SQLiteStore) -> None:
        with trio.testing.assert_checkpoints():
            assert await store.add([]) == []

    async def test_queued_is_due_now(self, store: SQLiteStore) -> None:
        """A queued task's later due_at is lowered to now; a scheduled one keeps it."""
        queued, scheduled = await store.add(
            [new(due_at=T0 + 50), new(due_at=T0 + 50, status=SCHEDULED)]
        )
        assert (await get(store, queued)).due_at == T0
        assert (await get(store, scheduled)).due_at == T0 + 50

    async def test_ids_never_reused(self, store: SQLiteStore, clock: FakeClock) -> None:
        """After the newest task is purged, a new task still gets a new id."""
        (first,) = await store.add([new()])
        assert await store.cancel(first) is QUEUED
        clock.now += 10
        assert await store.purge_finished(clock.now) == 1
        (second,) = await store.add([new()])
        assert int(second) > int(first)

    @pytest.mark.parametrize(
        ("task", "error", "message"),
        [
            ("not a task", TypeError, "expected a NewTask, not str"),
            (new(name=""), ValueError, "name must not be empty"),
            (NewTask(1, b"", 0, T0, 1, None, QUEUED), TypeError, "name must be a str"),  # type: ignore[arg-type]
            (new(payload="x"), TypeError, "payload must be bytes"),  # type: ignore[arg-type]
            (new(priority=True), TypeError, "priority must be an int"),
            (new(priority=1.5), TypeError, "priority must be an int"),  # type: ignore[arg-type]
            (new(priority=2**63), ValueError, "priority must be in"),
            (new(max_attempts=0), ValueError, "max_attempts must be in 1.."),
            (new(due_at=math.nan), ValueError, "due_at must be finite"),
            (new(due_at=math.inf), ValueError, "due_at must be finite"),
            (new(due_at="now"), TypeError, "due_at must be a number"),  # type: ignore[arg-type]
            (new(timeout=0), ValueError, "timeout must be > 0"),
            (new(timeout=-1.0), ValueError, "timeout must be > 0"),
            (new(timeout=math.nan), ValueError, "timeout must be finite"),
            (new(status=RUNNING), ValueError, "a new task is queued or scheduled, not running"),
        ],
    )
    async def test_bad_task_adds_nothing(
        self, store: SQLiteStore, task: Any, error: type[Exception], message: str
    ) -> None:
        """One bad task in a batch: the error names it and no task of the batch is stored."""
        with pytest.raises(error, match=re.escape(message)):
            await store.add([new(), task])
        assert sum((await store.counts()).values()) == 0


# --- claim ----------------------------------------------------------------------


class TestClaim:
    async def test_order_and_fields(self, store: SQLiteStore, clock: FakeClock) -> None:
        """Highest priority first, then earliest due, then oldest; each leased to the owner."""
        ids = await store.add(
            [
                new("low"),
                new("high-later", priority=9, due_at=T0 - 1, status=SCHEDULED),
                new("high-earlier", priority=9, due_at=T0 - 5, status=SCHEDULED),
                new("mid", priority=5),
                new("mid-2", priority=5),
            ]
        )
        clock.now += 1
        claimed = await store.claim(OWNER, 4, 30.0)
        assert [task.name for task in claimed.tasks] == [
            "high-earlier",
            "high-later",
            "mid",
            "mid-2",
        ]
        for task in claimed.tasks:
            assert task.status is RUNNING
            assert task.attempts == 1
            assert task.owner == OWNER
            assert task.lease_until == clock.now + 30.0
            assert task.started_at == clock.now
        assert claimed.next_due is None
        assert (await get(store, ids[0])).status is QUEUED
        assert (await get(store, ids[4])).status is RUNNING

    async def test_due_only_and_next_due(self, store: SQLiteStore, clock: FakeClock) -> None:
        """Tasks not due yet stay; next_due is the earliest of them."""
        later, soon = await store.add(
            [new(due_at=T0 + 20, status=SCHEDULED), new(due_at=T0 + 10, status=SCHEDULED)]
        )
        assert await store.claim(OWNER, 10, 30.0) == Claimed((), T0 + 10)
        clock.now = T0 + 10
        claimed = await store.claim(OWNER, 10, 30.0)
        assert [task.id for task in claimed.tasks] == [soon]
        assert claimed.next_due == T0 + 20
        clock.now = T0 + 25
        assert [task.id for task in (await store.claim(OWNER, 10, 30.0)).tasks] == [later]

    async def test_nothing(self, store: SQLiteStore) -> None:
        with trio.testing.assert_checkpoints():
            assert await store.claim(OWNER, 10, 30.0) == Claimed((), None)

    @pytest.mark.parametrize(
        ("owner", "limit", "lease", "error", "message"),
        [
            ("", 1, 30.0, ValueError, "owner must not be empty"),
            (None, 1, 30.0, TypeError, "owner must be a str"),
            (OWNER, 0, 30.0, ValueError, "limit must be in 1.."),
            (OWNER, True, 30.0, TypeError, "limit must be an int"),
            (OWNER, 1, 0.0, ValueError, "lease_seconds must be > 0"),
            (OWNER, 1, math.nan, ValueError, "lease_seconds must be finite"),
        ],
    )
    async def test_bad_input(
        self,
        store: SQLiteStore,
        owner: Any,
        limit: Any,
        lease: float,
        error: type[Exception],
        message: str,
    ) -> None:
        await store.add([new()])
        with pytest.raises(error, match=re.escape(message)):
            await store.claim(owner, limit, lease)
        assert (await store.counts())[QUEUED] == 1


# --- renew ----------------------------------------------------------------------


class TestRenew:
    async def test_extends_held_and_reports_the_rest(
        self, store: SQLiteStore, clock: FakeClock
    ) -> None:
        held_id, cancel_id, other_id, done_id = await store.add([new() for _ in range(4)])
        for _ in range(2):
            await claim_one(store)
        other = await claim_one(store, owner="worker-2")
        done = await claim_one(store)
        assert await store.complete(OWNER, done_id, done.attempts, b"")
        assert await store.cancel(cancel_id) is RUNNING
        clock.now += 5
        renewal = await store.renew(
            OWNER, [held_id, cancel_id, other.id, done_id, "999", "bogus"], 60.0
        )
        assert renewal == Renewal(
            lost=frozenset({other_id, done_id, "999", "bogus"}),
            cancel_requested=frozenset({cancel_id}),
        )
        assert (await get(store, held_id)).lease_until == clock.now + 60.0
        assert (await get(store, other_id)).lease_until == T0 + 30.0

    async def test_many_ids(self, store: SQLiteStore) -> None:
        """More ids than one statement binds are renewed in chunks."""
        await store.add([new() for _ in range(1200)])
        claimed = await store.claim(OWNER, 1200, 30.0)
        renewal = await store.renew(OWNER, [task.id for task in claimed.tasks], 60.0)
        assert renewal == Renewal(frozenset(), frozenset())

    async def test_empty(self, store: SQLiteStore) -> None:
        with trio.testing.assert_checkpoints():
            assert await store.renew(OWNER, [], 30.0) == Renewal(frozenset(), frozenset())

    async def test_bad_input(self, store: SQLiteStore) -> None:
        with pytest.raises(ValueError, match="owner must not be empty"):
            await store.renew("", ["1"], 30.0)
        with pytest.raises(ValueError, match="lease_seconds must be > 0"):
            await store.renew(OWNER, ["1"], -1.0)
        with pytest.raises(TypeError, match="task id must be a str, not int"):
            await store.renew(OWNER, [1], 30.0)  # type: ignore[list-item]


# --- the conditional writes of a worker ---------------------------------------------


class TestHeldWrites:
    async def test_complete(self, store: SQLiteStore, clock: FakeClock) -> None:
        (task_id,) = await store.add([new()])
        task = await claim_one(store)
        clock.now += 3
        assert await store.complete(OWNER, task_id, task.attempts, b"42")
        done = await get(store, task_id)
        assert (done.status, done.result, done.finished_at) == (COMPLETED, b"42", clock.now)
        assert (done.owner, done.lease_until) == (None, None)
        assert not await store.complete(OWNER, task_id, task.attempts, b"43")
        assert (await get(store, task_id)).result == b"42"

    async def test_complete_many(self, store: SQLiteStore, clock: FakeClock) -> None:
        a, b, c = await store.add([new(), new(), new()])
        assert len((await store.claim(OWNER, 3, 30.0)).tasks) == 3
        clock.now += 3
        flags = await store.complete_many(
            OWNER,
            [(a, 1, b"1"), (b, 2, b"x"), (c, 1, b"3"), ("999", 1, b""), ("nope", 1, b"")],
        )
        assert flags == [True, False, True, False, False]
        for task_id, result in ((a, b"1"), (c, b"3")):
            done = await get(store, task_id)
            assert (done.status, done.result, done.finished_at) == (COMPLETED, result, clock.now)
            assert (done.owner, done.lease_until) == (None, None)
        assert (await get(store, b)).status is RUNNING  # the wrong attempt changed nothing
        assert await store.complete_many(OWNER, [(a, 1, b"again")]) == [False]
        assert (await get(store, a)).result == b"1"
        assert await store.complete_many(OWNER, []) == []

    async def test_complete_many_bad_input_changes_nothing(self, store: SQLiteStore) -> None:
        a, b = await store.add([new(), new()])
        assert len((await store.claim(OWNER, 2, 30.0)).tasks) == 2
        bad: list[tuple[str, list[Any], type[Exception], str]] = [
            ("", [(a, 1, b"")], ValueError, "owner must not be empty"),
            (OWNER, [(a, 1, b""), (b, 0, b"")], ValueError, "attempt must be in 1.."),
            (OWNER, [(a, 1, b""), (b, 1, "r")], TypeError, "result must be bytes"),
            (OWNER, [(a, 1, b""), (2, 1, b"")], TypeError, "task id must be a str"),
        ]
        for owner, items, error, message in bad:
            with pytest.raises(error, match=message):
                await store.complete_many(owner, items)
        assert [(await get(store, task_id)).status for task_id in (a, b)] == [RUNNING, RUNNING]

    async def test_fail_with_retry(self, store: SQLiteStore, clock: FakeClock) -> None:
        (task_id,) = await store.add([new()])
        await claim_one(store)
        assert await store.fail(OWNER, task_id, 1, "ValueError: boom", T0 + 60)
        task = await get(store, task_id)
        assert (task.status, task.due_at, task.errors) == (RETRYING, T0 + 60, ("ValueError: boom",))
        assert (task.owner, task.lease_until, task.finished_at) == (None, None, None)
        assert (await store.claim(OWNER, 1, 30.0)).next_due == T0 + 60
        clock.now = T0 + 60
        assert (await claim_one(store)).attempts == 2

    async def test_fail_for_good(self, store: SQLiteStore, clock: FakeClock) -> None:
        (task_id,) = await store.add([new()])
        await claim_one(store)
        assert await store.fail(OWNER, task_id, 1, "boom", None)
        task = await get(store, task_id)
        assert (task.status, task.finished_at, task.errors) == (FAILED, clock.now, ("boom",))

    async def test_errors_keep_the_last_ten(self, store: SQLiteStore) -> None:
        (task_id,) = await store.add([new(max_attempts=100)])
        for attempt in range(1, MAX_ERRORS + 3):
            assert (await claim_one(store)).attempts == attempt
            assert await store.fail(OWNER, task_id, attempt, f"error {attempt}", T0)
        errors = (await get(store, task_id)).errors
        assert errors == tuple(f"error {n}" for n in range(3, MAX_ERRORS + 3))

    async def test_cancel_wins_only_over_requeueing(self, store: SQLiteStore) -> None:
        """A failed target stays failed under a cancel request (as in memory); a retry does not."""
        (task_id,) = await store.add([new()])
        await claim_one(store)
        assert await store.cancel(task_id) is RUNNING
        assert await store.fail(OWNER, task_id, 1, "cleanup failed", None) is FAILED
        task = await get(store, task_id)
        assert (task.status, task.errors) == (FAILED, ("cleanup failed",))

    async def test_finish_cancelled(self, store: SQLiteStore, clock: FakeClock) -> None:
        (task_id,) = await store.add([new()])
        await claim_one(store)
        assert await store.cancel(task_id) is RUNNING
        assert await store.finish_cancelled(OWNER, task_id, 1)
        task = await get(store, task_id)
        assert (task.status, task.finished_at, task.owner) == (CANCELLED, clock.now, None)

    async def test_release(self, store: SQLiteStore, clock: FakeClock) -> None:
        """A released task is queued and due now; its interrupted attempt does not count."""
        (task_id,) = await store.add([new(due_at=T0 - 100, status=SCHEDULED)])
        await claim_one(store)
        clock.now += 7
        assert await store.release(OWNER, task_id, 1)
        task = await get(store, task_id)
        assert (task.status, task.attempts, task.due_at) == (QUEUED, 0, clock.now)
        assert (task.owner, task.lease_until, task.finished_at) == (None, None, None)
        assert (await claim_one(store)).attempts == 1

    async def test_cancel_requested_is_never_claimable_again(self, store: SQLiteStore) -> None:
        """A cancel requested while running wins over a release and over a retry."""
        released, retried = await store.add([new(), new()])
        await store.claim(OWNER, 2, 30.0)
        assert await store.cancel(released) is RUNNING
        assert await store.cancel(retried) is RUNNING
        assert await store.release(OWNER, released, 1) is CANCELLED
        assert await store.fail(OWNER, retried, 1, "boom", T0) is CANCELLED
        assert (await get(store, released)).status is CANCELLED
        task = await get(store, retried)
        assert (task.status, task.errors) == (CANCELLED, ("boom",))
        assert (await store.claim(OWNER, 10, 30.0)).tasks == ()

    @pytest.mark.parametrize(
        ("owner", "attempt", "task_id"),
        [("worker-2", 1, None), (OWNER, 2, None), (OWNER, 1, "999"), (OWNER, 1, "x")],
    )
    @pytest.mark.parametrize("method", ["complete", "fail", "finish_cancelled", "release"])
    async def test_not_held_changes_nothing(
        self,
        store: SQLiteStore,
        clock: FakeClock,
        method: str,
        owner: str,
        attempt: int,
        task_id: str | None,
    ) -> None:
        """Another owner, another attempt or an unknown id: False, and the row is unchanged."""
        (held,) = await store.add([new()])
        await claim_one(store)
        before = await get(store, held)
        clock.now += 1
        target = held if task_id is None else task_id
        calls: dict[str, Callable[[], Any]] = {
            "complete": lambda: store.complete(owner, target, attempt, b""),
            "fail": lambda: store.fail(owner, target, attempt, "e", None),
            "finish_cancelled": lambda: store.finish_cancelled(owner, target, attempt),
            "release": lambda: store.release(owner, target, attempt),
        }
        with trio.testing.assert_checkpoints():
            assert not await calls[method]()  # False, or None for fail and release
        assert await store.get(held) == before

    @pytest.mark.parametrize("method", ["complete", "fail", "finish_cancelled", "release"])
    async def test_finished_task_is_not_held(self, store: SQLiteStore, method: str) -> None:
        """Once completed, no conditional write changes the row any more."""
        (task_id,) = await store.add([new()])
        await claim_one(store)
        assert await store.complete(OWNER, task_id, 1, b"done")
        before = await get(store, task_id)
        calls: dict[str, Callable[[], Any]] = {
            "complete": lambda: store.complete(OWNER, task_id, 1, b""),
            "fail": lambda: store.fail(OWNER, task_id, 1, "e", T0),
            "finish_cancelled": lambda: store.finish_cancelled(OWNER, task_id, 1),
            "release": lambda: store.release(OWNER, task_id, 1),
        }
        assert not await calls[method]()  # False, or None for fail and release
        assert await store.get(task_id) == before

    async def test_bad_input(self, store: SQLiteStore) -> None:
        (task_id,) = await store.add([new()])
        await claim_one(store)
        cases: list[tuple[Callable[[], Any], type[Exception], str]] = [
            (lambda: store.complete("", task_id, 1, b""), ValueError, "owner must not be empty"),
            (lambda: store.complete(OWNER, task_id, 0, b""), ValueError, "attempt must be in 1.."),
            (
                lambda: store.complete(OWNER, task_id, 1, "r"),  # type: ignore[arg-type]
                TypeError,
                "result must be bytes",
            ),
            (
                lambda: store.complete(OWNER, 1, 1, b""),  # type: ignore[arg-type]
                TypeError,
                "task id must be a str",
            ),
            (
                lambda: store.fail(OWNER, task_id, 1, None, None),  # type: ignore[arg-type]
                TypeError,
                "error must be a str",
            ),
            (
                lambda: store.fail(OWNER, task_id, 1, "e", math.inf),
                ValueError,
                "retry_at must be finite",
            ),
            (lambda: store.release(OWNER, task_id, True), TypeError, "attempt must be an int"),
            (lambda: store.finish_cancelled(OWNER, task_id, -1), ValueError, "attempt must be"),
        ]
        for call, error, message in cases:
            with pytest.raises(error, match=re.escape(message)):
                await call()
        assert (await get(store, task_id)).status is RUNNING


# --- cancel and requeue -----------------------------------------------------------


class TestCancelRequeue:
    async def test_cancel_each_status(self, store: SQLiteStore, clock: FakeClock) -> None:
        """Waiting tasks are cancelled at once, a running one is asked, a finished one stays."""
        retrying, running, completed = await store.add([new(), new(), new()])
        await store.claim(OWNER, 3, 30.0)
        assert await store.fail(OWNER, retrying, 1, "e", T0 + 50)
        assert await store.complete(OWNER, completed, 1, b"")
        queued, scheduled = await store.add([new(), new(status=SCHEDULED, due_at=T0 + 99)])
        clock.now += 1
        before = {
            queued: QUEUED,
            scheduled: SCHEDULED,
            retrying: RETRYING,
            running: RUNNING,
            completed: COMPLETED,
        }
        for task_id, status in before.items():
            assert await store.cancel(task_id) is status
        for task_id in (queued, scheduled, retrying):
            task = await get(store, task_id)
            assert (task.status, task.finished_at) == (CANCELLED, clock.now)
        assert (await get(store, completed)).status is COMPLETED
        still_running = await get(store, running)
        assert (still_running.status, still_running.cancel_requested) == (RUNNING, True)
        assert await store.cancel(running) is RUNNING  # asking twice is harmless

    async def test_cancel_unknown(self, store: SQLiteStore) -> None:
        assert await store.cancel("12345") is None
        with trio.testing.assert_checkpoints():
            assert await store.cancel("not-an-id") is None
        with pytest.raises(TypeError, match="task id must be a str"):
            await store.cancel(7)  # type: ignore[arg-type]

    async def test_requeue_failed(self, store: SQLiteStore, clock: FakeClock) -> None:
        """A failed task with no attempts left gets exactly one more."""
        (task_id,) = await store.add([new(max_attempts=1)])
        await claim_one(store)
        assert await store.fail(OWNER, task_id, 1, "boom", None)
        clock.now += 5
        assert await store.requeue(task_id) is FAILED
        task = await get(store, task_id)
        assert (task.status, task.due_at, task.finished_at) == (QUEUED, clock.now, None)
        assert (task.attempts, task.max_attempts, task.errors) == (1, 2, ("boom",))
        assert (await claim_one(store)).attempts == 2

    async def test_requeue_keeps_unused_attempts(self, store: SQLiteStore) -> None:
        (task_id,) = await store.add([new(max_attempts=5)])
        assert await store.cancel(task_id) is QUEUED
        assert await store.requeue(task_id) is CANCELLED
        task = await get(store, task_id)
        assert (task.status, task.max_attempts, task.attempts) == (QUEUED, 5, 0)

    async def test_requeue_clears_cancel_request(self, store: SQLiteStore) -> None:
        (task_id,) = await store.add([new()])
        await claim_one(store)
        await store.cancel(task_id)
        assert await store.finish_cancelled(OWNER, task_id, 1)
        assert await store.requeue(task_id) is CANCELLED
        assert (await get(store, task_id)).cancel_requested is False
        assert (await claim_one(store)).id == task_id

    async def test_requeue_other_statuses_unchanged(self, store: SQLiteStore) -> None:
        queued, running, completed = await store.add([new(), new(), new()])
        await store.claim(OWNER, 3, 30.0)
        assert await store.complete(OWNER, completed, 1, b"")
        assert await store.release(OWNER, queued, 1)
        for task_id, status in ((queued, QUEUED), (running, RUNNING), (completed, COMPLETED)):
            before = await get(store, task_id)
            assert await store.requeue(task_id) is status
            assert await store.get(task_id) == before

    async def test_requeue_unknown(self, store: SQLiteStore) -> None:
        assert await store.requeue("777") is None
        assert await store.requeue("0") is None


# --- get, page, counts ------------------------------------------------------------


class TestRead:
    @pytest.mark.parametrize(
        "bad", ["", "0", "01", "-1", "+1", " 1", "1_0", "x", "\u0661", "9" * 20, "9" * 19]
    )
    async def test_get_ids_never_made(self, store: SQLiteStore, bad: str) -> None:
        """Strings that are not a canonical positive id are unknown, not errors."""
        await store.add([new()])
        with trio.testing.assert_checkpoints():
            assert await store.get(bad) is None

    async def test_get_unknown(self, store: SQLiteStore) -> None:
        assert await store.get("424242") is None

    async def test_page_through_everything(self, store: SQLiteStore) -> None:
        ids = await store.add([new(str(n)) for n in range(7)])
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            page = await store.page(status=None, name=None, limit=3, cursor=cursor)
            seen += [task.id for task in page.tasks]
            pages += 1
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == ids[::-1]
        assert pages == 3

    async def test_page_exactly_full(self, store: SQLiteStore) -> None:
        """A last page that is exactly full has no next cursor."""
        await store.add([new() for _ in range(3)])
        page = await store.page(status=None, name=None, limit=3, cursor=None)
        assert (len(page.tasks), page.next_cursor) == (3, None)

    async def test_page_filters(self, store: SQLiteStore) -> None:
        a1, b1, a2, a3 = await store.add([new("a"), new("b"), new("a"), new("a")])
        await claim_one(store)  # a1 runs
        by_name = await store.page(status=None, name="a", limit=10, cursor=None)
        assert [task.id for task in by_name.tasks] == [a3, a2, a1]
        queued_a = await store.page(status=QUEUED, name="a", limit=1, cursor=None)
        assert [task.id for task in queued_a.tasks] == [a3]
        assert queued_a.next_cursor is not None
        rest = await store.page(status=QUEUED, name="a", limit=1, cursor=queued_a.next_cursor)
        assert ([task.id for task in rest.tasks], rest.next_cursor) == ([a2], None)
        running = await store.page(status=RUNNING, name=None, limit=10, cursor=None)
        assert [task.id for task in running.tasks] == [a1]
        assert (await store.page(status=None, name="c", limit=10, cursor=None)).tasks == ()
        assert b1 not in {task.id for task in by_name.tasks}

    @pytest.mark.parametrize(
        ("kwargs", "error", "message"),
        [
            ({"limit": 0}, ValueError, "limit must be in 1..1000, not 0"),
            ({"limit": 1001}, ValueError, "limit must be in 1..1000, not 1001"),
            ({"limit": True}, TypeError, "limit must be an int"),
            ({"cursor": "abc"}, ValueError, "malformed cursor 'abc'"),
            ({"cursor": "0"}, ValueError, "malformed cursor '0'"),
            ({"cursor": "-5"}, ValueError, "malformed cursor '-5'"),
            ({"cursor": 5}, TypeError, "task id must be a str"),
            ({"status": "queued"}, TypeError, "status must be a TaskStatus or None"),
            ({"name": 3}, TypeError, "name must be a str"),
        ],
    )
    async def test_page_bad_input(
        self, store: SQLiteStore, kwargs: dict[str, Any], error: type[Exception], message: str
    ) -> None:
        arguments: dict[str, Any] = {"status": None, "name": None, "limit": 10, "cursor": None}
        arguments.update(kwargs)
        with pytest.raises(error, match=re.escape(message)):
            await store.page(**arguments)

    async def test_counts(self, store: SQLiteStore) -> None:
        assert await store.counts() == dict.fromkeys(TaskStatus, 0)
        a, b, _, _ = await store.add([new(), new(), new(), new(status=SCHEDULED, due_at=T0 + 9)])
        await store.claim(OWNER, 2, 30.0)
        assert await store.complete(OWNER, a, 1, b"")
        counts = await store.counts()
        assert counts == {
            **dict.fromkeys(TaskStatus, 0),
            COMPLETED: 1,
            RUNNING: 1,
            QUEUED: 1,
            SCHEDULED: 1,
        }
        assert (await get(store, b)).status is RUNNING


# --- lease recovery and purge -------------------------------------------------------


class TestRecover:
    async def test_expired_leases(self, store: SQLiteStore, clock: FakeClock) -> None:
        """Expired: retried if attempts are left, else failed; fresh or finished rows stay."""
        retry_id, exhausted_id, fresh_id, done_id = await store.add(
            [new(max_attempts=3), new(max_attempts=1), new(), new()]
        )
        await store.claim(OWNER, 2, 10.0)  # retry_id and exhausted_id: lease until T0 + 10
        clock.now = T0 + 5
        await store.claim(OWNER, 2, 100.0)  # fresh_id and done_id: lease until T0 + 105
        clock.now = T0 + 200  # every lease has run out...
        assert await store.complete(OWNER, done_id, 1, b"")  # ...but this one finished first
        fresh_before = await get(store, fresh_id)
        assert await store.renew(OWNER, [fresh_id], 100.0) == Renewal(frozenset(), frozenset())
        fresh_before = await get(store, fresh_id)
        done_before = await get(store, done_id)

        assert await recover_expired(store, "lease expired", now=clock.now) == 2

        retried = await get(store, retry_id)
        assert (retried.status, retried.due_at, retried.attempts) == (RETRYING, clock.now, 1)
        assert (retried.owner, retried.lease_until, retried.finished_at) == (None, None, None)
        assert retried.errors == ("lease expired",)
        exhausted = await get(store, exhausted_id)
        assert (exhausted.status, exhausted.finished_at) == (FAILED, clock.now)
        assert exhausted.errors == ("lease expired",)
        assert await store.get(fresh_id) == fresh_before
        assert await store.get(done_id) == done_before
        # The retried attempt counted: the next claim runs attempt 2.
        assert (await claim_one(store)).attempts == 2
        assert await recover_expired(store, "again", now=clock.now) == 0

    async def test_target_applied_only_while_the_expired_holder_holds(
        self, store: SQLiteStore, clock: FakeClock
    ) -> None:
        """A row renewed or finished between `expired` and `recover` is left alone."""
        renewed, finished, wrong = await store.add([new(), new(), new()])
        await store.claim(OWNER, 3, 1.0)
        clock.now += 2
        rows = {row.id: row for row in await store.expired(10)}
        assert set(rows) == {renewed, finished, wrong}
        assert await store.renew(OWNER, [renewed], 30.0) == Renewal(frozenset(), frozenset())
        assert await store.complete(OWNER, finished, 1, b"")
        targets = [
            Recovery(renewed, OWNER, 1, RETRYING, "lost", clock.now),
            Recovery(finished, OWNER, 1, RETRYING, "lost", clock.now),
            Recovery(wrong, "someone-else", 1, FAILED, "lost", None),
            Recovery(wrong, OWNER, 2, FAILED, "lost", None),
        ]
        assert await store.recover(targets) == 0
        assert (await get(store, renewed)).status is RUNNING
        assert (await get(store, finished)).status is COMPLETED
        assert (await get(store, wrong)).status is RUNNING
        assert await store.recover([Recovery(wrong, OWNER, 1, FAILED, "lost", None)]) == 1
        assert (await get(store, wrong)).status is FAILED

    async def test_cancel_requested_ends_cancelled(
        self, store: SQLiteStore, clock: FakeClock
    ) -> None:
        (task_id,) = await store.add([new()])
        await claim_one(store, lease=1.0)
        await store.cancel(task_id)
        clock.now += 2
        assert await recover_expired(store, "lease expired", now=clock.now) == 1
        task = await get(store, task_id)
        assert (task.status, task.finished_at) == (CANCELLED, clock.now)

    async def test_lost_worker_cannot_write(self, store: SQLiteStore, clock: FakeClock) -> None:
        """After recovery and a new claim, the old attempt's completion is refused."""
        (task_id,) = await store.add([new()])
        await claim_one(store, owner="old", lease=1.0)
        clock.now += 2
        assert await recover_expired(store, "lease expired", now=clock.now) == 1
        new_attempt = await claim_one(store, owner="old")
        assert new_attempt.attempts == 2
        assert not await store.complete("old", task_id, 1, b"stale")
        assert await store.complete("old", task_id, 2, b"fresh")
        assert (await get(store, task_id)).result == b"fresh"

    async def test_bad_error(self, store: SQLiteStore) -> None:
        bad_error = Recovery("1", OWNER, 1, TaskStatus.FAILED, None, None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="error must be a str"):
            await store.recover([bad_error])
        with pytest.raises(ValueError, match="needs a due_at"):
            await store.recover([Recovery("1", OWNER, 1, TaskStatus.RETRYING, "e", None)])
        with pytest.raises(ValueError, match="a recovered task becomes"):
            await store.recover([Recovery("1", OWNER, 1, TaskStatus.QUEUED, "e", None)])


class TestPurge:
    async def test_purges_old_finished_only(self, store: SQLiteStore, clock: FakeClock) -> None:
        done, failed, cancelled, recent, running, queued = await store.add(
            [new() for _ in range(6)]
        )
        await store.claim(OWNER, 5, 30.0)
        assert await store.complete(OWNER, done, 1, b"")
        assert await store.fail(OWNER, failed, 1, "e", None)
        assert await store.finish_cancelled(OWNER, cancelled, 1)
        clock.now += 100
        assert await store.complete(OWNER, recent, 1, b"")
        assert await store.purge_finished(T0 + 50) == 3
        page = await store.page(status=None, name=None, limit=10, cursor=None)
        remaining = {task.id for task in page.tasks}
        assert remaining == {recent, running, queued}

    async def test_bad_input(self, store: SQLiteStore) -> None:
        with pytest.raises(ValueError, match="older_than must be finite"):
            await store.purge_finished(math.nan)


# --- wait_for_work ------------------------------------------------------------------


class TestWaitForWork:
    async def test_times_out(self, store: SQLiteStore) -> None:
        start = trio.current_time()
        await store.wait_for_work(0.05)
        assert trio.current_time() - start >= 0.05

    async def test_add_wakes_at_once(self, store: SQLiteStore, nursery: trio.Nursery) -> None:
        woke = trio.Event()

        async def waiter() -> None:
            await store.wait_for_work(30.0)
            woke.set()

        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        await store.add([new()])
        with trio.fail_after(5):
            await woke.wait()

    async def test_wake_up_is_kept_until_taken(self, store: SQLiteStore) -> None:
        """An add before the wait is not missed; once taken, the next wait times out."""
        await store.add([new()])
        with trio.fail_after(5):
            await store.wait_for_work(30.0)
        start = trio.current_time()
        await store.wait_for_work(0.05)
        assert trio.current_time() - start >= 0.05

    @pytest.mark.parametrize("call", ["release", "requeue", "recover", "retry"])
    async def test_other_new_work_wakes(
        self, store: SQLiteStore, clock: FakeClock, call: str
    ) -> None:
        (task_id,) = await store.add([new(max_attempts=5)])
        await claim_one(store, lease=1.0)
        await store.wait_for_work(0)  # take the add's wake-up
        if call == "release":
            assert await store.release(OWNER, task_id, 1)
        elif call == "requeue":
            assert await store.fail(OWNER, task_id, 1, "e", None)
            await store.wait_for_work(0)
            assert await store.requeue(task_id) is FAILED
        elif call == "recover":
            clock.now += 5
            assert await recover_expired(store, "gone", now=clock.now) == 1
        else:
            assert await store.fail(OWNER, task_id, 1, "e", T0 + 1)
        with trio.fail_after(5):
            await store.wait_for_work(30.0)

    @pytest.mark.parametrize("bad", [-1.0, math.nan])
    async def test_bad_timeout(self, store: SQLiteStore, bad: float) -> None:
        with pytest.raises(ValueError, match="timeout must be >= 0"):
            await store.wait_for_work(bad)


# --- the writer thread: group commit, failures, cancellation --------------------------


class TestWriterThread:
    async def test_concurrent_adds_share_commits(self, store: SQLiteStore) -> None:
        """Many trio tasks adding at once need fewer transactions than operations."""
        commits = store._commits
        async with trio.open_nursery() as nursery:
            for _ in range(200):
                nursery.start_soon(store.add, [new()])
        assert (await store.counts())[QUEUED] == 200
        assert store._commits - commits < 200

    async def test_waiting_ops_form_one_transaction(
        self, store: SQLiteStore, nursery: trio.Nursery
    ) -> None:
        commits = store._commits
        async with writer_blocked(store, nursery) as release:
            async with trio.open_nursery() as adders:
                for _ in range(50):
                    adders.start_soon(store.add, [new()])
                await wait_pending(store, 50)
                release.set()
        assert store._commits - commits == 1
        assert (await store.counts())[QUEUED] == 50

    async def test_a_failing_op_fails_only_its_caller(
        self, store: SQLiteStore, nursery: trio.Nursery
    ) -> None:
        """An op that wrote and then failed is undone; the others in its group commit."""

        def insert_then_fail(conn: sqlite3.Connection, now: float) -> None:
            conn.execute(sqlite_module._INSERT, ("bad", b"", "queued", 0, 1, None, now, now))
            raise KeyError("bug in an op")

        def read_fails(conn: sqlite3.Connection, now: float) -> None:
            conn.execute("SELECT nonsense FROM tasks")

        ids: list[str] = []
        errors: list[BaseException] = []

        async def good() -> None:
            ids.extend(await store.add([new("good")]))

        async def bad(op: Callable[[sqlite3.Connection, float], None], write: bool) -> None:
            try:
                await store._call(op, write=write)
            except (KeyError, StoreError) as exc:
                errors.append(exc)

        async with writer_blocked(store, nursery) as release:
            async with trio.open_nursery() as callers:
                for n in range(6):
                    callers.start_soon(good)
                    if n == 2:
                        callers.start_soon(bad, insert_then_fail, True)
                    if n == 4:
                        callers.start_soon(bad, read_fails, False)
                await wait_pending(store, 8)
                release.set()
        assert len(ids) == 6
        assert sorted(type(exc).__name__ for exc in errors) == ["KeyError", "StoreError"]
        assert any("no such column: nonsense" in str(exc) for exc in errors)
        page = await store.page(status=None, name=None, limit=100, cursor=None)
        assert sorted(task.name for task in page.tasks) == ["good"] * 6

    async def test_failed_commit_fails_the_group(
        self, store: SQLiteStore, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A COMMIT that fails fails every op of its group, and stores none of them."""
        failures = 0

        def commit(conn: sqlite3.Connection) -> None:
            nonlocal failures
            if conn.total_changes == changes_before:  # the blocking read-only group
                conn.execute("COMMIT")
                return
            failures += 1
            raise sqlite3.OperationalError("disk I/O error")

        errors: list[StoreError] = []

        async def add() -> None:
            try:
                await store.add([new()])
            except StoreError as exc:
                errors.append(exc)

        def total_changes(conn: sqlite3.Connection, now: float) -> int:
            return conn.total_changes

        changes_before = await store._call(total_changes, write=False)
        async with writer_blocked(store, nursery) as release:
            async with trio.open_nursery() as adders:
                for _ in range(5):
                    adders.start_soon(add)
                await wait_pending(store, 5)
                monkeypatch.setattr(store, "_commit", commit)
                release.set()
        assert failures == 1
        assert len(errors) == 5
        for error in errors:
            assert str(error) == f"SQLite store {store.path!r}: disk I/O error"
        monkeypatch.undo()
        assert await store.counts() == dict.fromkeys(TaskStatus, 0)
        assert len(await store.add([new()])) == 1

    async def test_busy_database(
        self, db_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Another process holding the write lock past the busy timeout fails the group."""
        monkeypatch.setattr(sqlite_module, "BUSY_TIMEOUT_SECONDS", 0.05)
        store = SQLiteStore(db_path)
        await store.open()
        try:
            other = sqlite3.connect(db_path, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            message = f"{str(db_path)!r}: database is locked"
            with pytest.raises(StoreError, match=re.escape(message)):
                await store.add([new()])
            other.execute("ROLLBACK")
            other.close()
            assert len(await store.add([new()])) == 1
        finally:
            await store.aclose()

    async def test_thread_death_fails_callers(
        self, store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If the writer thread dies, the waiting caller and every later one get StoreError."""

        def explode(conn: sqlite3.Connection, batch: list[Any]) -> None:
            raise RuntimeError("kaboom")

        monkeypatch.setattr(store, "_run_batch", explode)
        with pytest.raises(StoreError, match=r"writer thread died: RuntimeError\('kaboom'\)"):
            await store.counts()
        with pytest.raises(StoreError, match="writer thread died"):
            await store.add([new()])
        await store.aclose()

    async def test_cancel_while_waiting_undoes_nothing(
        self, store: SQLiteStore, nursery: trio.Nursery
    ) -> None:
        """A caller cancelled before the thread takes its op raises Cancelled; the op never runs."""
        async with writer_blocked(store, nursery):
            with trio.move_on_after(0.05) as scope:
                await store.add([new()])
        assert scope.cancelled_caught
        assert store._pending == []
        assert await store.counts() == dict.fromkeys(TaskStatus, 0)

    async def test_cancel_after_hand_over_commits(
        self, store: SQLiteStore, nursery: trio.Nursery
    ) -> None:
        """Once the thread has an op, its caller waits for the result, then is cancelled."""
        entered = threading.Event()
        release = threading.Event()

        def insert_slowly(conn: sqlite3.Connection, now: float) -> int:
            entered.set()
            release.wait(10)
            row = conn.execute(sqlite_module._INSERT, ("slow", b"", "queued", 0, 1, None, now, now))
            return row.lastrowid or 0

        results: list[int] = []
        with trio.CancelScope() as scope:

            async def cancel_when_entered() -> None:
                await trio.to_thread.run_sync(entered.wait)
                scope.cancel()
                await trio.sleep(0.02)
                release.set()

            nursery.start_soon(cancel_when_entered)
            results.append(await store._call(insert_slowly, write=True))
            await trio.lowlevel.checkpoint()
        assert scope.cancelled_caught
        assert len(results) == 1
        assert (await get(store, str(results[0]))).name == "slow"

    async def test_cancelled_before_submitting(self, store: SQLiteStore) -> None:
        with trio.CancelScope() as scope:
            scope.cancel()
            await store.add([new()])
        assert scope.cancelled_caught
        assert await store.counts() == dict.fromkeys(TaskStatus, 0)

    async def test_every_method_checkpoints(self, store: SQLiteStore) -> None:
        (task_id,) = await store.add([new()])
        calls: list[Callable[[], Any]] = [
            lambda: store.add([new()]),
            lambda: store.claim(OWNER, 1, 30.0),
            lambda: store.renew(OWNER, [task_id], 30.0),
            lambda: store.complete(OWNER, task_id, 1, b""),
            lambda: store.fail(OWNER, task_id, 1, "e", None),
            lambda: store.finish_cancelled(OWNER, task_id, 1),
            lambda: store.release(OWNER, task_id, 1),
            lambda: store.cancel(task_id),
            lambda: store.requeue(task_id),
            lambda: store.get(task_id),
            lambda: store.page(status=None, name=None, limit=5, cursor=None),
            lambda: store.counts(),
            lambda: store.expired(10),
            lambda: store.recover([]),
            lambda: store.purge_finished(T0),
            lambda: store.wait_for_work(0),
        ]
        for call in calls:
            with trio.testing.assert_checkpoints():
                await call()


# --- several processes on one file ----------------------------------------------------

CLAIMER = """
import json, sys, trio
from trio_workq._stores.sqlite import SQLiteStore

async def main(path, owner):
    store = SQLiteStore(path)
    await store.open()
    print("ready", flush=True)
    await trio.to_thread.run_sync(sys.stdin.readline)  # go
    claimed = []
    while True:
        got = await store.claim(owner, 10, 300.0)
        if not got.tasks:
            break
        async with trio.open_nursery() as nursery:
            for task in got.tasks:
                claimed.append(task.id)
                nursery.start_soon(store.complete, owner, task.id, task.attempts, b"")
    await store.aclose()
    print(json.dumps(claimed), flush=True)

trio.run(main, *sys.argv[1:])
"""


async def run_claimer(
    path: Path, owner: str, ready: trio.Semaphore, go: trio.Event, claimed: dict[str, list[str]]
) -> None:
    """Run CLAIMER as a process: wait until it has opened the store, start it on *go*."""
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            functools.partial(
                trio.run_process,
                [sys.executable, "-c", CLAIMER, str(path), owner],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        )
        assert process.stdin is not None
        assert process.stdout is not None
        output = b""
        while b"\n" not in output:
            chunk = await process.stdout.receive_some()
            assert chunk, "the claimer exited before it was ready"
            output += chunk
        assert output.startswith(b"ready\n")
        ready.release()
        await go.wait()
        await process.stdin.send_all(b"go\n")
        output = output[len(b"ready\n") :]
        while chunk := await process.stdout.receive_some():
            output += chunk
    claimed[owner] = json.loads(output)


async def test_two_processes_never_claim_a_task_twice(tmp_path: Path) -> None:
    """Two processes claiming from one file of 10,000 tasks: every task claimed exactly once."""
    path = tmp_path / "shared.db"
    store = SQLiteStore(path)
    await store.open()
    ids: list[str] = []
    for _ in range(10):
        ids += await store.add([new() for _ in range(1000)])
    owners = ["proc-a", "proc-b"]
    claimed: dict[str, list[str]] = {}
    ready = trio.Semaphore(0)
    go = trio.Event()

    with trio.fail_after(50):
        async with trio.open_nursery() as nursery:
            for owner in owners:
                nursery.start_soon(run_claimer, path, owner, ready, go, claimed)
            for _ in owners:
                await ready.acquire()
            go.set()
    every = claimed["proc-a"] + claimed["proc-b"]
    assert len(every) == len(ids) == 10_000
    assert set(every) == set(ids)
    assert claimed["proc-a"]  # both really took part
    assert claimed["proc-b"]
    assert (await store.counts())[COMPLETED] == 10_000
    await store.aclose()
