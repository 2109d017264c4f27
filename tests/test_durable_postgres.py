# SPDX-License-Identifier: MIT
"""The durable runtime on PostgreSQL: worker processes sharing one queue (no mocks).

Worker processes run ``python -m trio_workq worker durable_helper --store
postgresql://…?schema=…`` (the real command line); their tasks append
``EVENT KEY PID`` lines to a log file, which tells exactly how often each
task ran and where. Rows are read with plain psycopg.

The server is ``$TRIO_WORKQ_TEST_PG_URL`` (default: the local test server).
Every test uses a schema of its own and drops it afterwards. Without a
server the tests skip locally and fail when ``CI`` is set.

``test_server_restart_mid_run`` restarts a throwaway server of its own
(`_pg_cluster`), never the shared one.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import durable_helper as helper
import psycopg
import pytest
import trio
from _pg import PG_URL, require_cluster, require_postgres
from _pg_cluster import PostgresCluster
from _worker_processes import TESTS, WorkerProcesses
from psycopg import sql

import trio_workq
from trio_workq import StoreError, TaskStatus
from trio_workq._durable.queue import LEASE_EXPIRED_ERROR, DurableWorkQueue, open_durable_queue
from trio_workq._stores.postgres import SCHEMA_VERSION, PostgresStore
from trio_workq.testing import drain

if TYPE_CHECKING:
    from typing_extensions import LiteralString


def _url(schema: str, server: str = PG_URL) -> str:
    separator = "&" if "?" in server else "?"
    return f"{server}{separator}schema={schema}"


@pytest.fixture(scope="module")
def pg_url() -> str:
    return require_postgres()


@pytest.fixture
def schema(pg_url: str) -> Iterator[str]:
    name = f"twq_durable_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


class Env(WorkerProcesses):
    """One test's schema and log file, and the worker processes it starts."""

    poll_interval = 0.5

    def __init__(self, tmp_path: Path, schema: str, server: str = PG_URL) -> None:
        self.schema = schema
        self.server = server
        super().__init__(tmp_path, _url(schema, server))

    async def rows(
        self, query: LiteralString, params: dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run *query* with ``{tasks}`` naming this test's table, on a connection of its own."""
        statement = sql.SQL(query).format(tasks=sql.Identifier(self.schema, "tasks"))

        def run() -> list[tuple[Any, ...]]:
            with psycopg.connect(self.server, autocommit=True) as conn:
                cursor = conn.execute(statement, params)
                return cursor.fetchall() if cursor.description else []

        return await trio.to_thread.run_sync(run)

    async def wait_for_completed(self, count: int, *, within: float = 40) -> None:
        with trio.fail_after(within):
            while True:
                done = await self.rows("SELECT count(*) FROM {tasks} WHERE status = 'completed'")
                if done[0][0] >= count:
                    return
                await trio.sleep(0.05)


@pytest.fixture
async def env(tmp_path: Path, schema: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Env]:
    environment = Env(tmp_path, schema)
    monkeypatch.setenv(helper.LOG_ENV, str(environment.log))  # for tasks run in this process
    try:
        yield environment
    finally:
        await environment.aclose()


@pytest.fixture
async def producer(env: Env) -> AsyncIterator[DurableWorkQueue]:
    """A queue without workers in the test process: it submits and inspects."""
    async with open_durable_queue(store=env.url, workers=0) as queue:
        yield queue


async def test_three_processes_run_10000_tasks_exactly_once(
    env: Env, producer: DurableWorkQueue
) -> None:
    """Three worker processes share one queue: each of 10,000 tasks completes exactly once."""
    with trio.fail_after(50):
        workers = [await env.start_worker("--workers", "20", "--lease", "10") for _ in range(3)]
        for start in range(0, 10_000, 500):  # batches, so workers run while the rest is added
            await producer.submit_many(helper.quick, [(key,) for key in range(start, start + 500)])
        # The producer's statistics cover the store: it waits for the workers' processes.
        await drain(producer)
        assert (await producer.statistics()).completed == 10_000
        for process in workers:
            assert await env.stop(process) == 0, env.worker_output()

    runs = env.runs()
    assert Counter(key for _, key, _ in runs) == Counter(range(10_000))  # each ran exactly once
    by_process = Counter(pid for _, _, pid in runs)
    assert set(by_process) == {process.pid for process in workers}  # all three took part
    assert await env.rows("SELECT status, attempts, count(*) FROM {tasks} GROUP BY 1, 2") == [
        ("completed", 1, 10_000)
    ]


async def test_sigkill_one_of_three(env: Env, producer: DurableWorkQueue) -> None:
    """SIGKILL one of three workers: the others recover its tasks after the lease."""
    count = 200
    with trio.fail_after(40):
        handles = await producer.submit_many(helper.work, [(key, 0.2) for key in range(count)])
        key_of = {handle.id: key for key, handle in enumerate(handles)}
        workers = [await env.start_worker("--workers", "4", "--lease", "2") for _ in range(3)]
        victim = workers[0]
        await env.wait_for_log("start", 6, pid=victim.pid)  # busy on its second round
        assert await env.stop(victim, signal.SIGKILL) == -signal.SIGKILL
        # The server may still finish a statement the victim had in flight.
        await trio.sleep(0.3)
        held = {
            key_of[str(id_)]
            for (id_,) in await env.rows(
                "SELECT id FROM {tasks} WHERE status = 'running' AND owner LIKE %(owner)s",
                {"owner": f"%:{victim.pid}:%"},
            )
        }
        assert held  # it died holding tasks
        runs = env.runs()
        started_by_victim = {key for e, key, pid in runs if (e, pid) == ("start", victim.pid)}
        ended_by_victim = {key for e, key, pid in runs if (e, pid) == ("end", victim.pid)}

        await env.wait_for_completed(count, within=30)
        for process in workers[1:]:
            assert await env.stop(process) == 0, env.worker_output()

    runs = env.runs()
    starts = Counter(key for event, key, _ in runs if event == "start")
    ends = Counter(key for event, key, _ in runs if event == "end")
    assert set(ends) == set(range(count))  # none lost
    rows = await env.rows("SELECT id, attempts, errors FROM {tasks}")
    # Recovery records why the lost attempt failed: that tells which tasks were recovered.
    recovered = {key_of[str(id_)] for id_, _, errors in rows if errors}
    assert all(errors in ([], [LEASE_EXPIRED_ERROR]) for _, _, errors in rows)
    assert held <= recovered
    # Only the victim's tasks were recovered: the first run of each (if any) was the victim's.
    first_run = {key: pid for event, key, pid in reversed(runs) if event == "start"}
    assert {first_run[key] for key in recovered if key in first_run} <= {victim.pid}
    assert started_by_victim - ended_by_victim <= recovered  # what it was running
    assert {key for key, n in starts.items() if n > 1} <= recovered  # only those ran twice
    assert {key for key, n in ends.items() if n > 1} <= recovered
    assert {key_of[str(id_)] for id_, n, _ in rows if n == 2} == recovered  # the lost attempt
    assert {key_of[str(id_)] for id_, n, _ in rows if n == 1} == set(range(count)) - recovered
    survivors = {workers[1].pid, workers[2].pid}
    assert {key for e, key, pid in runs if e == "end" and pid in survivors} >= recovered


async def test_dropped_connections_mid_run(env: Env, producer: DurableWorkQueue) -> None:
    """The store's backends are terminated again and again mid-run: workers carry on."""
    count = 2000
    with trio.fail_after(45):
        handles = await producer.submit_many(helper.work, [(key, 0.01) for key in range(count)])
        workers = [
            await env.start_worker("-v", "--workers", "10", "--lease", "2") for _ in range(3)
        ]
        application = f"trio_workq {env.schema}"
        await env.wait_for_log("end", count // 4)
        # Every 50 ms for a second: some connections are dropped mid-statement.
        for round_ in range(20):
            terminated = await env.rows(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %(name)s AND pid <> pg_backend_pid()",
                {"name": application},
            )
            assert all(ok for (ok,) in terminated)
            if round_ == 0:  # each worker's LISTEN connection and at least one of its pool
                assert len(terminated) >= 3 * 2
            await trio.sleep(0.05)
        await env.wait_for_completed(count, within=35)
        # Some operations were cut mid-statement (the workers logged them and retried).
        assert " WARNING trio_workq: " in env.worker_output()
        for process in workers:
            assert process.returncode is None  # none gave up
            assert await env.stop(process) == 0, env.worker_output()
        # The producer reconnects too.
        assert (await handles[0].info()).status is TaskStatus.COMPLETED

    ends = Counter(key for event, key, _ in env.runs() if event == "end")
    assert set(ends) == set(range(count))  # none lost
    assert await env.rows("SELECT DISTINCT status FROM {tasks}") == [("completed",)]


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    """A throwaway server of the test's own, which it may restart."""
    yield from require_cluster()


@pytest.fixture
async def cluster_env(
    tmp_path: Path, cluster: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Env]:
    """Like `env`, on the throwaway server (deleted afterwards, schema and all)."""
    environment = Env(tmp_path, "twq_durable", cluster.url)
    monkeypatch.setenv(helper.LOG_ENV, str(environment.log))
    try:
        yield environment
    finally:
        await environment.aclose()


def _shared_server_start_time(pg_url: str) -> object:
    with psycopg.connect(pg_url) as conn:
        return conn.execute("SELECT pg_postmaster_start_time()").fetchone()


async def test_server_restart_mid_run(
    pg_url: str, cluster: PostgresCluster, cluster_env: Env
) -> None:
    """The server restarts mid-run: workers and the producer reconnect; nothing is lost.

    The same standard as after a SIGKILL: a task runs twice only if it was
    recovered (its lease expired while the server was down, or its claim
    was cut off mid-statement), and then its lost attempt is recorded.
    The server restarted is the test's own: the shared one keeps running.
    """
    env = cluster_env
    shared_started = await trio.to_thread.run_sync(_shared_server_start_time, pg_url)
    count, more = 3000, 100
    with trio.fail_after(45):
        async with open_durable_queue(store=env.url, workers=0) as producer:
            # 30 worker slots, 20 ms a task: the run lasts about two seconds without the restart.
            handles = await producer.submit_many(helper.work, [(key, 0.02) for key in range(count)])
            workers = [
                await env.start_worker("-v", "--workers", "10", "--lease", "2") for _ in range(3)
            ]
            (before,) = await env.rows("SELECT pg_postmaster_start_time()")
            await env.wait_for_log("end", count // 20)
            # The server is down for a fraction of a second; pg_ctl waits until it is back.
            await trio.to_thread.run_sync(cluster.restart)
            assert await env.rows("SELECT pg_postmaster_start_time()") != [before]
            # The producer's queue reconnects: it submits and reads again.
            handles += await producer.submit_many(
                helper.work, [(key, 0.02) for key in range(count, count + more)]
            )
            await env.wait_for_completed(count + more, within=40)
            assert (await handles[-1].info()).status is TaskStatus.COMPLETED
        # The workers saw the store fail (they logged it and retried).
        assert " WARNING trio_workq: " in env.worker_output()
        for process in workers:
            assert process.returncode is None  # none gave up
            assert await env.stop(process) == 0, env.worker_output()
    assert await trio.to_thread.run_sync(_shared_server_start_time, pg_url) == shared_started

    key_of = {handle.id: key for key, handle in enumerate(handles)}
    runs = env.runs()
    starts = Counter(key for event, key, _ in runs if event == "start")
    ends = Counter(key for event, key, _ in runs if event == "end")
    assert set(ends) == set(range(count + more))  # none lost
    rows = await env.rows("SELECT id, status, attempts, errors FROM {tasks}")
    assert {status for _, status, _, _ in rows} == {"completed"}
    assert all(errors in ([], [LEASE_EXPIRED_ERROR]) for _, _, _, errors in rows)
    recovered = {key_of[str(id_)] for id_, _, _, errors in rows if errors}
    assert {key for key, n in starts.items() if n > 1} <= recovered  # only those ran twice
    assert {key for key, n in ends.items() if n > 1} <= recovered
    assert {key_of[str(id_)] for id_, _, n, _ in rows if n == 2} == recovered
    assert {key_of[str(id_)] for id_, _, n, _ in rows if n == 1} == set(key_of.values()) - recovered
    # Mid-run: part of the first batch was claimed (for the last time) after the restart.
    ((after_restart,),) = await env.rows(
        "SELECT count(*) FROM {tasks} WHERE id <= %(last)s "
        "AND started_at > extract(epoch FROM pg_postmaster_start_time())",
        {"last": int(handles[count - 1].id)},
    )
    assert after_restart > 0


async def test_cross_process_cancel(env: Env, producer: DurableWorkQueue) -> None:
    """A task running in another process is cancelled there within about a second."""
    with trio.fail_after(30):
        worker = await env.start_worker("--workers", "2", "--lease", "3")
        handle = await producer.submit(helper.block, 7)
        await env.wait_for_log("start", 1)
        start = trio.current_time()
        assert await handle.cancel() is True
        while True:
            if (await handle.info()).status is TaskStatus.CANCELLED:
                break
            await trio.sleep(0.02)
        assert trio.current_time() - start <= 1.5
        with pytest.raises(trio_workq.TaskCancelled):
            await handle.result()
        assert ("stopped", 7, worker.pid) in env.runs()
        assert await env.stop(worker) == 0, env.worker_output()


async def test_delayed_task_runs_when_due_in_another_process(
    env: Env, producer: DurableWorkQueue
) -> None:
    """A task scheduled here runs in a worker process once due, not before."""
    with trio.fail_after(30):
        worker = await env.start_worker("--workers", "2")
        before = time.time()
        handle = await producer.schedule(helper.quick, 1, delay=1.5)
        now = await producer.submit(helper.quick, 2)
        assert await now.result() == 2
        assert (await handle.info()).status is TaskStatus.SCHEDULED
        assert await handle.result() == 1
        info = await handle.info()
        assert info.started_at is not None
        # Not before it was due. The store compares due times on the server's clock, which
        # each process maps onto its own with a round trip's uncertainty (seen: 1.7 ms
        # under load), so allow 50 ms; a claim at the next poll would be far later.
        assert info.started_at.timestamp() >= before + 1.5 - 0.05
        assert ("run", 1, worker.pid) in env.runs()
        assert await env.stop(worker) == 0, env.worker_output()


async def test_retry_runs_in_another_process(env: Env, producer: DurableWorkQueue) -> None:
    """A retry left by a process that stopped is run by another once due."""
    with trio.fail_after(30):
        first = await env.start_worker("--workers", "1")
        handle = await producer.submit(helper.flaky, 5, 2)
        await env.wait_for_log("fail", 1)
        assert await env.stop(first) == 0, env.worker_output()
        info = await handle.info()
        assert (info.status, info.attempts) == (TaskStatus.RETRYING, 1)

        second = await env.start_worker("--workers", "1")
        assert await handle.result() == 5
        assert await env.stop(second) == 0, env.worker_output()

    assert [(e, pid) for e, key, pid in env.runs() if key == 5] == [
        ("fail", first.pid),
        ("fail", second.pid),
        ("run", second.pid),
    ]
    info = await handle.info()
    assert (info.status, info.attempts) == (TaskStatus.COMPLETED, 3)
    assert [str(error) for error in info.errors] == [
        "RuntimeError: planned failure 1 of task 5",
        "RuntimeError: planned failure 2 of task 5",
    ]


async def test_priority_order_across_processes(env: Env, producer: DurableWorkQueue) -> None:
    """With one worker slot, tasks submitted here run in another process highest priority first."""
    priorities = [0, 5, -3, 9, 2, 5, 0, 7, -1, 3]
    with trio.fail_after(30):
        for key, priority in enumerate(priorities):
            await producer.submit(helper.quick, key, priority=priority)
        worker = await env.start_worker("--workers", "1")
        await env.wait_for_completed(len(priorities))
        assert await env.stop(worker) == 0, env.worker_output()

    order = [key for event, key, _ in env.runs() if event == "run"]
    # Highest priority first; equal priorities in submission order.
    assert order == sorted(range(len(priorities)), key=lambda key: (-priorities[key], key))


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class TestBadInput:
    async def test_unreachable_server(self) -> None:
        """A closed port: open_durable_queue raises a clear StoreError after a bounded retry."""
        url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/test?schema=twq_unreachable"
        with trio.fail_after(15):
            start = trio.current_time()
            with pytest.raises(StoreError, match=r"cannot connect after \d+ attempt\(s\) over 5 s"):
                async with open_durable_queue(store=url, workers=2):
                    pytest.fail("the queue opened")  # pragma: no cover
            assert 4.5 <= trio.current_time() - start <= 10

            store = PostgresStore(url, connect_retry_seconds=0.5)
            start = trio.current_time()
            with pytest.raises(StoreError, match=r"over 0\.5 s"):
                async with open_durable_queue(store=store, workers=2):
                    pytest.fail("the queue opened")  # pragma: no cover
            assert trio.current_time() - start <= 3

    async def test_unreachable_server_command_line(self) -> None:
        """The worker command exits 1 with one clear line, in bounded time."""
        url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/test?schema=twq_unreachable"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
        with trio.fail_after(20):
            done = await trio.run_process(
                [sys.executable, "-m", "trio_workq", "worker", "durable_helper", "--store", url],
                env=env,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        assert done.returncode == 1
        assert "cannot connect after" in done.stderr.decode()
        assert "Traceback" not in done.stderr.decode()

    async def test_unknown_role(self, pg_url: str, schema: str) -> None:
        """Refused credentials are reported at once, not retried."""
        parts = urlsplit(_url(schema))
        url = urlunsplit(parts._replace(netloc=f"no_such_role_twq@{parts.netloc.split('@')[-1]}"))
        with trio.fail_after(10):
            start = trio.current_time()
            with pytest.raises(StoreError, match=r"connection refused:.*no_such_role_twq"):
                async with open_durable_queue(store=url, workers=1):
                    pytest.fail("the queue opened")  # pragma: no cover
            assert trio.current_time() - start < 2

    async def test_newer_schema_version(self, env: Env) -> None:
        """A schema written by a newer trio_workq is refused, and left as it was."""
        with trio.fail_after(20):
            async with open_durable_queue(store=env.url, workers=0) as queue:
                await queue.submit(helper.quick, 1)
            newer = str(SCHEMA_VERSION + 1)
            meta = sql.Identifier(env.schema, "meta")

            def bump() -> None:
                with psycopg.connect(PG_URL, autocommit=True) as conn:
                    conn.execute(
                        sql.SQL("UPDATE {} SET value = %s WHERE key = 'schema_version'").format(
                            meta
                        ),
                        (newer,),
                    )

            await trio.to_thread.run_sync(bump)
            with pytest.raises(StoreError, match=f"schema is at version {newer}, newer than"):
                async with open_durable_queue(store=env.url, workers=2):
                    pytest.fail("the queue opened")  # pragma: no cover
            assert await env.rows("SELECT status, count(*) FROM {tasks} GROUP BY 1") == [
                ("queued", 1)
            ]
