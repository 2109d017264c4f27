# SPDX-License-Identifier: MIT
# White-box: drives SQLiteStore's writer, clock, migrations and counters.
# pyright: reportPrivateUsage=false
"""What is particular to `SQLiteStore`: paths and URLs, files, pragmas, migrations, group commit.

The `Store` contract every store keeps (claims, guards, cancel-wins, paging,
bad input...) is tested once for all stores in tests/test_store_contract.py.

Times the store writes come from a fake wall clock (``store._clock``), so
leases and due times are deterministic; the writer thread is real, so these
tests do not use ``autojump_clock``. Each test runs under the conftest's
``trio.fail_after``.
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import trio_workq._stores.sqlite as sqlite_module
from trio_workq._core.status import TaskStatus
from trio_workq._stores.protocol import NewTask, StoredTask, StoreError
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

    async def test_upgrades_a_version_1_file(self, db_path: Path, clock: FakeClock) -> None:
        """A file of trio_workq before task headers: migrated, its tasks kept and runnable."""
        conn = sqlite3.connect(db_path, isolation_level=None)
        for statement in sqlite_module._MIGRATIONS[0]:  # version 1, as released
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO tasks (name, payload, status, priority, max_attempts, timeout, due_at,"
            " created_at) VALUES ('old', x'5b5d', 'queued', 0, 1, NULL, ?, ?)",
            (T0, T0),
        )
        conn.close()
        store = SQLiteStore(db_path)
        store._clock = clock
        await store.open()
        try:
            assert read_file(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
            columns = [row[1] for row in read_file(db_path, "PRAGMA table_info(tasks)")]
            assert columns[-1] == "headers"
            (new_id,) = await store.add([attrs.evolve(new("new"), headers={"traceparent": "x"})])
            old = await claim_one(store)
            assert (old.id, old.name, old.headers) == ("1", "old", {})
            assert (await get(store, new_id)).headers == {"traceparent": "x"}
        finally:
            await store.aclose()
        # Opening it again migrates nothing more.
        again = SQLiteStore(db_path)
        await again.open()
        await again.aclose()
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
        for statements in sqlite_module._MIGRATIONS:
            for statement in statements:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.executemany(
            sqlite_module._INSERT,
            [("job", b"x" * 100, "queued", 0, 1, None, T0, None, T0)] * 3000,
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


# --- what SQLite keeps ----------------------------------------------------------


class TestErrors:
    async def test_errors_keep_the_last_ten(self, store: SQLiteStore) -> None:
        """Exactly the last `MAX_ERRORS` (the contract asks for at least ten)."""
        (task_id,) = await store.add([new(max_attempts=100)])
        for attempt in range(1, MAX_ERRORS + 3):
            assert (await claim_one(store)).attempts == attempt
            assert await store.fail(OWNER, task_id, attempt, f"error {attempt}", T0)
        errors = (await get(store, task_id)).errors
        assert errors == tuple(f"error {n}" for n in range(3, MAX_ERRORS + 3))


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
            conn.execute(sqlite_module._INSERT, ("bad", b"", "queued", 0, 1, None, now, None, now))
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
            row = conn.execute(
                sqlite_module._INSERT, ("slow", b"", "queued", 0, 1, None, now, None, now)
            )
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
