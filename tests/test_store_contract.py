# SPDX-License-Identifier: MIT
"""The `Store` contract, written once and run against every store.

Each test runs on `MemoryStore`, `SQLiteStore` (a file in ``tmp_path``) and
`PostgresStore` (the test server, a fresh schema per test). What one store
does differently (SQL, WAL, connections, group commit) is tested in its own
file; what the protocol promises is tested here.

Time: the memory and SQLite stores read a fake wall clock that the test moves
(`Backend.advance`); PostgreSQL decides leases and due times with the
server's clock, so there `advance` really sleeps, and the tests keep the
time they need to pass short. No ``autojump_clock`` (SQLite's writer thread
and PostgreSQL are real I/O); the conftest bounds every test.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
import trio
import trio.testing
from _pg import PG_URL, require_postgres
from _recovery import recover_expired
from psycopg import sql

from trio_workq._core.status import TaskStatus
from trio_workq._stores.memory import MemoryStore
from trio_workq._stores.postgres import PostgresStore
from trio_workq._stores.protocol import (
    Claimed,
    NewTask,
    Recovery,
    Renewal,
    Store,
    StoreDataError,
    StoredTask,
    StoreError,
)
from trio_workq._stores.sqlite import SQLiteStore

QUEUED, SCHEDULED, RUNNING = TaskStatus.QUEUED, TaskStatus.SCHEDULED, TaskStatus.RUNNING
RETRYING, COMPLETED, FAILED = TaskStatus.RETRYING, TaskStatus.COMPLETED, TaskStatus.FAILED
CANCELLED = TaskStatus.CANCELLED

OWNER = "worker-1"
#: A lease that runs out within a test (PostgreSQL waits for it in real time).
SHORT_LEASE = 0.2
#: Errors every store keeps at least (the protocol's floor).
KEPT_ERRORS = 10
TIMES = ("created_at", "due_at", "started_at", "finished_at", "lease_until")
WORKER_METHODS = ["complete", "fail", "finish_cancelled", "release"]


class FakeClock:
    """A wall clock moved by hand."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@attrs.define
class Backend:
    """One store kind: how to make its stores, and how time passes for them."""

    kind: str
    make: Callable[[], Store]
    clock: Callable[[], float]
    fake: FakeClock | None
    #: How far a time the store reports may be from the test's reckoning.
    tolerance: float

    def now(self) -> float:
        return self.clock()

    async def advance(self, seconds: float) -> None:
        """Let a little more than *seconds* of the store's time pass."""
        if self.fake is not None:
            self.fake.now += seconds + 0.001
            await trio.lowlevel.checkpoint()
        else:
            await trio.sleep(seconds + 0.05)  # the server's clock decides

    def near(self, value: float) -> Any:
        return pytest.approx(value, abs=self.tolerance, rel=0)

    def same(self, actual: StoredTask | None, expected: StoredTask) -> bool:
        """The same row: equal, times within what a re-read may change (PostgreSQL rebases)."""
        if actual is None:
            return False
        for field in TIMES:
            got, want = getattr(actual, field), getattr(expected, field)
            if (got is None) != (want is None) or (
                got is not None and abs(got - want) > self.tolerance / 10
            ):
                return False
        blank: dict[str, Any] = dict.fromkeys(TIMES, None)
        return attrs.evolve(actual, **blank) == attrs.evolve(expected, **blank)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    kind: str = request.param
    if kind == "memory":
        clock = FakeClock()
        shared = MemoryStore(clock=clock)  # "another store on the same data" is the same object
        yield Backend(kind, lambda: shared, clock, clock, 0.0)
    elif kind == "sqlite":
        clock = FakeClock()
        path = tmp_path / "tasks.db"

        def make_sqlite() -> Store:
            store = SQLiteStore(path)
            store._clock = clock  # pyright: ignore[reportPrivateUsage] - SQLite has no public clock
            return store

        yield Backend(kind, make_sqlite, clock, clock, 0.0)
    else:
        require_postgres()
        schema = f"twq_contract_{uuid.uuid4().hex[:12]}"
        yield Backend(kind, lambda: PostgresStore(PG_URL, schema=schema), time.time, None, 0.5)
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    opened = backend.make()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.aclose()


@pytest.fixture
async def second_store(backend: Backend, store: Store) -> AsyncIterator[Store]:
    """Another store object on the same tasks: another process, as far as the store knows."""
    opened = backend.make()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.aclose()


def new(
    backend: Backend,
    name: str = "job",
    *,
    priority: int = 0,
    delay: float = 0.0,
    max_attempts: int = 3,
    timeout: float | None = None,
    payload: bytes = b"[1]",
    status: TaskStatus | None = None,
) -> NewTask:
    """A task due *delay* seconds from now: scheduled if later, else queued."""
    if status is None:
        status = SCHEDULED if delay > 0 else QUEUED
    due_at = backend.now() + delay
    return NewTask(name, payload, priority, due_at, max_attempts, timeout, status)


async def claim_one(store: Store, owner: str = OWNER, lease: float = 30.0) -> StoredTask:
    claimed = await store.claim(owner, 1, lease)
    assert len(claimed.tasks) == 1
    return claimed.tasks[0]


async def get(store: Store, task_id: str) -> StoredTask:
    task = await store.get(task_id)
    assert task is not None
    return task


def worker_call(
    store: Store, method: str, owner: Any, task_id: Any, attempt: Any, retry_at: float | None = None
) -> Awaitable[object]:
    """Call one of the writes a worker makes for the attempt it holds.

    Not held: `complete` and `finish_cancelled` answer False, `fail` and
    `release` (which answer the status they wrote) ``None``.
    """
    if method == "complete":
        return store.complete(owner, task_id, attempt, b"r")
    if method == "fail":
        return store.fail(owner, task_id, attempt, "e", retry_at)
    if method == "finish_cancelled":
        return store.finish_cancelled(owner, task_id, attempt)
    assert method == "release"
    return store.release(owner, task_id, attempt)


# --- add and get ------------------------------------------------------------------


class TestAdd:
    async def test_ids_in_order_and_the_row(self, backend: Backend, store: Store) -> None:
        """add returns one id per task, in order; get reads back every field."""
        before = backend.now()
        ids = await store.add(
            [
                new(backend, "a", priority=5, timeout=2.5, max_attempts=4),
                new(backend, "b", payload=b""),
            ]
        )
        assert len(ids) == 2
        assert len(set(ids)) == 2
        task = await get(store, ids[0])
        assert task == StoredTask(
            id=ids[0],
            name="a",
            payload=b"[1]",
            status=QUEUED,
            priority=5,
            attempts=0,
            max_attempts=4,
            timeout=2.5,
            created_at=task.created_at,
            due_at=task.due_at,
            started_at=None,
            finished_at=None,
            owner=None,
            lease_until=None,
            cancel_requested=False,
            result=None,
            errors=(),
        )
        assert task.created_at == backend.near(before)
        assert task.due_at == backend.near(before)
        assert (await get(store, ids[1])).payload == b""
        page = await store.page(status=None, name=None, limit=10, cursor=None)
        assert [t.id for t in page.tasks] == ids[::-1]  # the later id is the newer task

    async def test_empty(self, store: Store) -> None:
        with trio.testing.assert_checkpoints():
            assert await store.add([]) == []

    async def test_queued_is_due_now_scheduled_keeps_its_time(
        self, backend: Backend, store: Store
    ) -> None:
        """A queued task's later due_at is lowered to now; a scheduled one keeps it."""
        now = backend.now()
        queued, scheduled = await store.add(
            [new(backend, delay=50, status=QUEUED), new(backend, delay=50)]
        )
        assert (await get(store, queued)).due_at == backend.near(now)
        assert (await get(store, scheduled)).due_at == backend.near(now + 50)
        assert [t.id for t in (await store.claim(OWNER, 5, 30.0)).tasks] == [queued]

    async def test_ids_never_reused(self, backend: Backend, store: Store) -> None:
        """After the newest task is purged, a new task still gets a new id."""
        (first,) = await store.add([new(backend)])
        assert await store.cancel(first) is QUEUED
        await backend.advance(0.1)
        assert await store.purge_finished(backend.now()) == 1
        (second,) = await store.add([new(backend)])
        assert second != first
        assert await store.get(first) is None

    @pytest.mark.parametrize(
        ("bad", "error"),
        [
            ({"task": "not a task"}, TypeError),
            ({"name": ""}, ValueError),
            ({"payload": "text"}, TypeError),
            ({"priority": True}, TypeError),
            ({"priority": 1.5}, TypeError),
            ({"priority": 2**63}, ValueError),
            ({"max_attempts": 0}, ValueError),
            ({"max_attempts": 1.0}, TypeError),
            ({"due_at": math.nan}, ValueError),
            ({"due_at": math.inf}, ValueError),
            ({"due_at": "now"}, TypeError),
            ({"timeout": 0}, ValueError),
            ({"timeout": -1.0}, ValueError),
            ({"timeout": math.nan}, ValueError),
            ({"timeout": math.inf}, ValueError),
            ({"status": RUNNING}, ValueError),
            ({"status": COMPLETED}, ValueError),
        ],
    )
    async def test_a_bad_task_adds_nothing(
        self, backend: Backend, store: Store, bad: dict[str, Any], error: type[Exception]
    ) -> None:
        """One bad task in a batch: the batch is refused with the same error type everywhere."""
        task: Any = bad.get("task") or attrs.evolve(new(backend), **bad)
        with pytest.raises(error):
            await store.add([new(backend), task])
        assert sum((await store.counts()).values()) == 0

    @pytest.mark.parametrize("tasks", [None, "abc", 5])
    async def test_not_a_sequence(self, store: Store, tasks: Any) -> None:
        with pytest.raises(TypeError):
            await store.add(tasks)

    async def test_text_a_store_cannot_hold(self, backend: Backend, store: Store) -> None:
        """A name with a lone surrogate is a StoreDataError, and nothing is stored."""
        with pytest.raises(StoreDataError):
            await store.add([new(backend), attrs.evolve(new(backend), name="bad \ud800")])
        assert sum((await store.counts()).values()) == 0

    async def test_name_that_is_not_text(self, backend: Backend, store: Store) -> None:
        """A name that is not a str is a TypeError."""
        with pytest.raises(TypeError):
            await store.add([attrs.evolve(new(backend), name=5)])  # type: ignore[arg-type]
        assert sum((await store.counts()).values()) == 0


# --- headers ----------------------------------------------------------------------

TRACE_HEADERS = {
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "tracestate": "vendor=é✓",
}


class TestHeaders:
    """Headers (for trace propagation) are stored with a task and read back with it."""

    async def test_every_read_returns_them(self, backend: Backend, store: Store) -> None:
        with_headers, without = await store.add(
            [attrs.evolve(new(backend), headers=TRACE_HEADERS), new(backend, priority=-1)]
        )
        assert (await get(store, with_headers)).headers == TRACE_HEADERS
        assert (await get(store, without)).headers == {}
        page = await store.page(status=None, name=None, limit=10, cursor=None)
        assert [t.headers for t in page.tasks] == [{}, TRACE_HEADERS]
        claimed = await store.claim(OWNER, 2, SHORT_LEASE)
        assert [t.headers for t in claimed.tasks] == [TRACE_HEADERS, {}]
        await backend.advance(SHORT_LEASE)
        expired = {t.id: t.headers for t in await store.expired(10)}  # same lease: any order
        assert expired == {with_headers: TRACE_HEADERS, without: {}}

    async def test_kept_across_attempts(self, backend: Backend, store: Store) -> None:
        """A retry, a give-back and a requeue run the task again with the same headers."""
        (task_id,) = await store.add([attrs.evolve(new(backend), headers=TRACE_HEADERS)])
        first = await claim_one(store)
        assert await store.fail(OWNER, task_id, first.attempts, "e", backend.now()) is RETRYING
        second = await claim_one(store)
        assert second.headers == TRACE_HEADERS
        assert await store.release(OWNER, task_id, second.attempts) is QUEUED
        third = await claim_one(store)
        assert third.headers == TRACE_HEADERS
        assert await store.fail(OWNER, task_id, third.attempts, "e", None) is FAILED
        assert await store.requeue(task_id) is FAILED
        assert (await claim_one(store)).headers == TRACE_HEADERS

    async def test_stored_as_they_were_at_add(self, backend: Backend, store: Store) -> None:
        """The store keeps a copy: changing the mapping later changes nothing stored."""
        headers = dict(TRACE_HEADERS)
        (task_id,) = await store.add([attrs.evolve(new(backend), headers=headers)])
        headers["traceparent"] = "changed"
        headers["extra"] = "x"
        read = await get(store, task_id)
        assert read.headers == TRACE_HEADERS
        assert read.headers is not headers

    async def test_seen_by_another_store(
        self, backend: Backend, store: Store, second_store: Store
    ) -> None:
        (task_id,) = await store.add([attrs.evolve(new(backend), headers={"k": ""})])
        assert (await claim_one(second_store)).headers == {"k": ""}
        assert (await get(store, task_id)).headers == {"k": ""}

    @pytest.mark.parametrize(
        ("headers", "message"),
        [
            ({1: "x"}, "headers must map str to str, not int to str"),
            ({"k": 1}, "headers must map str to str, not str to int"),
            ({"k": None}, "headers must map str to str, not str to NoneType"),
            ({"k": b"v"}, "headers must map str to str, not str to bytes"),
            ([("k", "v")], "headers must be a mapping of str to str, not list"),
            ("k=v", "headers must be a mapping of str to str, not str"),
            (None, "headers must be a mapping of str to str, not NoneType"),
        ],
    )
    async def test_not_str_to_str_is_a_type_error(
        self, backend: Backend, store: Store, headers: Any, message: str
    ) -> None:
        """A bad task's headers refuse its whole batch with a TypeError: nothing is stored."""
        bad = attrs.evolve(new(backend), headers=headers)
        with pytest.raises(TypeError, match=f"^{re.escape(message)}"):
            await store.add([new(backend), bad])
        assert sum((await store.counts()).values()) == 0

    @pytest.mark.parametrize(
        "headers", [{"k": "bad \ud800"}, {"bad \ud800": "v"}, {"k": "nul\x00"}, {"nul\x00": ""}]
    )
    async def test_text_a_store_cannot_hold(
        self, backend: Backend, store: Store, headers: dict[str, str]
    ) -> None:
        """Lone surrogates and NUL characters are a StoreDataError on every store."""
        with pytest.raises(StoreDataError):
            await store.add([new(backend), attrs.evolve(new(backend), headers=headers)])
        assert sum((await store.counts()).values()) == 0
        (task_id,) = await store.add([new(backend)])  # the store is still usable
        assert (await get(store, task_id)).headers == {}


# --- ids ------------------------------------------------------------------------


BAD_IDS = ["", "0", "01", "-1", "+1", " 1", "1.0", "1_0", "abc", "\u0661", "9" * 20]


class TestIds:
    @pytest.mark.parametrize("bad", BAD_IDS)
    async def test_ids_never_made_are_unknown(
        self, backend: Backend, store: Store, bad: str
    ) -> None:
        """A string that cannot be an id matches no task: None or False, never an error."""
        (task_id,) = await store.add([new(backend)])
        await claim_one(store)
        with trio.testing.assert_checkpoints():
            assert await store.get(bad) is None
        assert await store.cancel(bad) is None
        assert await store.requeue(bad) is None
        for method in WORKER_METHODS:
            with trio.testing.assert_checkpoints():
                assert not await worker_call(store, method, OWNER, bad, 1)
        assert await store.complete_many(OWNER, [(bad, 1, b"")]) == [False]
        assert (await store.renew(OWNER, [bad], 30.0)).lost == {bad}
        assert (await get(store, task_id)).status is RUNNING

    async def test_unknown_ids(self, store: Store) -> None:
        assert await store.get("424242") is None
        assert await store.cancel("424242") is None
        assert await store.requeue("424242") is None

    @pytest.mark.parametrize(
        "call",
        [
            "get",
            "cancel",
            "requeue",
            "complete",
            "fail",
            "finish_cancelled",
            "release",
            "complete_many",
            "renew",
            "page",
        ],
    )
    async def test_an_id_that_is_not_a_str(self, store: Store, call: str) -> None:
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "get": lambda: store.get(7),  # type: ignore[arg-type]
            "cancel": lambda: store.cancel(7),  # type: ignore[arg-type]
            "requeue": lambda: store.requeue(None),  # type: ignore[arg-type]
            "complete": lambda: store.complete(OWNER, 7, 1, b""),  # type: ignore[arg-type]
            "fail": lambda: store.fail(OWNER, 7, 1, "e", None),  # type: ignore[arg-type]
            "finish_cancelled": lambda: store.finish_cancelled(OWNER, 7, 1),  # type: ignore[arg-type]
            "release": lambda: store.release(OWNER, 7, 1),  # type: ignore[arg-type]
            "complete_many": lambda: store.complete_many(OWNER, [(7, 1, b"")]),  # type: ignore[list-item]
            "renew": lambda: store.renew(OWNER, [7], 30.0),  # type: ignore[list-item]
            "page": lambda: store.page(status=None, name=None, limit=5, cursor=7),  # type: ignore[arg-type]
        }
        with pytest.raises(TypeError):
            await calls[call]()


# --- claim ------------------------------------------------------------------------


class TestClaim:
    async def test_order(self, backend: Backend, store: Store) -> None:
        """Highest priority first, then earliest due, then oldest."""
        await store.add(
            [
                new(backend, "low"),
                new(backend, "high-later", priority=9, delay=-1, status=SCHEDULED),
                new(backend, "high-earlier", priority=9, delay=-5, status=SCHEDULED),
                new(backend, "mid", priority=5),
                new(backend, "mid-2", priority=5),
            ]
        )
        claimed = await store.claim(OWNER, 4, 30.0)
        assert [task.name for task in claimed.tasks] == [
            "high-earlier",
            "high-later",
            "mid",
            "mid-2",
        ]
        assert [task.name for task in (await store.claim(OWNER, 4, 30.0)).tasks] == ["low"]

    async def test_fifo_within_a_priority(self, backend: Backend, store: Store) -> None:
        """Tasks of one priority added one by one are claimed oldest first."""
        ids = [(await store.add([new(backend, str(k))]))[0] for k in range(5)]
        claimed = [(await claim_one(store)).id for _ in range(5)]
        assert claimed == ids

    async def test_the_claimed_row(self, backend: Backend, store: Store) -> None:
        """A claimed task runs attempt 1 for its owner, leased until now + lease."""
        ids = await store.add([new(backend), new(backend)])
        await backend.advance(0.1)
        now = backend.now()
        claimed = await store.claim(OWNER, 5, 30.0)
        assert sorted(task.id for task in claimed.tasks) == sorted(ids)
        for task in claimed.tasks:
            assert (task.status, task.attempts, task.owner) == (RUNNING, 1, OWNER)
            assert task.lease_until == backend.near(now + 30.0)
            assert task.started_at == backend.near(now)
            assert backend.same(await store.get(task.id), task)
        assert claimed.next_due is None

    async def test_a_scheduled_task_is_not_claimed_early(
        self, backend: Backend, store: Store
    ) -> None:
        """Tasks not due yet stay where they are; next_due is the earliest of them."""
        now = backend.now()
        later, soon = await store.add([new(backend, delay=0.6), new(backend, delay=0.3)])
        claimed = await store.claim(OWNER, 10, 30.0)
        assert claimed.tasks == ()
        assert claimed.next_due == backend.near(now + 0.3)
        await backend.advance(0.3)
        claimed = await store.claim(OWNER, 10, 30.0)
        assert [task.id for task in claimed.tasks] == [soon]
        assert claimed.next_due == backend.near(now + 0.6)
        assert (await get(store, later)).status is SCHEDULED
        await backend.advance(0.3)
        assert [task.id for task in (await store.claim(OWNER, 10, 30.0)).tasks] == [later]

    async def test_a_due_task_of_lower_priority_is_not_blocked(
        self, backend: Backend, store: Store
    ) -> None:
        """A higher-priority task not yet due does not hold back a due one."""
        later, due = await store.add([new(backend, priority=9, delay=60), new(backend)])
        assert [task.id for task in (await store.claim(OWNER, 10, 30.0)).tasks] == [due]
        assert (await get(store, later)).status is SCHEDULED

    async def test_limit(self, backend: Backend, store: Store) -> None:
        await store.add([new(backend) for _ in range(5)])
        assert len((await store.claim(OWNER, 3, 30.0)).tasks) == 3
        assert len((await store.claim(OWNER, 3, 30.0)).tasks) == 2
        assert (await store.counts())[RUNNING] == 5

    async def test_nothing_to_claim(self, store: Store) -> None:
        with trio.testing.assert_checkpoints():
            assert await store.claim(OWNER, 10, 30.0) == Claimed((), None)

    @pytest.mark.parametrize(
        ("owner", "limit", "lease", "error"),
        [
            ("", 1, 30.0, ValueError),
            (None, 1, 30.0, TypeError),
            (7, 1, 30.0, TypeError),
            (OWNER, 0, 30.0, ValueError),
            (OWNER, -1, 30.0, ValueError),
            (OWNER, 1.0, 30.0, TypeError),
            (OWNER, True, 30.0, TypeError),
            (OWNER, 1, 0, ValueError),
            (OWNER, 1, -5.0, ValueError),
            (OWNER, 1, math.nan, ValueError),
            (OWNER, 1, math.inf, ValueError),
            (OWNER, 1, "10", TypeError),
        ],
    )
    async def test_bad_input(
        self,
        backend: Backend,
        store: Store,
        owner: Any,
        limit: Any,
        lease: Any,
        error: type[Exception],
    ) -> None:
        await store.add([new(backend)])
        with pytest.raises(error):
            await store.claim(owner, limit, lease)
        assert (await store.counts())[QUEUED] == 1

    async def test_an_owner_a_store_cannot_hold(self, backend: Backend, store: Store) -> None:
        await store.add([new(backend)])
        with pytest.raises(StoreDataError):
            await store.claim("bad \ud800", 1, 30.0)
        assert (await store.counts())[QUEUED] == 1

    async def test_concurrent_claimers_never_get_the_same_task(
        self, backend: Backend, store: Store, second_store: Store
    ) -> None:
        """Claimers on two store objects, in parallel: every task is claimed exactly once."""
        ids = await store.add([new(backend, priority=k % 3) for k in range(120)])
        got: dict[str, list[str]] = {}

        async def claimer(which: Store, owner: str) -> None:
            mine = got.setdefault(owner, [])
            while True:
                claimed = await which.claim(owner, 7, 30.0)
                if not claimed.tasks:
                    return
                mine.extend(task.id for task in claimed.tasks)

        async with trio.open_nursery() as nursery:
            for k in range(6):
                nursery.start_soon(claimer, (store, second_store)[k % 2], f"w{k}")
        every = [task_id for mine in got.values() for task_id in mine]
        assert sorted(every) == sorted(ids)  # each once, none lost
        for owner, mine in got.items():
            for task_id in mine:
                task = await get(second_store, task_id)
                assert (task.status, task.owner, task.attempts) == (RUNNING, owner, 1)


# --- renew ------------------------------------------------------------------------


class TestRenew:
    async def test_extends_held_and_reports_the_rest(self, backend: Backend, store: Store) -> None:
        held, cancel, other, done = await store.add([new(backend) for _ in range(4)])
        for _ in range(2):
            await claim_one(store)
        first_lease = (await claim_one(store, owner="worker-2")).lease_until
        await claim_one(store)
        assert await store.complete(OWNER, done, 1, b"")
        assert await store.cancel(cancel) is RUNNING
        await backend.advance(0.1)
        now = backend.now()
        renewal = await store.renew(OWNER, [held, cancel, other, done, "424242", "bogus"], 60.0)
        assert renewal == Renewal(
            lost=frozenset({other, done, "424242", "bogus"}),
            cancel_requested=frozenset({cancel}),
        )
        assert (await get(store, held)).lease_until == backend.near(now + 60.0)
        assert first_lease is not None
        assert (await get(store, other)).lease_until == backend.near(first_lease)

    async def test_many_ids(self, backend: Backend, store: Store) -> None:
        await store.add([new(backend) for _ in range(1200)])
        claimed = await store.claim(OWNER, 1200, 30.0)
        renewal = await store.renew(OWNER, [task.id for task in claimed.tasks], 60.0)
        assert renewal == Renewal(frozenset(), frozenset())

    async def test_empty(self, store: Store) -> None:
        with trio.testing.assert_checkpoints():
            assert await store.renew(OWNER, [], 30.0) == Renewal(frozenset(), frozenset())

    @pytest.mark.parametrize(
        ("owner", "ids", "lease", "error"),
        [
            ("", ["1"], 30.0, ValueError),
            (None, ["1"], 30.0, TypeError),
            (OWNER, "1", 30.0, TypeError),
            (OWNER, None, 30.0, TypeError),
            (OWNER, [1], 30.0, TypeError),
            (OWNER, ["1"], 0, ValueError),
            (OWNER, ["1"], -1.0, ValueError),
            (OWNER, ["1"], math.inf, ValueError),
        ],
    )
    async def test_bad_input(
        self, store: Store, owner: Any, ids: Any, lease: Any, error: type[Exception]
    ) -> None:
        with pytest.raises(error):
            await store.renew(owner, ids, lease)


# --- the writes of the worker that holds an attempt -------------------------------


class TestHeldWrites:
    async def test_complete(self, backend: Backend, store: Store) -> None:
        (task_id,) = await store.add([new(backend)])
        await claim_one(store)
        await backend.advance(0.1)
        now = backend.now()
        assert await store.complete(OWNER, task_id, 1, b"42")
        done = await get(store, task_id)
        assert (done.status, done.result, done.owner, done.lease_until) == (
            COMPLETED,
            b"42",
            None,
            None,
        )
        assert done.finished_at == backend.near(now)
        assert not await store.complete(OWNER, task_id, 1, b"43")
        assert (await get(store, task_id)).result == b"42"

    async def test_complete_many(self, backend: Backend, store: Store) -> None:
        a, b, c = await store.add([new(backend), new(backend), new(backend)])
        assert len((await store.claim(OWNER, 3, 30.0)).tasks) == 3
        flags = await store.complete_many(
            OWNER,
            [(a, 1, b"1"), (b, 2, b"x"), (c, 1, b"3"), ("424242", 1, b""), ("nope", 1, b"")],
        )
        assert flags == [True, False, True, False, False]
        for task_id, result in ((a, b"1"), (c, b"3")):
            done = await get(store, task_id)
            assert (done.status, done.result, done.owner, done.lease_until) == (
                COMPLETED,
                result,
                None,
                None,
            )
        still = await get(store, b)  # the wrong attempt changed nothing
        assert (still.status, still.owner, still.result) == (RUNNING, OWNER, None)
        assert await store.complete_many(OWNER, [(a, 1, b"again")]) == [False]
        assert (await get(store, a)).result == b"1"
        with trio.testing.assert_checkpoints():
            assert await store.complete_many(OWNER, []) == []

    async def test_complete_many_completes_a_repeated_attempt_once(
        self, backend: Backend, store: Store
    ) -> None:
        """An attempt completed twice in one call: the first is recorded, the repeat is not."""
        (task_id,) = await store.add([new(backend)])
        await claim_one(store)
        assert await store.complete_many(
            OWNER, [(task_id, 1, b"first"), (task_id, 1, b"again")]
        ) == [
            True,
            False,
        ]
        assert (await get(store, task_id)).result == b"first"

    @pytest.mark.parametrize(
        ("owner", "items", "error"),
        [
            ("", [(0, 1, b"")], ValueError),
            (OWNER, [(0, 1, b""), (1, 0, b"")], ValueError),
            (OWNER, [(0, 1, b""), (1, True, b"")], TypeError),
            (OWNER, [(0, 1, b""), (1, 1, "r")], TypeError),
            (OWNER, [(0, 1, b""), (None, 1, b"")], TypeError),
        ],
    )
    async def test_complete_many_bad_input_changes_nothing(
        self, backend: Backend, store: Store, owner: str, items: list[Any], error: type[Exception]
    ) -> None:
        ids = await store.add([new(backend), new(backend)])
        assert len((await store.claim(OWNER, 2, 30.0)).tasks) == 2
        calls = [(ids[i] if isinstance(i, int) else i, n, r) for i, n, r in items]
        with pytest.raises(error):
            await store.complete_many(owner, calls)
        assert [(await get(store, task_id)).status for task_id in ids] == [RUNNING, RUNNING]

    async def test_fail_with_a_retry(self, backend: Backend, store: Store) -> None:
        """A retry is due at retry_at, not before; its next claim runs attempt 2."""
        (task_id,) = await store.add([new(backend)])
        await claim_one(store)
        retry_at = backend.now() + 0.3
        assert await store.fail(OWNER, task_id, 1, "ValueError: boom", retry_at) is RETRYING
        task = await get(store, task_id)
        assert (task.status, task.errors) == (RETRYING, ("ValueError: boom",))
        assert (task.owner, task.lease_until, task.finished_at) == (None, None, None)
        assert task.due_at == backend.near(retry_at)
        claimed = await store.claim(OWNER, 1, 30.0)
        assert claimed.tasks == ()
        assert claimed.next_due == backend.near(retry_at)
        await backend.advance(0.3)
        assert (await claim_one(store)).attempts == 2

    async def test_fail_for_good(self, backend: Backend, store: Store) -> None:
        (task_id,) = await store.add([new(backend)])
        await claim_one(store)
        now = backend.now()
        assert await store.fail(OWNER, task_id, 1, "boom", None) is FAILED
        task = await get(store, task_id)
        assert (task.status, task.errors, task.owner, task.lease_until) == (
            FAILED,
            ("boom",),
            None,
            None,
        )
        assert task.finished_at == backend.near(now)
        assert (await store.claim(OWNER, 1, 30.0)).tasks == ()

    async def test_errors_keep_at_least_the_last_ten(self, backend: Backend, store: Store) -> None:
        """Errors are kept oldest first; a store may drop the oldest beyond ten."""
        (task_id,) = await store.add([new(backend, max_attempts=100)])
        count = KEPT_ERRORS + 3
        for attempt in range(1, count + 1):
            assert (await claim_one(store)).attempts == attempt
            assert await store.fail(OWNER, task_id, attempt, f"error {attempt}", backend.now())
        errors = (await get(store, task_id)).errors
        expected = tuple(f"error {n}" for n in range(1, count + 1))
        assert len(errors) >= KEPT_ERRORS
        assert errors == expected[-len(errors) :]

    async def test_finish_cancelled(self, backend: Backend, store: Store) -> None:
        (task_id,) = await store.add([new(backend)])
        await claim_one(store)
        assert await store.cancel(task_id) is RUNNING
        now = backend.now()
        assert await store.finish_cancelled(OWNER, task_id, 1)
        task = await get(store, task_id)
        assert (task.status, task.owner, task.lease_until) == (CANCELLED, None, None)
        assert task.finished_at == backend.near(now)
        assert not await store.finish_cancelled(OWNER, task_id, 1)

    async def test_release(self, backend: Backend, store: Store) -> None:
        """A released task is queued and due now; its interrupted attempt does not count."""
        (task_id,) = await store.add([new(backend, delay=-100, status=SCHEDULED)])
        await claim_one(store)
        await backend.advance(0.1)
        now = backend.now()
        assert await store.release(OWNER, task_id, 1) is QUEUED
        task = await get(store, task_id)
        assert (task.status, task.attempts) == (QUEUED, 0)
        assert (task.owner, task.lease_until, task.finished_at) == (None, None, None)
        assert task.due_at == backend.near(now)
        assert (await claim_one(store, owner="worker-2")).attempts == 1

    @pytest.mark.parametrize("method", WORKER_METHODS)
    @pytest.mark.parametrize("who", ["another owner", "another attempt"])
    async def test_only_the_holder_of_the_attempt_writes(
        self, backend: Backend, store: Store, method: str, who: str
    ) -> None:
        """Another owner or another attempt: False, and the row is unchanged."""
        (held,) = await store.add([new(backend)])
        await claim_one(store)
        before = await get(store, held)
        await backend.advance(0.1)
        owner, attempt = ("worker-2", 1) if who == "another owner" else (OWNER, 2)
        with trio.testing.assert_checkpoints():
            assert not await worker_call(store, method, owner, held, attempt)
        assert backend.same(await store.get(held), before)

    @pytest.mark.parametrize("method", WORKER_METHODS)
    @pytest.mark.parametrize("end", ["completed", "cancelled", "retrying", "released"])
    async def test_an_attempt_that_ended_is_not_held(
        self, backend: Backend, store: Store, method: str, end: str
    ) -> None:
        """Once its attempt ended, however it ended, no write of that attempt changes the row."""
        (task_id,) = await store.add([new(backend)])
        await claim_one(store)
        if end == "completed":
            assert await store.complete(OWNER, task_id, 1, b"done")
        elif end == "cancelled":
            assert await store.finish_cancelled(OWNER, task_id, 1)
        elif end == "retrying":
            assert await store.fail(OWNER, task_id, 1, "e", backend.now() + 60)
        else:
            assert await store.release(OWNER, task_id, 1)
        before = await get(store, task_id)
        assert not await worker_call(store, method, OWNER, task_id, 1, backend.now())
        assert backend.same(await store.get(task_id), before)

    async def test_a_stale_attempt_cannot_write_over_a_newer_one(
        self, backend: Backend, store: Store
    ) -> None:
        """The same owner's old attempt is refused once the task runs again."""
        (task_id,) = await store.add([new(backend)])
        await claim_one(store)
        assert await store.fail(OWNER, task_id, 1, "first", backend.now())
        assert (await claim_one(store)).attempts == 2
        for method in WORKER_METHODS:
            assert not await worker_call(store, method, OWNER, task_id, 1, None)
        assert await store.complete(OWNER, task_id, 2, b"fresh")
        task = await get(store, task_id)
        assert (task.status, task.result, task.errors) == (COMPLETED, b"fresh", ("first",))

    @pytest.mark.parametrize("method", WORKER_METHODS)
    @pytest.mark.parametrize(
        ("owner", "task_id", "attempt", "error"),
        [
            ("", None, 1, ValueError),
            (None, None, 1, TypeError),
            (7, None, 1, TypeError),
            (OWNER, None, 0, ValueError),
            (OWNER, None, -1, ValueError),
            (OWNER, None, 1.0, TypeError),
            (OWNER, None, True, TypeError),
            (OWNER, None, "1", TypeError),
        ],
    )
    async def test_bad_input_changes_nothing(
        self,
        backend: Backend,
        store: Store,
        method: str,
        owner: Any,
        task_id: Any,
        attempt: Any,
        error: type[Exception],
    ) -> None:
        (held,) = await store.add([new(backend)])
        await claim_one(store)
        before = await get(store, held)
        with pytest.raises(error):
            await worker_call(store, method, owner, held if task_id is None else task_id, attempt)
        assert backend.same(await store.get(held), before)

    @pytest.mark.parametrize(
        ("call", "error"),
        [
            ("complete with a str result", TypeError),
            ("fail with bytes for error", TypeError),
            ("fail with no error", TypeError),
            ("fail with a NaN retry_at", ValueError),
            ("fail with an infinite retry_at", ValueError),
            ("fail with a str retry_at", TypeError),
        ],
    )
    async def test_result_error_and_retry_at_are_checked(
        self, backend: Backend, store: Store, call: str, error: type[Exception]
    ) -> None:
        (task_id,) = await store.add([new(backend)])
        await claim_one(store)
        before = await get(store, task_id)
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "complete with a str result": lambda: store.complete(OWNER, task_id, 1, "r"),  # type: ignore[arg-type]
            "fail with bytes for error": lambda: store.fail(OWNER, task_id, 1, b"e", None),  # type: ignore[arg-type]
            "fail with no error": lambda: store.fail(OWNER, task_id, 1, None, None),  # type: ignore[arg-type]
            "fail with a NaN retry_at": lambda: store.fail(OWNER, task_id, 1, "e", math.nan),
            "fail with an infinite retry_at": lambda: store.fail(OWNER, task_id, 1, "e", math.inf),
            "fail with a str retry_at": lambda: store.fail(OWNER, task_id, 1, "e", "soon"),  # type: ignore[arg-type]
        }
        with pytest.raises(error):
            await calls[call]()
        assert backend.same(await store.get(task_id), before)

    async def test_text_a_store_cannot_hold(self, backend: Backend, store: Store) -> None:
        """An error text with a lone surrogate is a StoreDataError; the store stays usable."""
        (task_id,) = await store.add([new(backend)])
        await claim_one(store)
        before = await get(store, task_id)
        with pytest.raises(StoreDataError):
            await store.fail(OWNER, task_id, 1, "bad \ud800", None)
        assert backend.same(await store.get(task_id), before)
        assert await store.fail(OWNER, task_id, 1, "plain", None)
        assert (await get(store, task_id)).errors == ("plain",)


# --- a requested cancel wins ------------------------------------------------------


class TestCancel:
    async def test_each_status(self, backend: Backend, store: Store, second_store: Store) -> None:
        """Waiting tasks are cancelled at once, a running one is asked, a finished one stays.

        Cancelling works from any store object on the same tasks.
        """
        retrying, running, completed = await store.add([new(backend) for _ in range(3)])
        await store.claim(OWNER, 3, 30.0)
        assert await store.fail(OWNER, retrying, 1, "e", backend.now() + 50)
        assert await store.complete(OWNER, completed, 1, b"")
        queued, scheduled = await store.add([new(backend), new(backend, delay=99)])
        now = backend.now()
        before = {
            queued: QUEUED,
            scheduled: SCHEDULED,
            retrying: RETRYING,
            running: RUNNING,
            completed: COMPLETED,
        }
        for task_id, status in before.items():
            assert await second_store.cancel(task_id) is status
        for task_id in (queued, scheduled, retrying):
            task = await get(store, task_id)
            assert (task.status, task.cancel_requested) == (CANCELLED, False)
            assert task.finished_at == backend.near(now)
        assert (await get(store, completed)).status is COMPLETED
        still_running = await get(store, running)
        assert (still_running.status, still_running.cancel_requested) == (RUNNING, True)
        assert await second_store.cancel(running) is RUNNING  # asking twice is harmless
        assert await second_store.cancel(queued) is CANCELLED
        assert (await store.claim(OWNER, 10, 30.0)).tasks == ()

    @pytest.mark.parametrize("end", ["retry", "release", "lease expired", "recovered retrying"])
    async def test_a_requested_cancel_wins(self, backend: Backend, store: Store, end: str) -> None:
        """A running task asked to cancel never runs again, however its attempt ends.

        Cancel wins over re-queueing even when the runtime decided a retry
        (a ``retrying`` target, or a recovery decided before the request).
        """
        (task_id,) = await store.add([new(backend)])
        await claim_one(store, lease=SHORT_LEASE)
        assert await store.cancel(task_id) is RUNNING
        if end == "retry":
            assert await store.fail(OWNER, task_id, 1, "boom", backend.now()) is CANCELLED
        elif end == "release":
            assert await store.release(OWNER, task_id, 1) is CANCELLED
        elif end == "lease expired":
            await backend.advance(SHORT_LEASE)
            assert await recover_expired(store, "lost", now=backend.now()) == 1
        else:
            await backend.advance(SHORT_LEASE)
            target = Recovery(task_id, OWNER, 1, RETRYING, "lost", backend.now())
            assert await store.recover([target]) == 1
        task = await get(store, task_id)
        assert (task.status, task.owner, task.lease_until) == (CANCELLED, None, None)
        assert task.finished_at is not None
        if end != "release":
            assert task.errors == ("boom",) if end == "retry" else ("lost",)
        assert (await store.claim(OWNER, 10, 30.0)).tasks == ()

    async def test_cancel_wins_only_over_requeueing(self, backend: Backend, store: Store) -> None:
        """A failed target stays failed under a cancel request (as in memory); a retry does not."""
        failed, lost = await store.add([new(backend), new(backend)])
        await store.claim(OWNER, 2, SHORT_LEASE)
        assert await store.cancel(failed) is RUNNING
        assert await store.cancel(lost) is RUNNING
        now = backend.now()
        assert await store.fail(OWNER, failed, 1, "cleanup failed", None) is FAILED
        task = await get(store, failed)
        assert (task.status, task.errors, task.owner) == (FAILED, ("cleanup failed",), None)
        assert task.finished_at == backend.near(now)
        await backend.advance(SHORT_LEASE)
        assert await store.recover([Recovery(lost, OWNER, 1, FAILED, "lost", None)]) == 1
        task = await get(store, lost)
        assert (task.status, task.errors, task.owner) == (FAILED, ("lost",), None)
        assert task.finished_at is not None

    async def test_a_completion_after_a_cancel_request_is_kept(
        self, backend: Backend, store: Store
    ) -> None:
        """The work was done: a task that completes before it stops ends completed."""
        (task_id,) = await store.add([new(backend)])
        await claim_one(store)
        assert await store.cancel(task_id) is RUNNING
        assert await store.complete(OWNER, task_id, 1, b"done")
        task = await get(store, task_id)
        assert (task.status, task.result) == (COMPLETED, b"done")


# --- requeue --------------------------------------------------------------------


class TestRequeue:
    async def test_failed_gets_one_more_attempt(self, backend: Backend, store: Store) -> None:
        (task_id,) = await store.add([new(backend, max_attempts=1)])
        await claim_one(store)
        assert await store.fail(OWNER, task_id, 1, "boom", None)
        await backend.advance(0.1)
        now = backend.now()
        assert await store.requeue(task_id) is FAILED
        task = await get(store, task_id)
        assert (task.status, task.finished_at, task.cancel_requested) == (QUEUED, None, False)
        assert (task.attempts, task.max_attempts, task.errors) == (1, 2, ("boom",))
        assert task.due_at == backend.near(now)
        assert (await claim_one(store)).attempts == 2

    async def test_cancelled_keeps_its_unused_attempts(
        self, backend: Backend, store: Store
    ) -> None:
        (task_id,) = await store.add([new(backend, max_attempts=5)])
        assert await store.cancel(task_id) is QUEUED
        assert await store.requeue(task_id) is CANCELLED
        task = await get(store, task_id)
        assert (task.status, task.max_attempts, task.attempts) == (QUEUED, 5, 0)

    async def test_clears_the_cancel_request(self, backend: Backend, store: Store) -> None:
        (task_id,) = await store.add([new(backend)])
        await claim_one(store)
        assert await store.cancel(task_id) is RUNNING
        assert await store.finish_cancelled(OWNER, task_id, 1)
        assert await store.requeue(task_id) is CANCELLED
        assert (await get(store, task_id)).cancel_requested is False
        assert (await claim_one(store)).id == task_id

    async def test_other_statuses_are_unchanged(self, backend: Backend, store: Store) -> None:
        queued, running, completed, scheduled = await store.add(
            [new(backend), new(backend), new(backend), new(backend, delay=60)]
        )
        await store.claim(OWNER, 3, 30.0)
        assert await store.complete(OWNER, completed, 1, b"")
        assert await store.release(OWNER, queued, 1)
        retrying = (await store.add([new(backend, priority=5)]))[0]
        assert (await claim_one(store)).id == retrying
        assert await store.fail(OWNER, retrying, 1, "e", backend.now() + 60)
        for task_id, status in (
            (queued, QUEUED),
            (running, RUNNING),
            (completed, COMPLETED),
            (scheduled, SCHEDULED),
            (retrying, RETRYING),
        ):
            before = await get(store, task_id)
            assert await store.requeue(task_id) is status
            assert backend.same(await store.get(task_id), before)


# --- reading: page and counts -------------------------------------------------------


class TestRead:
    async def test_page_through_everything(self, backend: Backend, store: Store) -> None:
        ids = await store.add([new(backend, str(n)) for n in range(7)])
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

    async def test_a_full_last_page_has_no_cursor(self, backend: Backend, store: Store) -> None:
        await store.add([new(backend) for _ in range(3)])
        page = await store.page(status=None, name=None, limit=3, cursor=None)
        assert (len(page.tasks), page.next_cursor) == (3, None)

    async def test_empty(self, store: Store) -> None:
        page = await store.page(status=None, name=None, limit=10, cursor=None)
        assert (page.tasks, page.next_cursor) == ((), None)

    async def test_filters(self, backend: Backend, store: Store) -> None:
        """By status, by name, by both, with cursors; rows as get reads them."""
        a1, b1, a2, a3 = await store.add(
            [new(backend, "a"), new(backend, "b"), new(backend, "a"), new(backend, "a")]
        )
        await claim_one(store)  # a1 runs
        by_name = await store.page(status=None, name="a", limit=10, cursor=None)
        assert ([task.id for task in by_name.tasks], by_name.next_cursor) == ([a3, a2, a1], None)
        for task in by_name.tasks:
            assert backend.same(await store.get(task.id), task)
        queued_a = await store.page(status=QUEUED, name="a", limit=1, cursor=None)
        assert [task.id for task in queued_a.tasks] == [a3]
        assert queued_a.next_cursor is not None
        rest = await store.page(status=QUEUED, name="a", limit=1, cursor=queued_a.next_cursor)
        assert ([task.id for task in rest.tasks], rest.next_cursor) == ([a2], None)
        running = await store.page(status=RUNNING, name=None, limit=10, cursor=None)
        assert [task.id for task in running.tasks] == [a1]
        queued = await store.page(status=QUEUED, name=None, limit=10, cursor=None)
        assert [task.id for task in queued.tasks] == [a3, a2, b1]
        assert (await store.page(status=None, name="c", limit=10, cursor=None)).tasks == ()
        assert (await store.page(status=FAILED, name=None, limit=10, cursor=None)).tasks == ()

    async def test_a_cursor_past_purged_tasks(self, backend: Backend, store: Store) -> None:
        """A cursor stays valid after its task is purged."""
        ids = await store.add([new(backend) for _ in range(4)])
        first = await store.page(status=None, name=None, limit=2, cursor=None)
        assert first.next_cursor == ids[2]
        assert await store.cancel(ids[2]) is QUEUED
        await backend.advance(0.1)
        assert await store.purge_finished(backend.now()) == 1
        rest = await store.page(status=None, name=None, limit=2, cursor=first.next_cursor)
        assert ([task.id for task in rest.tasks], rest.next_cursor) == ([ids[1], ids[0]], None)

    @pytest.mark.parametrize(
        ("kwargs", "error"),
        [
            ({"limit": 0}, ValueError),
            ({"limit": -1}, ValueError),
            ({"limit": 1001}, ValueError),
            ({"limit": True}, TypeError),
            ({"limit": "10"}, TypeError),
            ({"limit": 10.0}, TypeError),
            ({"cursor": "abc"}, ValueError),
            ({"cursor": "0"}, ValueError),
            ({"cursor": "-5"}, ValueError),
            ({"cursor": ""}, ValueError),
            ({"status": "queued"}, TypeError),
            ({"name": 3}, TypeError),
        ],
    )
    async def test_page_bad_input(
        self, store: Store, kwargs: dict[str, Any], error: type[Exception]
    ) -> None:
        arguments: dict[str, Any] = {"status": None, "name": None, "limit": 10, "cursor": None}
        arguments.update(kwargs)
        with pytest.raises(error):
            await store.page(**arguments)

    async def test_the_largest_page(self, backend: Backend, store: Store) -> None:
        await store.add([new(backend) for _ in range(1001)])
        page = await store.page(status=None, name=None, limit=1000, cursor=None)
        assert len(page.tasks) == 1000
        assert page.next_cursor is not None

    async def test_counts_every_status(self, backend: Backend, store: Store) -> None:
        assert await store.counts() == dict.fromkeys(TaskStatus, 0)
        done, failed, retrying, running = await store.add(
            [new(backend, priority=1) for _ in range(4)]
        )
        queued, cancelled, _ = await store.add([new(backend), new(backend), new(backend, delay=9)])
        assert len((await store.claim(OWNER, 4, 30.0)).tasks) == 4
        assert await store.complete(OWNER, done, 1, b"")
        assert await store.fail(OWNER, failed, 1, "e", None)
        assert await store.fail(OWNER, retrying, 1, "e", backend.now() + 60)
        assert await store.cancel(cancelled) is QUEUED
        assert await store.counts() == {
            QUEUED: 1,
            SCHEDULED: 1,
            RUNNING: 1,
            RETRYING: 1,
            COMPLETED: 1,
            FAILED: 1,
            CANCELLED: 1,
        }
        assert (await get(store, running)).status is RUNNING
        assert (await get(store, queued)).status is QUEUED

    async def test_oldest_due_age(self, backend: Backend, store: Store) -> None:
        """The earliest due claimable task's age: tasks not due, running or ended don't count."""

        def about(seconds: float) -> Any:  # advance() lets a little more time pass
            return pytest.approx(seconds, abs=backend.tolerance + 0.01)

        assert await store.oldest_due_age() is None
        (first,) = await store.add([new(backend)])
        await backend.advance(0.2)
        assert await store.oldest_due_age() == about(0.2)
        (later,) = await store.add([new(backend, delay=0.6)])
        assert (await claim_one(store)).id == first
        assert await store.oldest_due_age() is None  # running, and the other not due yet
        await backend.advance(0.7)
        assert await store.oldest_due_age() == about(0.1)
        assert await store.complete(OWNER, first, 1, b"")
        assert await store.oldest_due_age() == about(0.1)
        assert await store.cancel(later) is SCHEDULED
        assert await store.oldest_due_age() is None


# --- lease recovery and purge -------------------------------------------------------


class TestRecover:
    async def test_expired_leases(self, backend: Backend, store: Store) -> None:
        """Expired: retried now if attempts are left, else failed; live or finished rows stay."""
        retry, exhausted, renewed, done = await store.add(
            [new(backend, max_attempts=3), new(backend, max_attempts=1), new(backend), new(backend)]
        )
        assert len((await store.claim(OWNER, 4, SHORT_LEASE)).tasks) == 4
        assert await store.renew(OWNER, [renewed], 60.0) == Renewal(frozenset(), frozenset())
        await backend.advance(SHORT_LEASE)
        assert await store.complete(OWNER, done, 1, b"")  # finished late, but first
        renewed_before = await get(store, renewed)
        done_before = await get(store, done)
        now = backend.now()

        assert await recover_expired(store, "lease expired", now=now) == 2

        task = await get(store, retry)
        assert (task.status, task.attempts, task.errors) == (RETRYING, 1, ("lease expired",))
        assert (task.owner, task.lease_until, task.finished_at) == (None, None, None)
        assert task.due_at == backend.near(now)
        task = await get(store, exhausted)
        assert (task.status, task.errors, task.owner) == (FAILED, ("lease expired",), None)
        assert task.finished_at == backend.near(now)
        assert backend.same(await store.get(renewed), renewed_before)
        assert backend.same(await store.get(done), done_before)
        assert await recover_expired(store, "again", now=backend.now()) == 0
        # The lost attempt counted: the next claim runs attempt 2.
        assert [(t.id, t.attempts) for t in (await store.claim(OWNER, 5, 30.0)).tasks] == [
            (retry, 2)
        ]

    async def test_a_live_lease_is_left_alone(self, backend: Backend, store: Store) -> None:
        (task_id,) = await store.add([new(backend)])
        await claim_one(store, lease=30.0)
        before = await get(store, task_id)
        assert await store.expired(10) == ()
        assert await recover_expired(store, "lost", now=backend.now()) == 0
        assert backend.same(await store.get(task_id), before)

    async def test_the_lost_worker_cannot_write(self, backend: Backend, store: Store) -> None:
        """After recovery and a new claim, the old attempt's writes are refused."""
        (task_id,) = await store.add([new(backend)])
        await claim_one(store, owner="old", lease=SHORT_LEASE)
        await backend.advance(SHORT_LEASE)
        assert await recover_expired(store, "lease expired", now=backend.now()) == 1
        assert (await store.renew("old", [task_id], 30.0)).lost == {task_id}
        assert (await claim_one(store, owner="old")).attempts == 2
        assert not await store.complete("old", task_id, 1, b"stale")
        assert await store.complete("old", task_id, 2, b"fresh")
        assert (await get(store, task_id)).result == b"fresh"

    async def test_a_run_out_lease_is_renewed_until_recovered(
        self, backend: Backend, store: Store
    ) -> None:
        """A lease is held until recovery takes it: a late renewal still keeps the task."""
        (task_id,) = await store.add([new(backend)])
        await claim_one(store, lease=SHORT_LEASE)
        await backend.advance(SHORT_LEASE)
        assert await store.renew(OWNER, [task_id], 30.0) == Renewal(frozenset(), frozenset())
        assert await recover_expired(store, "lost", now=backend.now()) == 0
        assert await store.complete(OWNER, task_id, 1, b"late")

    async def test_concurrent_recoveries_recover_each_task_once(
        self, backend: Backend, store: Store, second_store: Store
    ) -> None:
        """Two store objects recovering at once: every task is recovered exactly once."""
        ids = await store.add([new(backend) for _ in range(6)])
        assert len((await store.claim("dead", 6, SHORT_LEASE)).tasks) == 6
        await backend.advance(SHORT_LEASE)
        recovered: list[int] = []

        async def recover(which: Store) -> None:
            recovered.append(await recover_expired(which, "lost", now=backend.now()))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(recover, store)
            nursery.start_soon(recover, second_store)
        assert sorted(recovered) == [0, 6]
        for task_id in ids:
            task = await get(store, task_id)
            assert (task.status, task.errors) == (RETRYING, ("lost",))

    async def test_expired_reads_oldest_lease_first_and_changes_nothing(
        self, backend: Backend, store: Store
    ) -> None:
        first, second, live = await store.add([new(backend), new(backend), new(backend)])
        assert await claim_one(store, lease=SHORT_LEASE) is not None  # first
        await backend.advance(0.1)
        assert await claim_one(store, lease=SHORT_LEASE) is not None  # second
        assert await claim_one(store, lease=60.0) is not None  # live
        await backend.advance(SHORT_LEASE)
        before = await get(store, first)
        rows = await store.expired(10)
        assert [row.id for row in rows] == [first, second]
        assert (rows[0].owner, rows[0].attempts, rows[0].status) == (OWNER, 1, RUNNING)
        assert [row.id for row in await store.expired(1)] == [first]
        assert backend.same(await store.get(first), before)
        assert (await get(store, live)).status is RUNNING

    async def test_target_applied_only_while_the_expired_holder_holds(
        self, backend: Backend, store: Store
    ) -> None:
        """A row renewed or finished between `expired` and `recover` is left alone."""
        renewed, finished, wrong = await store.add([new(backend), new(backend), new(backend)])
        assert len((await store.claim(OWNER, 3, SHORT_LEASE)).tasks) == 3
        await backend.advance(SHORT_LEASE)
        assert {row.id for row in await store.expired(10)} == {renewed, finished, wrong}
        assert await store.renew(OWNER, [renewed], 30.0) == Renewal(frozenset(), frozenset())
        assert await store.complete(OWNER, finished, 1, b"r")
        due = backend.now()
        targets = [
            Recovery(renewed, OWNER, 1, RETRYING, "lost", due),
            Recovery(finished, OWNER, 1, RETRYING, "lost", due),
            Recovery(wrong, "someone-else", 1, FAILED, "lost", None),
            Recovery(wrong, OWNER, 2, FAILED, "lost", None),
        ]
        assert await store.recover(targets) == 0
        for task_id, status in ((renewed, RUNNING), (finished, COMPLETED), (wrong, RUNNING)):
            assert (await get(store, task_id)).status is status
        assert await store.recover([Recovery(wrong, OWNER, 1, FAILED, "lost", None)]) == 1
        task = await get(store, wrong)
        assert (task.status, task.errors) == (FAILED, ("lost",))

    async def test_a_decided_backoff_is_applied(self, backend: Backend, store: Store) -> None:
        """A retrying target is due when the runtime said, not at once."""
        (task_id,) = await store.add([new(backend)])
        await claim_one(store, lease=SHORT_LEASE)
        await backend.advance(SHORT_LEASE)
        due = backend.now() + 60
        assert await store.recover([Recovery(task_id, OWNER, 1, RETRYING, "lost", due)]) == 1
        task = await get(store, task_id)
        assert (task.status, task.owner, task.finished_at) == (RETRYING, None, None)
        assert task.due_at == backend.near(due)
        claimed = await store.claim(OWNER, 1, 30.0)
        assert claimed.tasks == ()
        assert claimed.next_due == backend.near(due)

    async def test_bad_input(self, store: Store) -> None:
        with pytest.raises(TypeError, match="error must be a str"):
            await store.recover([Recovery("1", OWNER, 1, FAILED, None, None)])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="needs a due_at"):
            await store.recover([Recovery("1", OWNER, 1, RETRYING, "e", None)])
        with pytest.raises(ValueError, match="a recovered task becomes"):
            await store.recover([Recovery("1", OWNER, 1, QUEUED, "e", None)])
        with pytest.raises(TypeError):
            await store.recover(["1"])  # type: ignore[list-item]
        for limit in (0, 1001):
            with pytest.raises(ValueError):
                await store.expired(limit)
        assert await store.recover([]) == 0


class TestPurge:
    async def test_old_finished_tasks_only(self, backend: Backend, store: Store) -> None:
        done, failed, cancelled, recent, running, queued = await store.add(
            [new(backend, priority=1) for _ in range(5)] + [new(backend)]
        )
        await store.claim(OWNER, 5, 30.0)
        assert await store.complete(OWNER, done, 1, b"")
        assert await store.fail(OWNER, failed, 1, "e", None)
        assert await store.finish_cancelled(OWNER, cancelled, 1)
        await backend.advance(0.3)
        cutoff = backend.now()
        await backend.advance(0.3)
        assert await store.complete(OWNER, recent, 1, b"")
        assert await store.purge_finished(cutoff - 60) == 0
        assert await store.purge_finished(cutoff) == 3
        page = await store.page(status=None, name=None, limit=10, cursor=None)
        assert {task.id for task in page.tasks} == {recent, running, queued}
        assert (await store.counts())[COMPLETED] == 1
        assert await store.purge_finished(cutoff) == 0

    async def test_a_requeued_task_is_not_finished(self, backend: Backend, store: Store) -> None:
        (task_id,) = await store.add([new(backend)])
        assert await store.cancel(task_id) is QUEUED
        assert await store.requeue(task_id) is CANCELLED
        await backend.advance(0.1)
        assert await store.purge_finished(backend.now()) == 0
        assert (await get(store, task_id)).status is QUEUED

    @pytest.mark.parametrize(
        ("older_than", "error"),
        [(math.nan, ValueError), (math.inf, ValueError), ("x", TypeError), (None, TypeError)],
    )
    async def test_bad_input(self, store: Store, older_than: Any, error: type[Exception]) -> None:
        with pytest.raises(error):
            await store.purge_finished(older_than)


# --- wait_for_work ---------------------------------------------------------------------


class TestWaitForWork:
    async def test_times_out(self, store: Store) -> None:
        await store.wait_for_work(0.05)  # take any earlier wake-up
        start = trio.current_time()
        await store.wait_for_work(0.05)
        assert trio.current_time() - start >= 0.05

    async def test_an_add_wakes_a_waiter(
        self, backend: Backend, store: Store, nursery: trio.Nursery
    ) -> None:
        woke = trio.Event()

        async def waiter() -> None:
            await store.wait_for_work(30.0)
            woke.set()

        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        await store.add([new(backend)])
        with trio.fail_after(5):
            await woke.wait()

    @pytest.mark.parametrize("call", ["release", "requeue", "recover", "retry"])
    async def test_other_new_work_wakes(self, backend: Backend, store: Store, call: str) -> None:
        """Every write that makes a task claimable again wakes the waiter."""
        (task_id,) = await store.add([new(backend, max_attempts=5)])
        await claim_one(store, lease=SHORT_LEASE)
        await store.wait_for_work(0.05)  # take the add's wake-up
        if call == "release":
            assert await store.release(OWNER, task_id, 1)
        elif call == "requeue":
            assert await store.fail(OWNER, task_id, 1, "e", None)
            await store.wait_for_work(0.05)
            assert await store.requeue(task_id) is FAILED
        elif call == "recover":
            await backend.advance(SHORT_LEASE)
            assert await recover_expired(store, "gone", now=backend.now()) == 1
        else:
            assert await store.fail(OWNER, task_id, 1, "e", backend.now())
        with trio.fail_after(5):
            await store.wait_for_work(30.0)

    async def test_a_wake_up_is_kept_until_taken(self, backend: Backend, store: Store) -> None:
        """Work added before the wait is not missed; once taken, the next wait times out."""
        await store.wait_for_work(0.05)
        await store.add([new(backend)])
        with trio.fail_after(5):
            await store.wait_for_work(30.0)
        start = trio.current_time()
        await store.wait_for_work(0.05)
        assert trio.current_time() - start >= 0.05

    async def test_every_waiter_wakes(self, backend: Backend, store: Store) -> None:
        await store.wait_for_work(0.05)
        woke: list[int] = []

        async def waiter(k: int) -> None:
            await store.wait_for_work(30.0)
            woke.append(k)

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                for k in range(3):
                    nursery.start_soon(waiter, k)
                await trio.testing.wait_all_tasks_blocked()
                await store.add([new(backend)])
        assert sorted(woke) == [0, 1, 2]

    async def test_an_endless_wait_is_cancellable(self, store: Store) -> None:
        with trio.move_on_after(0.1) as scope:
            await store.wait_for_work(math.inf)
        assert scope.cancelled_caught

    @pytest.mark.parametrize(
        ("seconds", "error"), [(-1.0, ValueError), (math.nan, ValueError), ("1", TypeError)]
    )
    async def test_bad_timeout(self, store: Store, seconds: float, error: type[Exception]) -> None:
        with pytest.raises(error):
            await store.wait_for_work(seconds)


# --- lifecycle, checkpoints and cancellation --------------------------------------------


class TestLifecycle:
    async def test_calls_before_open_and_after_close_raise_store_error(
        self, backend: Backend
    ) -> None:
        store = backend.make()
        with pytest.raises(StoreError):
            await store.counts()
        await store.open()
        (task_id,) = await store.add([new(backend)])
        await store.aclose()
        await store.aclose()  # twice: fine
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: store.add([new(backend)]),
            lambda: store.claim(OWNER, 1, 30.0),
            lambda: store.get(task_id),
            lambda: store.cancel(task_id),
            lambda: store.counts(),
            lambda: store.page(status=None, name=None, limit=5, cursor=None),
        ]
        for call in calls:
            with pytest.raises(StoreError):
                await call()

    async def test_every_method_checkpoints(self, backend: Backend, store: Store) -> None:
        a, b, c = await store.add([new(backend), new(backend), new(backend)])
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: store.add([new(backend)]),
            lambda: store.claim(OWNER, 3, 30.0),
            lambda: store.renew(OWNER, [a, b, c], 30.0),
            lambda: store.complete(OWNER, a, 1, b""),
            lambda: store.complete_many(OWNER, [(a, 1, b"")]),
            lambda: store.fail(OWNER, b, 1, "e", None),
            lambda: store.finish_cancelled(OWNER, c, 1),
            lambda: store.release(OWNER, c, 1),
            lambda: store.cancel(c),
            lambda: store.requeue(c),
            lambda: store.get(a),
            lambda: store.page(status=None, name=None, limit=5, cursor=None),
            lambda: store.counts(),
            lambda: store.expired(10),
            lambda: store.recover([]),
            lambda: store.purge_finished(0.0),
            lambda: store.wait_for_work(0),
        ]
        for call in calls:
            with trio.testing.assert_checkpoints():
                await call()
        with trio.testing.assert_checkpoints():
            assert await store.cancel("not-an-id") is None
        closing = backend.make()
        await closing.open()
        with trio.testing.assert_checkpoints():
            await closing.aclose()

    async def test_a_cancelled_call_did_nothing(self, backend: Backend, store: Store) -> None:
        """A call cancelled before it starts raises Cancelled and changes nothing."""
        (task_id,) = await store.add([new(backend)])
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: store.add([new(backend)]),
            lambda: store.claim(OWNER, 1, 30.0),
            lambda: store.cancel(task_id),
        ]
        for call in calls:
            with trio.CancelScope() as scope:
                scope.cancel()
                await call()
            assert scope.cancelled_caught
        assert await store.counts() == {**dict.fromkeys(TaskStatus, 0), QUEUED: 1}


class TestNow:
    """``Store.now``: the clock of the times the store writes, in Unix seconds."""

    async def test_now_is_the_clock_of_the_times_it_writes(
        self, backend: Backend, store: Store
    ) -> None:
        now = store.now()
        assert isinstance(now, float)
        assert now == backend.near(backend.now())
        (task_id,) = await store.add([new(backend)])
        assert (await get(store, task_id)).created_at == backend.near(store.now())
        await backend.advance(0.1)
        later = store.now()
        assert later > now
        assert later == backend.near(backend.now())

    async def test_does_not_checkpoint(self, store: Store) -> None:
        with trio.testing.assert_no_checkpoints():
            store.now()

    @pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres"])
    def test_the_real_stores_use_the_wall_clock(self, kind: str, tmp_path: Path) -> None:
        """Left with their default clock, the stores say ``time.time()`` (and never go back)."""
        made: Store
        if kind == "memory":
            made = MemoryStore()
        elif kind == "sqlite":
            made = SQLiteStore(tmp_path / "wall.db")
        else:
            made = PostgresStore(PG_URL, schema="twq_contract_unused")  # never opened
        before = time.time()
        first = made.now()
        second = made.now()
        assert before <= first <= second <= time.time()
