# SPDX-License-Identifier: MIT
# White-box: drives PostgresStore's pool, listener, clock and maintenance lock.
# pyright: reportPrivateUsage=false
"""What is particular to `PostgresStore`, against a real PostgreSQL server (no mocks).

URLs and schemas, group commit, NOTIFY wake-ups across connections, the
maintenance lock, lost connections, clock skew, several processes. The `Store`
contract every store keeps is tested once in tests/test_store_contract.py.

The server is ``$TRIO_WORKQ_TEST_PG_URL`` (default: the local test server,
``postgresql://postgres@127.0.0.1:5432/test``). Every test uses a schema of
its own and drops it afterwards. Without a server the tests skip locally and
fail when ``CI`` is set. Every test is bounded by `trio.fail_after`.
"""

from __future__ import annotations

import functools
import json
import math
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import psycopg
import pytest
import trio
import trio.testing
from _pg import PG_URL, require_postgres
from _recovery import recover_expired
from psycopg import sql

from trio_workq._core.status import TaskStatus
from trio_workq._stores.postgres import (
    _MAINTENANCE_LOCK,
    SCHEMA_VERSION,
    PostgresStore,
    _Queries,
)
from trio_workq._stores.protocol import NewTask, StoreError

if TYPE_CHECKING:
    from typing_extensions import LiteralString

WORKER = Path(__file__).with_name("_pg_worker.py")
QUEUED, SCHEDULED, RUNNING = TaskStatus.QUEUED, TaskStatus.SCHEDULED, TaskStatus.RUNNING
RETRYING, COMPLETED, FAILED = TaskStatus.RETRYING, TaskStatus.COMPLETED, TaskStatus.FAILED
CANCELLED = TaskStatus.CANCELLED

TestFn = Callable[..., Awaitable[None]]


def bounded(seconds: float) -> Callable[[TestFn], TestFn]:
    """Fail the decorated test if it runs longer than *seconds*."""

    def decorate(test: TestFn) -> TestFn:
        @functools.wraps(test)  # keeps the signature, so fixtures still resolve
        async def run(*args: Any, **kwargs: Any) -> None:
            with trio.fail_after(seconds):
                await test(*args, **kwargs)

        return run

    return decorate


@pytest.fixture(scope="module")
def pg_url() -> str:
    return require_postgres()


@pytest.fixture
def schema(pg_url: str) -> Iterator[str]:
    name = f"twq_test_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
async def store(pg_url: str, schema: str) -> AsyncIterator[PostgresStore]:
    opened = PostgresStore(pg_url, schema=schema)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.aclose()


@pytest.fixture
async def other(pg_url: str, schema: str, store: PostgresStore) -> AsyncIterator[PostgresStore]:
    """A second store on the same schema: another process, as far as the server knows."""
    opened = PostgresStore(pg_url, schema=schema)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.aclose()


async def admin(
    query: LiteralString | sql.Composed, params: dict[str, Any] | None = None
) -> list[tuple[Any, ...]]:
    """Run *query* on a connection of its own (as a DBA would); return its rows."""

    def run() -> list[tuple[Any, ...]]:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    return await trio.to_thread.run_sync(run)


def tasks_table(schema: str) -> sql.Identifier:
    return sql.Identifier(schema, "tasks")


def new(
    name: str = "job",
    *,
    priority: int = 0,
    delay: float = 0.0,
    max_attempts: int = 3,
    timeout: float | None = None,
    payload: bytes = b"[]",
) -> NewTask:
    return NewTask(
        name=name,
        payload=payload,
        priority=priority,
        due_at=time.time() + delay,
        max_attempts=max_attempts,
        timeout=timeout,
        status=SCHEDULED if delay > 0 else QUEUED,
    )


async def claim_one(store: PostgresStore, owner: str = "w1", lease: float = 30.0) -> str:
    claimed = await store.claim(owner, 1, lease)
    assert len(claimed.tasks) == 1
    return claimed.tasks[0].id


# -- construction and lifecycle ------------------------------------------------------------


def test_exported_lazily_from_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """`trio_workq.PostgresStore` is the store; without psycopg it says which extra to install."""
    import trio_workq

    assert trio_workq.PostgresStore is PostgresStore
    assert "PostgresStore" not in trio_workq.__all__  # `import *` must not need psycopg
    monkeypatch.delitem(sys.modules, "trio_workq._stores.postgres")
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"pip install 'trio_workq\[postgres\]'"):
        trio_workq.PostgresStore  # noqa: B018 - the attribute access is the test


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"url": 5}, TypeError),
        ({"url": "mysql://x@127.0.0.1/db"}, ValueError),
        ({"url": "sqlite:///tasks.db"}, ValueError),
        ({"url": "postgresql://127.0.0.1/test?nosuchoption=1"}, ValueError),
        ({"schema": 3}, TypeError),
        ({"schema": ""}, ValueError),
        ({"schema": "1abc"}, ValueError),
        ({"schema": "a-b"}, ValueError),
        ({"schema": 'x"; DROP TABLE y; --'}, ValueError),
        ({"schema": "a" * 64}, ValueError),
        ({"url": "postgresql://127.0.0.1/test?schema=a-b"}, ValueError),
        ({"url": "postgresql://127.0.0.1/test?schema="}, ValueError),
        ({"url": "postgresql://127.0.0.1/test?schema=one", "schema": "two"}, ValueError),
        ({"pool_size": 0}, ValueError),
        ({"pool_size": 2.0}, TypeError),
        ({"pool_size": True}, TypeError),
        ({"connect_retry_seconds": -1}, ValueError),
        ({"connect_retry_seconds": math.nan}, ValueError),
        ({"connect_retry_seconds": math.inf}, ValueError),
        ({"connect_retry_seconds": "5"}, TypeError),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs: dict[str, Any], error: type[Exception]) -> None:
    """Bad constructor arguments raise at once, naming the argument."""
    arguments: dict[str, Any] = {"url": PG_URL, **kwargs}
    url = arguments.pop("url")
    with pytest.raises(error):
        PostgresStore(url, **arguments)


def test_schema_from_the_url() -> None:
    """A ``schema`` query parameter picks the schema; the rest of the URL goes to libpq."""
    url = "postgresql://u@127.0.0.1:5432/test?connect_timeout=3&schema=jobs&sslmode=disable"
    store = PostgresStore(url)
    assert (store.schema, store.url) == ("jobs", url)
    assert "schema" not in store._pool.conninfo
    assert "connect_timeout=3" in store._pool.conninfo
    assert "sslmode=disable" in store._pool.conninfo
    assert PostgresStore(url, schema="jobs").schema == "jobs"
    assert PostgresStore("postgresql://u@h/db?schema=a").schema == "a"
    assert PostgresStore("postgresql://u@h/db").schema == "trio_workq"


def test_repr_hides_the_password() -> None:
    """Messages and reprs never show the password."""
    store = PostgresStore("postgresql://alice:s3cret@127.0.0.1:5432/test", schema="s")
    assert "s3cret" not in repr(store)
    assert repr(store) == "PostgresStore('postgresql://alice:***@127.0.0.1:5432/test', schema='s')"
    in_query = PostgresStore("postgresql://alice@127.0.0.1/test?password=s3cret&sslmode=disable")
    assert repr(in_query) == (
        "PostgresStore('postgresql://alice@127.0.0.1/test?password=***&sslmode=disable', "
        "schema='trio_workq')"
    )


@bounded(10)
async def test_use_before_open_and_after_close_raises(pg_url: str, schema: str) -> None:
    """Calls on a store that is not open raise StoreError; aclose is idempotent; no reopen."""
    store = PostgresStore(pg_url, schema=schema)
    with pytest.raises(StoreError, match="not open"):
        await store.get("1")
    await store.open()
    with pytest.raises(StoreError, match="already opened"):
        await store.open()
    await store.aclose()
    await store.aclose()
    with pytest.raises(StoreError, match="not open"):
        await store.add([new()])
    with pytest.raises(StoreError, match="not open"):
        await store.wait_for_work(0.1)


@bounded(10)
async def test_reopening_keeps_tasks_and_schema_version(pg_url: str, schema: str) -> None:
    """A second open of an existing schema migrates nothing and sees the tasks."""
    first = PostgresStore(pg_url, schema=schema)
    await first.open()
    [task_id] = await first.add([new("kept")])
    await first.aclose()
    second = PostgresStore(pg_url, schema=schema)
    await second.open()
    try:
        task = await second.get(task_id)
        assert task is not None
        assert task.name == "kept"
        rows = await admin(
            sql.SQL("SELECT value FROM {}").format(sql.Identifier(schema, "meta")),
        )
        assert rows == [(str(SCHEMA_VERSION),)]
    finally:
        await second.aclose()


@bounded(15)
async def test_upgrades_a_version_1_schema(pg_url: str, schema: str) -> None:
    """A schema written by trio_workq before task headers: migrated, its tasks kept and runnable."""
    queries = _Queries.for_schema(schema)

    def create_version_1() -> None:
        with psycopg.connect(pg_url) as conn, conn.transaction():
            conn.execute(queries.create_schema)
            conn.execute(queries.create_meta)
            for statement in queries.migrations[1]:  # version 1, as released
                conn.execute(statement)
            conn.execute(queries.write_version, {"version": "1"})
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (name, payload, status, priority, max_attempts, created_at,"
                    " due_at) VALUES ('old', '\\x5b5d', 'queued', 0, 1, %(now)s, %(now)s)"
                ).format(tasks_table(schema)),
                {"now": time.time()},
            )

    await trio.to_thread.run_sync(create_version_1)
    meta = sql.SQL("SELECT value FROM {}").format(sql.Identifier(schema, "meta"))
    assert await admin(meta) == [("1",)]
    store = PostgresStore(pg_url, schema=schema)
    await store.open()
    try:
        assert await admin(meta) == [(str(SCHEMA_VERSION),)]
        [new_id] = await store.add([attrs.evolve(new("new", priority=-1), headers={"k": "v"})])
        claimed = await store.claim("w1", 2, 30.0)
        assert [(t.name, t.headers) for t in claimed.tasks] == [("old", {}), ("new", {"k": "v"})]
        assert claimed.tasks[0].payload == b"[]"
        got = await store.get(new_id)
        assert got is not None
        assert got.headers == {"k": "v"}
    finally:
        await store.aclose()
    # Opening it again migrates nothing more.
    again = PostgresStore(pg_url, schema=schema)
    await again.open()
    await again.aclose()
    assert await admin(meta) == [(str(SCHEMA_VERSION),)]


# -- group commit: adds -----------------------------------------------------------------------


@bounded(10)
async def test_concurrent_adds_get_their_own_ids(store: PostgresStore) -> None:
    """Adds that share a statement still hand every caller its own ids, in order."""
    results: dict[int, list[str]] = {}

    async def add(caller: int) -> None:
        results[caller] = await store.add([new(f"c{caller}-{k}") for k in range(3)])

    async with trio.open_nursery() as nursery:
        for caller in range(20):
            nursery.start_soon(add, caller)
    for caller, ids in results.items():
        for k, task_id in enumerate(ids):
            task = await store.get(task_id)
            assert task is not None
            assert task.name == f"c{caller}-{k}"
    assert len({task_id for ids in results.values() for task_id in ids}) == 60


# -- group commit: completions -------------------------------------------------------------


@bounded(15)
async def test_concurrent_completions_share_statements(store: PostgresStore) -> None:
    """Completions awaiting at the same time are written together, each answered right."""
    ids = await store.add([new(f"t{k}") for k in range(60)])
    claimed = await store.claim("me", 60, 60.0)
    assert len(claimed.tasks) == 60
    flushes: list[int] = []
    make_op = store._completions._make_op

    def counting(items: list[tuple[int, str, int, bytes]]) -> Any:
        flushes.append(len(items))
        return make_op(items)

    store._completions._make_op = counting
    answers: dict[str, bool] = {}

    async def complete(task_id: str, attempt: int) -> None:
        answers[task_id] = await store.complete("me", task_id, attempt, task_id.encode())

    async with trio.open_nursery() as nursery:
        for k, task_id in enumerate(ids):
            nursery.start_soon(complete, task_id, 1 if k % 10 else 2)  # every 10th: wrong attempt
    assert sum(flushes) == 60
    assert len(flushes) < 30
    for k, task_id in enumerate(ids):
        assert answers[task_id] is bool(k % 10)
        task = await store.get(task_id)
        assert task is not None
        if k % 10:
            assert (task.status, task.result) == (COMPLETED, task_id.encode())
        else:
            assert task.status is RUNNING


@bounded(15)
async def test_cancelled_completion_is_withdrawn_unless_in_flight(store: PostgresStore) -> None:
    """A parked completion cancelled before its batch is sent is not written; the rest are."""
    ids = await store.add([new(f"t{k}") for k in range(4)])
    assert len((await store.claim("me", 4, 60.0)).tasks) == 4
    answers: dict[str, bool] = {}
    scopes: dict[str, trio.CancelScope] = {}

    async def complete(task_id: str) -> None:
        with trio.CancelScope() as scope:
            scopes[task_id] = scope
            answers[task_id] = await store.complete("me", task_id, 1, b"r")

    # Hold every connection so that the leader waits and the others park.
    tokens = [object() for _ in range(4)]
    for token in tokens:
        await store._pool.limiter.acquire_on_behalf_of(token)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(complete, ids[0])  # leads, and waits for a connection
        await trio.testing.wait_all_tasks_blocked()
        for task_id in ids[1:]:
            nursery.start_soon(complete, task_id)
        await trio.testing.wait_all_tasks_blocked()
        scopes[ids[0]].cancel()  # the leader: hands over to the first parked caller
        scopes[ids[2]].cancel()  # a parked caller
        await trio.testing.wait_all_tasks_blocked()
        for token in tokens:
            store._pool.limiter.release_on_behalf_of(token)
    assert answers == {ids[1]: True, ids[3]: True}
    statuses = [task.status for task in [await store.get(task_id) for task_id in ids] if task]
    assert statuses == [RUNNING, COMPLETED, RUNNING, COMPLETED]


@bounded(15)
async def test_completion_cancelled_in_flight_still_returns_its_result(
    store: PostgresStore, schema: str
) -> None:
    """Once its batch was sent, a completion is not cancelled: it returns what was written."""
    ids = await store.add([new("a"), new("b")])
    assert len((await store.claim("me", 2, 60.0)).tasks) == 2
    answers: dict[str, bool] = {}
    scopes: dict[str, trio.CancelScope] = {}

    async def complete(task_id: str) -> None:
        with trio.CancelScope() as scope:
            scopes[task_id] = scope
            answers[task_id] = await store.complete("me", task_id, 1, b"r")

    def lock_rows() -> psycopg.Connection[Any]:
        conn = psycopg.connect(PG_URL)
        conn.execute(sql.SQL("SELECT * FROM {} FOR UPDATE").format(tasks_table(schema)))
        return conn

    locker = await trio.to_thread.run_sync(lock_rows)  # the batch's UPDATE will wait
    try:
        async with trio.open_nursery() as nursery:
            for task_id in ids:
                nursery.start_soon(complete, task_id)
            await _blocked_backend(f"trio_workq {schema}")  # the batch is in flight
            for scope in scopes.values():
                scope.cancel()
            await trio.to_thread.run_sync(locker.rollback)
    finally:
        await trio.to_thread.run_sync(locker.close)
    assert answers == {ids[0]: True, ids[1]: True}
    assert (await store.counts())[COMPLETED] == 2


# -- maintenance ---------------------------------------------------------------------------


@bounded(10)
async def test_maintenance_runs_on_one_process_at_a_time(
    store: PostgresStore, other: PostgresStore, schema: str
) -> None:
    """While another process holds the maintenance lock, recover and purge return 0."""
    ids = await store.add([new(f"t{k}") for k in range(6)])
    assert len((await store.claim("dead", 3, 0.05)).tasks) == 3
    for task_id in ids[3:]:
        assert await store.cancel(task_id) is QUEUED
    await trio.sleep(0.2)

    lock_args = {"ns": _MAINTENANCE_LOCK, "key": store._lock_key}

    def hold_lock() -> psycopg.Connection[Any]:
        conn = psycopg.connect(PG_URL, autocommit=True)
        conn.execute("SELECT pg_advisory_lock(%(ns)s, %(key)s)", lock_args)
        return conn

    holder = await trio.to_thread.run_sync(hold_lock)
    try:
        assert await recover_expired(store, "lost") == 0
        assert await other.purge_finished(time.time() + 60) == 0
    finally:
        # Unlock explicitly: a closing session releases its locks only once its backend exits.
        await trio.to_thread.run_sync(
            lambda: holder.execute("SELECT pg_advisory_unlock(%(ns)s, %(key)s)", lock_args)
        )
        await trio.to_thread.run_sync(holder.close)

    results: list[int] = []

    async def recover(which: PostgresStore) -> None:
        results.append(await recover_expired(which, "lost"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(recover, store)
        nursery.start_soon(recover, other)
    assert sorted(results) == [0, 3]  # one took the lock (or came second and found none)
    for task_id in ids[:3]:
        task = await store.get(task_id)
        assert task is not None
        assert (task.status, task.errors) == (RETRYING, ("lost",))  # recovered exactly once
    assert await other.purge_finished(time.time() + 60) == 3


# -- wake-ups ------------------------------------------------------------------------------


@bounded(20)
async def test_notify_wakes_a_listener_within_milliseconds(
    store: PostgresStore, other: PostgresStore
) -> None:
    """An add on another connection wakes wait_for_work long before its timeout."""
    await store.wait_for_work(0.05)  # consume our own earlier notifications, if any
    latencies: list[float] = []

    async def add_later(started: trio.Event, sent: list[float]) -> None:
        await started.wait()
        await trio.sleep(0.01)
        sent.append(trio.current_time())
        await other.add([new()])

    for _ in range(20):
        started, sent = trio.Event(), list[float]()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(add_later, started, sent)
            started.set()
            await store.wait_for_work(10.0)
            latencies.append(trio.current_time() - sent[0])
    # The add's own round trip is included; the backstop (10 s) is far away.
    assert max(latencies) < 1.0
    assert statistics.median(latencies) < 0.05


@bounded(10)
async def test_every_waiter_wakes(store: PostgresStore, other: PostgresStore) -> None:
    """Several tasks waiting at once all wake on one notification."""
    await store.wait_for_work(0.05)
    woke: list[float] = []

    async def waiter() -> None:
        await store.wait_for_work(10.0)
        woke.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        await other.add([new()])
    assert len(woke) == 3
    assert max(woke) - start < 1.0


@bounded(20)
async def test_listener_reconnects_after_its_connection_drops(
    store: PostgresStore, other: PostgresStore
) -> None:
    await store.wait_for_work(0.05)
    listener = store._listener._conn
    assert listener is not None
    pid = listener.info.backend_pid
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.wait_for_work, 10.0)
        await trio.testing.wait_all_tasks_blocked()
        await admin("SELECT pg_terminate_backend(%(pid)s)", {"pid": pid})
    # The drop woke the waiter early (a hint may have been lost); the next wait reconnects.
    await store.wait_for_work(10.0)
    assert store._listener._conn is not None
    assert store._listener._conn.info.backend_pid != pid
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.wait_for_work, 10.0)
        await trio.testing.wait_all_tasks_blocked()
        await other.add([new()])
    assert trio.current_time() - start < 2.0


@bounded(10)
async def test_aclose_wakes_a_waiter(store: PostgresStore) -> None:
    await store.wait_for_work(0.05)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.wait_for_work, 30.0)
        await trio.testing.wait_all_tasks_blocked()
        await store.aclose()
    with pytest.raises(StoreError, match="not open"):
        await store.wait_for_work(1.0)


@bounded(20)
async def test_listener_keeps_trying_while_the_server_is_unreachable(
    store: PostgresStore, other: PostgresStore
) -> None:
    """While LISTEN cannot reconnect, waits end at their timeout; it recovers afterwards."""
    await store.wait_for_work(0.05)
    listener = store._listener._conn
    assert listener is not None
    reachable = store._pool.conninfo
    store._pool.conninfo = f"host=127.0.0.1 port={closed_port()} user=postgres dbname=test"
    await admin("SELECT pg_terminate_backend(%(pid)s)", {"pid": listener.info.backend_pid})
    await store.wait_for_work(10.0)  # woken by the drop
    start = trio.current_time()
    await store.wait_for_work(0.5)  # reconnecting fails: the backstop timeout ends it
    assert 0.5 <= trio.current_time() - start < 3.0
    assert store._listener._conn is None
    store._pool.conninfo = reachable
    await store.wait_for_work(10.0)  # reconnects (and returns: hints may have been missed)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.wait_for_work, 10.0)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        await other.add([new()])
    assert trio.current_time() - start < 2.0


# -- failures ------------------------------------------------------------------------------


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@bounded(15)
async def test_unreachable_server_fails_after_bounded_retries() -> None:
    store = PostgresStore(
        f"postgresql://postgres@127.0.0.1:{closed_port()}/test", connect_retry_seconds=1.0
    )
    start = trio.current_time()
    with pytest.raises(StoreError, match=r"cannot connect after [2-9]\d* attempt") as caught:
        await store.open()
    assert 1.0 <= trio.current_time() - start < 10.0
    assert "127.0.0.1" in str(caught.value)
    with pytest.raises(StoreError, match="not open"):
        await store.claim("w", 1, 10.0)


@bounded(15)
async def test_wrong_credentials_fail_at_once(pg_url: str) -> None:
    url = f"postgresql://no_such_user_{uuid.uuid4().hex[:8]}:pw@127.0.0.1:5432/test"
    store = PostgresStore(url, connect_retry_seconds=10.0)
    start = trio.current_time()
    with pytest.raises(StoreError, match="refused") as caught:
        await store.open()
    assert trio.current_time() - start < 5.0  # not retried for 10 s
    assert "no_such_user" in str(caught.value)
    assert ":pw@" not in str(caught.value)


@bounded(10)
async def test_newer_schema_version_is_refused(pg_url: str, schema: str) -> None:
    first = PostgresStore(pg_url, schema=schema)
    await first.open()
    await first.aclose()
    await admin(
        sql.SQL("UPDATE {} SET value = '99' WHERE key = 'schema_version'").format(
            sql.Identifier(schema, "meta")
        )
    )
    store = PostgresStore(pg_url, schema=schema)
    with pytest.raises(StoreError, match=rf"version 99, newer than version {SCHEMA_VERSION}"):
        await store.open()
    with pytest.raises(StoreError, match="not open"):
        await store.counts()


@bounded(20)
async def test_operations_survive_terminated_connections(
    store: PostgresStore, other: PostgresStore, schema: str
) -> None:
    """After every backend of the store is terminated, the next operations just work."""
    ids = await store.add([new(f"t{k}") for k in range(4)])
    async with trio.open_nursery() as nursery:  # fill the pool: several connections
        for task_id in ids:
            nursery.start_soon(store.get, task_id)
    terminated = await admin(
        "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = %(name)s",
        {"name": f"trio_workq {schema}"},
    )
    assert len(terminated) >= 4  # this test's two stores: pools and listeners
    # pg_terminate_backend only signals: wait until the backends have gone (and said so).
    pids = [row[0] for row in terminated]
    while True:
        if not await admin("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%(p)s)", {"p": pids}):
            break
        await trio.sleep(0.02)
    assert len(await store.add([new("after")])) == 1
    claimed = await store.claim("me", 10, 30.0)
    assert len(claimed.tasks) == 5
    results = [await store.complete("me", t.id, 1, b"r") for t in claimed.tasks]
    assert results == [True] * 5
    assert (await other.counts())[COMPLETED] == 5
    await other.wait_for_work(0.05)  # its listener reconnects too
    async with trio.open_nursery() as nursery:
        nursery.start_soon(other.wait_for_work, 10.0)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        await store.add([new()])
    assert trio.current_time() - start < 2.0


async def _blocked_backend(application_name: str) -> int:
    """The pid of our backend that waits for a lock, once there is one."""
    while True:
        rows = await admin(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %(name)s "
            "AND wait_event_type = 'Lock'",
            {"name": application_name},
        )
        if rows:
            return int(rows[0][0])
        await trio.sleep(0.02)


@bounded(20)
async def test_drop_mid_statement_retries_reads_and_reports_writes(
    store: PostgresStore, schema: str
) -> None:
    """A read is retried on a new connection; an add's outcome is unknown: StoreError."""
    [task_id] = await store.add([new()])
    outcomes: dict[str, Any] = {}

    async def attempt(name: str, call: Callable[[], Awaitable[Any]]) -> None:
        try:
            outcomes[name] = await call()
        except StoreError as exc:
            outcomes[name] = exc

    for name, call in (
        ("get", lambda: store.get(task_id)),
        ("add", lambda: store.add([new("blocked")])),
    ):

        def lock_table() -> psycopg.Connection[Any]:
            conn = psycopg.connect(PG_URL)
            conn.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(tasks_table(schema))
            )
            return conn

        locker = await trio.to_thread.run_sync(lock_table)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(attempt, name, call)
                pid = await _blocked_backend(f"trio_workq {schema}")
                await admin("SELECT pg_terminate_backend(%(pid)s)", {"pid": pid})
                if name == "get":  # the retry waits for the lock again
                    await _blocked_backend(f"trio_workq {schema}")
                await trio.to_thread.run_sync(locker.rollback)
        finally:
            await trio.to_thread.run_sync(locker.close)
    task = outcomes["get"]
    assert not isinstance(task, StoreError)
    assert task.id == task_id
    assert isinstance(outcomes["add"], StoreError)
    assert "may or may not have been applied" in str(outcomes["add"])
    assert len(await store.add([new("after")])) == 1  # and the store goes on


# -- clocks --------------------------------------------------------------------------------


@bounded(10)
async def test_a_skewed_client_clock_is_rebased_onto_the_database_clock(
    pg_url: str, schema: str, store: PostgresStore
) -> None:
    """Due times are relative to the caller's clock; times come back in the caller's clock."""
    ahead = PostgresStore(pg_url, schema=schema)
    ahead._clock = lambda: time.time() + 3600.0  # this "host" is an hour ahead
    await ahead.open()
    try:
        skewed_now = ahead._clock()
        [soon, later] = await ahead.add(
            [
                NewTask("soon", b"", 0, skewed_now + 0.3, 1, None, SCHEDULED),
                NewTask("later", b"", 0, skewed_now + 60, 1, None, SCHEDULED),
            ]
        )
        [now_task] = await ahead.add([NewTask("now", b"", 0, skewed_now, 1, None, QUEUED)])
        first = await store.claim("w", 10, 30.0)  # a host with a correct clock
        assert [t.id for t in first.tasks] == [now_task]
        await trio.sleep(0.5)
        claimed = await ahead.claim("w", 10, 30.0)
        assert [t.id for t in claimed.tasks] == [soon]
        assert claimed.tasks[0].lease_until == pytest.approx(ahead._clock() + 30, abs=1)
        assert claimed.next_due == pytest.approx(skewed_now + 60, abs=1)
        seen_here = await store.get(later)
        assert seen_here is not None
        assert seen_here.due_at == pytest.approx(time.time() + 59.5, abs=1)
    finally:
        await ahead.aclose()


# -- several processes ---------------------------------------------------------------------


async def _run_together(url: str, schema: str, mode: str, count: int) -> list[str]:
    """Start *count* worker processes, release them at once, return their stdout."""
    processes = [
        await trio.lowlevel.open_process(
            [sys.executable, str(WORKER), url, schema, mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for _ in range(count)
    ]
    outputs: list[bytes] = [b""] * count
    try:
        for k, process in enumerate(processes):  # every one imported and waiting
            assert process.stdout is not None
            while b"\n" not in outputs[k]:
                chunk = await process.stdout.receive_some()
                assert chunk, f"worker {k} exited early"
                outputs[k] += chunk
        for process in processes:
            assert process.stdin is not None
            await process.stdin.send_all(b"go\n")

        async def finish(k: int, process: trio.Process) -> None:
            assert process.stdout is not None
            while chunk := await process.stdout.receive_some():
                outputs[k] += chunk
            assert await process.wait() == 0

        async with trio.open_nursery() as nursery:
            for k, process in enumerate(processes):
                nursery.start_soon(finish, k, process)
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
            await process.wait()
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    await pipe.aclose()
    return [output.decode().split("\n", 1)[1].strip() for output in outputs]


@bounded(40)
async def test_three_processes_migrate_a_fresh_schema_at_once(pg_url: str, schema: str) -> None:
    outputs = await _run_together(pg_url, schema, "open", 3)
    assert outputs == ["opened"] * 3
    rows = await admin(sql.SQL("SELECT value FROM {}").format(sql.Identifier(schema, "meta")))
    assert rows == [(str(SCHEMA_VERSION),)]


@bounded(50)
async def test_three_processes_never_claim_a_task_twice(pg_url: str, schema: str) -> None:
    """SKIP LOCKED across processes: 10,000 tasks, every one claimed exactly once."""
    setup = PostgresStore(pg_url, schema=schema)
    await setup.open()
    try:
        ids = await setup.add([new(f"t{k}", priority=k % 3) for k in range(10_000)])
    finally:
        await setup.aclose()
    outputs = await _run_together(pg_url, schema, "claim", 3)
    claims = [json.loads(output) for output in outputs]
    every = [task_id for claimed in claims for task_id in claimed]
    assert len(every) == 10_000
    assert sorted(every, key=int) == ids
    assert all(claimed for claimed in claims), [len(claimed) for claimed in claims]
    rows = await admin(
        sql.SQL("SELECT status, attempts, count(*) FROM {} GROUP BY status, attempts").format(
            tasks_table(schema)
        )
    )
    assert rows == [("running", 1, 10_000)]
