# SPDX-License-Identifier: MIT
# White-box: drives SQLiteStore's private clock.
# pyright: reportPrivateUsage=false
"""Poison tasks: a task whose failure, result or stored row is hostile ends that task only.

Issue 14: a task whose cleanup raises while it is cancelled, a result or an
error holding a lone surrogate or a NUL character, and a corrupt row each
once crashed every durable worker in turn (the task went back to
``queued`` and the next worker claimed it). Each test runs on SQLite (a
file under ``tmp_path``) and on PostgreSQL (a schema of its own), and
checks that the queue, or a worker process, goes on running other tasks.
The poison tasks live in `_poison_tasks`.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, cast

import _poison_tasks as poison
import attrs
import durable_helper as helper
import httpx
import psycopg
import pytest
import trio
from _pg import PG_URL, require_postgres
from _recovery import recover_expired
from _worker_processes import WorkerProcesses
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from trio_workq import StoredError, TaskCancelled, TaskStatus
from trio_workq._core.registry import task
from trio_workq._durable.queue import DurableTaskHandle, DurableWorkQueue, open_durable_queue
from trio_workq._stores.postgres import PostgresStore
from trio_workq._stores.protocol import CORRUPT_TASK_ERROR, NewTask, Store, StoreDataError, read_row
from trio_workq._stores.sqlite import SQLiteStore
from trio_workq.web import serve_dashboard
from trio_workq.web._source import QueueSource

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import ExceptionGroup

BACKENDS = ["sqlite", "postgres"]


class Backend:
    """One test's store: its URL, and raw SQL on its table (to corrupt rows)."""

    def __init__(self, kind: str, url: str, path: Path | None, schema: str | None) -> None:
        self.kind = kind
        self.url = url
        self.path = path
        self.schema = schema

    def new_store(self) -> Store:
        if self.path is not None:
            return SQLiteStore(self.path)
        return PostgresStore(PG_URL, schema=self.schema)

    async def execute(self, statement: str, params: tuple[Any, ...] = ()) -> None:
        """Run *statement* (``{tasks}`` names the table; ``?`` marks parameters) and commit."""

        def run() -> None:
            if self.path is not None:
                with sqlite3.connect(self.path) as lite:
                    lite.execute(statement.format(tasks="tasks"), params)
                lite.close()
            else:
                assert self.schema is not None
                table = sql.Identifier(self.schema, "tasks").as_string(None)
                text = statement.format(tasks=table).replace("?", "%s")
                with psycopg.connect(PG_URL, autocommit=True) as conn:
                    conn.execute(text.encode(), params)

        await trio.to_thread.run_sync(run)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        path = tmp_path / "tasks.db"
        yield Backend("sqlite", f"sqlite:///{path}", path, None)
        return
    require_postgres()
    schema = f"twq_poison_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in PG_URL else "?"
    try:
        yield Backend("postgres", f"{PG_URL}{separator}schema={schema}", None, schema)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
async def queue(backend: Backend) -> AsyncIterator[DurableWorkQueue]:
    async with open_durable_queue(
        store=backend.url, workers=2, lease=5, poll_interval=0.05, shutdown_timeout=5
    ) as opened:
        yield opened


async def assert_goes_on(queue: DurableWorkQueue) -> None:
    """The queue still runs ordinary tasks."""
    handles = [await queue.submit(poison.ok, value) for value in range(5)]
    assert [await handle.result() for handle in handles] == list(range(5))


async def failure_of(handle: DurableTaskHandle[Any]) -> StoredError:
    with pytest.raises(StoredError) as caught:
        await handle.result()
    return caught.value


async def wait_running(handle: DurableTaskHandle[Any]) -> None:
    """Poll the store (another process may run it) until the task runs."""
    while True:
        if (await handle.info()).status is TaskStatus.RUNNING:
            return
        await trio.sleep(0.02)


# ------------------------------------------------------ cleanup errors while cancelled


async def test_timeout_with_failing_cleanup_fails_only_that_task(queue: DurableWorkQueue) -> None:
    """A timed-out task whose child's ``finally`` raises: TaskTimeout, retried per its policy."""
    with trio.fail_after(30):
        handle = await queue.submit(poison.cleanup_fails_retried, timeout=0.2)
        others = [await queue.submit(poison.ok, value) for value in range(3)]
        error = await failure_of(handle)
        assert "TaskTimeout" in error.summary
        assert "cleanup failed" in error.text  # the cleanup's error is kept as the cause
        assert "direct cause" in error.text
        info = await handle.info()
        assert info.status is TaskStatus.FAILED
        assert info.attempts == 3
        assert all("TaskTimeout" in str(e) for e in info.errors)
        assert [await other.result() for other in others] == [0, 1, 2]
        await assert_goes_on(queue)


async def test_cancel_with_failing_cleanup_ends_cancelled(
    queue: DurableWorkQueue, caplog: pytest.LogCaptureFixture
) -> None:
    """A cancelled task whose child's ``finally`` raises ends ``cancelled`` (the errors logged)."""
    with trio.fail_after(30):
        handle = await queue.submit(poison.cleanup_fails)
        await wait_running(handle)
        assert await handle.cancel()
        with pytest.raises(TaskCancelled):
            await handle.result()
        assert (await handle.info()).attempts == 1
        await assert_goes_on(queue)
    unwinding = [r for r in caplog.records if "raised errors while unwinding" in r.getMessage()]
    assert len(unwinding) == 1
    assert unwinding[0].exc_info is not None
    logged = unwinding[0].exc_info[1]
    assert isinstance(logged, ExceptionGroup)
    assert [str(e) for e in cast("ExceptionGroup[Exception]", logged).exceptions] == [
        "cleanup failed"
    ]


async def test_outer_cancel_with_failing_cleanup_gives_the_task_back(backend: Backend) -> None:
    """Cancelled from outside the queue, a task whose cleanup raises is given back, not failed."""
    with trio.fail_after(30):
        async with open_durable_queue(store=backend.url, workers=0) as producer:
            handle = await producer.submit(poison.cleanup_fails)
            with trio.CancelScope() as outer:
                async with open_durable_queue(
                    store=backend.url, workers=1, lease=5, poll_interval=0.05
                ):
                    await wait_running(await producer.get_handle(handle.id))
                    outer.cancel()
                    await trio.sleep_forever()
            assert outer.cancelled_caught  # a cancellation, not an exception group, came out
            info = await producer.get_info(handle.id)
            assert (info.status, info.attempts) == (TaskStatus.QUEUED, 0)


# ------------------------------------------------- text a store cannot hold


async def test_surrogate_result_fails_only_that_task(queue: DurableWorkQueue) -> None:
    """A result with a lone surrogate fails its task (cannot be serialized); no worker dies."""
    with trio.fail_after(30):
        handle = await queue.submit(poison.surrogate_result)
        error = await failure_of(handle)
        assert error.summary.startswith("ValueError: the result of task 'poison.surrogate_result'")
        assert "cannot be serialized" in error.summary
        assert (await handle.info()).attempts == 1
        await assert_goes_on(queue)


async def test_surrogate_error_is_stored_escaped(queue: DurableWorkQueue) -> None:
    """An error message with a lone surrogate is stored with the surrogate escaped."""
    with trio.fail_after(30):
        handle = await queue.submit(poison.surrogate_error)
        error = await failure_of(handle)
        assert error.summary == "ValueError: bad \\ud800"
        await assert_goes_on(queue)


async def test_nul_error_is_stored_escaped_at_once(queue: DurableWorkQueue) -> None:
    """An error message with NUL is stored at once (escaped), not retried until the lease ends."""
    with trio.fail_after(4):  # well under the 5 s lease
        handle = await queue.submit(poison.nul_error)
        error = await failure_of(handle)
        assert error.summary == "ValueError: bad \\x00 nul"
        await assert_goes_on(queue)


async def test_surrogate_argument_is_a_clear_value_error(queue: DurableWorkQueue) -> None:
    """An argument with a lone surrogate is refused at submit with a ValueError saying why."""
    with pytest.raises(
        ValueError, match=r"^the arguments of task 'poison.ok' cannot be serialized"
    ):
        await queue.submit(poison.ok, "bad \ud800")  # type: ignore[arg-type]


@pytest.mark.parametrize("text", [poison.SURROGATE_TEXT, poison.NUL_TEXT])
async def test_store_refuses_data_with_a_data_error(backend: Backend, text: str) -> None:
    """A store reports text it cannot hold as StoreDataError (never retried), and stays usable."""
    store = backend.new_store()
    await store.open()
    try:
        with trio.fail_after(10):
            task = NewTask("poison.ok", b"{}", 0, 0.0, 1, None, TaskStatus.QUEUED)
            (task_id,) = await store.add([task])
            claimed = await store.claim("me", 1, 30)
            assert [t.id for t in claimed.tasks] == [task_id]
            if backend.kind == "sqlite" and text == poison.NUL_TEXT:
                assert await store.fail("me", task_id, 1, text, None)  # SQLite holds NUL
                return
            with pytest.raises(StoreDataError):
                await store.fail("me", task_id, 1, text, None)
            assert await store.fail("me", task_id, 1, "plain", None)
    finally:
        await store.aclose()


async def test_refused_result_fails_only_its_task(backend: Backend) -> None:
    """A result the store refuses (StoreDataError) fails its task at once; the others complete."""
    store = backend.new_store()
    complete_many = store.complete_many

    async def refusing(owner: str, completions: Sequence[tuple[str, int, bytes]]) -> list[bool]:
        if any(result == b"666" for _, _, result in completions):
            await trio.lowlevel.checkpoint()
            raise StoreDataError("refused for the test")
        return await complete_many(owner, completions)

    store.complete_many = refusing  # type: ignore[method-assign]
    with trio.fail_after(4):  # well under the 5 s lease: not retried
        async with open_durable_queue(store=store, workers=4, lease=5, poll_interval=0.05) as queue:
            handles = await queue.submit_many(poison.ok, [(1,), (666,), (2,), (3,)])
            error = await failure_of(handles[1])
            assert error.summary == (
                "trio_workq.StoreDataError: the result of task 'poison.ok' cannot be stored: "
                "refused for the test"
            )
            assert [await handles[i].result() for i in (0, 2, 3)] == [1, 2, 3]
            await assert_goes_on(queue)


async def test_refused_error_text_is_replaced(backend: Backend) -> None:
    """An error text the store refuses is replaced by one saying so, at once, not retried."""
    store = backend.new_store()
    fail = store.fail

    async def refusing(
        owner: str, task_id: str, attempt: int, error: str, retry_at: float | None
    ) -> TaskStatus | None:
        if "refused" not in error:
            await trio.lowlevel.checkpoint()
            raise StoreDataError("refused for the test")
        return await fail(owner, task_id, attempt, error, retry_at)

    store.fail = refusing  # type: ignore[method-assign]
    with trio.fail_after(4):  # well under the 5 s lease: not retried
        async with open_durable_queue(store=store, workers=2, lease=5, poll_interval=0.05) as queue:
            error = await failure_of(await queue.submit(poison.nul_error))
            assert error.summary == (
                "trio_workq.StoreDataError: the store refused this attempt's error: "
                "refused for the test"
            )
            await assert_goes_on(queue)


@pytest.mark.parametrize("name", ["nul\x00name", "bad\ud800name"])
def test_task_names_a_store_cannot_hold_are_refused(name: str) -> None:
    """A task name with NUL or a lone surrogate is refused at registration, not at each submit."""
    with pytest.raises(ValueError, match="must not hold NUL characters or lone surrogates"):
        task(name=name)(poison.ok)


# ------------------------------------------------------------- corrupt rows

CORRUPTIONS = {
    "sqlite": [
        ("errors", "'garbage'"),
        ("timeout", "'abc'"),
        ("priority", "'high'"),
        ("due_at", "'soon'"),
        ("payload", "'not bytes'"),
    ],
    "postgres": [
        ("errors", "ARRAY[NULL]::text[]"),
        ("timeout", "'NaN'"),
        ("due_at", "'NaN'"),
        ("created_at", "'Infinity'"),
    ],
}
CASES = [(kind, column, value) for kind, cases in CORRUPTIONS.items() for column, value in cases]


_ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.lists(st.one_of(st.none(), st.text(max_size=4)), max_size=3),
)
_SOUND_ROW = (5, "poison.ok", b"{}", "running", 0, 1, 1, None, 1e9, 1e9, 1e9, None, "me", 2e9, 0)


_ANY_HEADERS = st.one_of(
    _ANY_VALUE,
    st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=3),
    st.dictionaries(st.one_of(st.text(max_size=4), st.integers()), _ANY_VALUE, max_size=3),
    st.sampled_from(['{"traceparent": "garbage"}', "{", '["a"]', '{"a": 1}', "null"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 16), _ANY_VALUE), max_size=4), _ANY_VALUE, _ANY_HEADERS)
def test_read_row_never_raises(
    changes: list[tuple[int, object]], errors: object, headers: object
) -> None:
    """Any values in any columns give a StoredTask of sound types (and a note if they were not).

    Headers that cannot be read are advisory: they read as none, and never make a row corrupt.
    """
    row: list[object] = [*_SOUND_ROW, None, errors, headers]
    for column, value in changes:
        row[column] = value
    task, problem = read_row(row)
    assert all(type(k) is str and type(v) is str for k, v in task.headers.items())
    # Whatever the headers hold, the row reads as it would without them.
    assert read_row([*row[:17], None]) == (attrs.evolve(task, headers={}), problem)
    assert isinstance(task.status, TaskStatus)
    for number in (task.priority, task.attempts, task.max_attempts):
        assert type(number) is int
    for moment in (task.created_at, task.due_at, task.started_at, task.finished_at):
        if moment is not None:
            datetime.fromtimestamp(moment, timezone.utc)  # what listings do with it
    assert task.timeout is None or task.timeout > 0
    assert all(type(text) is str for text in task.errors)
    assert isinstance(task.payload, bytes)
    if problem is not None:
        assert task.errors[-1] == problem
        assert problem.startswith(f"{CORRUPT_TASK_ERROR}: the stored row of task 5 cannot be read")


@pytest.mark.parametrize(
    ("backend", "column", "value"),
    CASES,
    indirect=["backend"],
    ids=[f"{kind}-{column}={value}" for kind, column, value in CASES],
)
async def test_corrupt_row_fails_only_that_task(
    backend: Backend, column: str, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A row that cannot be read is listed with a note, then failed at claim; the rest runs."""
    with trio.fail_after(30):
        async with open_durable_queue(store=backend.url, workers=0) as producer:
            bad = await producer.submit(poison.ok, 1)
            await backend.execute(
                f"UPDATE {{tasks}} SET {column} = {value} WHERE id = ?", (int(bad.id),)
            )
            # Listing, lookups and the dashboard still work, and say what is wrong.
            page = await producer.list_tasks()
            assert [info.id for info in page.tasks] == [bad.id]
            info = await producer.get_info(bad.id)
            assert info.last_error is not None
            assert str(info.last_error).startswith(f"{CORRUPT_TASK_ERROR}: ")
            assert column in str(info.last_error)
            source = QueueSource(producer)
            listed = await source.page(status=None, name=None, limit=50, cursor=None)
            assert [summary.id for summary in listed.tasks] == [bad.id]
            detail = await source.get(bad.id)
            assert detail.task.id == bad.id
            assert detail.errors
        async with open_durable_queue(
            store=backend.url, workers=2, lease=5, poll_interval=0.05
        ) as queue:
            error = await failure_of(await queue.get_handle(bad.id))
            assert error.summary.startswith(
                f"{CORRUPT_TASK_ERROR}: the stored row of task {bad.id}"
            )
            assert column in error.summary
            assert (await queue.get_info(bad.id)).status is TaskStatus.FAILED
            await assert_goes_on(queue)
    logged = [r.getMessage() for r in caplog.records if r.name == "trio_workq"]
    assert any(message.startswith(error.summary) for message in logged)


async def test_undecodable_arguments_fail_only_that_task(backend: Backend) -> None:
    """A row whose payload bytes the serializer cannot decode fails its task, saying so."""
    with trio.fail_after(30):
        async with open_durable_queue(store=backend.url, workers=0) as producer:
            bad = await producer.submit(poison.ok, 1)
            garbage = "X'FF'" if backend.kind == "sqlite" else "'\\xff'::bytea"
            await backend.execute(
                f"UPDATE {{tasks}} SET payload = {garbage} WHERE id = ?", (int(bad.id),)
            )
        async with open_durable_queue(
            store=backend.url, workers=2, lease=5, poll_interval=0.05
        ) as queue:
            error = await failure_of(await queue.get_handle(bad.id))
            assert error.summary.startswith(
                "ValueError: the stored arguments cannot be decoded by JSONSerializer()"
            )
            await assert_goes_on(queue)


async def test_arguments_in_a_foreign_shape_fail_only_that_task(backend: Backend) -> None:
    """A payload the serializer reads but that is not trio_workq's {"args": [...]} fails its
    task, saying so; the dashboard shows it as stored."""
    from trio_workq.web._source import QueueSource

    with trio.fail_after(30):
        async with open_durable_queue(store=backend.url, workers=0) as producer:
            bad = await producer.submit(poison.ok, 1)
            foreign = "X'5B312C325D'" if backend.kind == "sqlite" else "'[1,2]'::bytea"
            await backend.execute(
                f"UPDATE {{tasks}} SET payload = {foreign} WHERE id = ?", (int(bad.id),)
            )
            assert (await QueueSource(producer).get(bad.id)).args == "[1, 2]"
        async with open_durable_queue(
            store=backend.url, workers=2, lease=5, poll_interval=0.05
        ) as queue:
            error = await failure_of(await queue.get_handle(bad.id))
            assert (
                error.summary == "ValueError: the stored arguments are not in trio_workq's format"
            )
            await assert_goes_on(queue)


async def test_unreadable_errors_do_not_stop_lease_recovery(tmp_path: Path) -> None:
    """SQLite: a running row with unreadable ``errors`` does not block recovering the rest."""
    store = SQLiteStore(tmp_path / "tasks.db")
    now = [1000.0]
    store._clock = lambda: now[0]
    await store.open()
    try:
        with trio.fail_after(10):
            task = NewTask("poison.ok", b"{}", 0, 0.0, 2, None, TaskStatus.QUEUED)
            ids = await store.add([task, task])
            assert len((await store.claim("ghost", 2, 5)).tasks) == 2
            with sqlite3.connect(tmp_path / "tasks.db") as lite:
                lite.execute("UPDATE tasks SET errors = 'garbage' WHERE id = ?", (int(ids[0]),))
            lite.close()
            now[0] += 10  # both leases have expired
            assert await recover_expired(store, "lease expired") == 2
            for task_id in ids:
                row = await store.get(task_id)
                assert row is not None
                assert (row.status, row.errors[-1]) == (TaskStatus.RETRYING, "lease expired")
            corrupt = await store.get(ids[0])
            assert corrupt is not None
            assert corrupt.errors[0].startswith("(the earlier errors were unreadable")
    finally:
        await store.aclose()


async def test_undecodable_result_is_a_stored_error(backend: Backend) -> None:
    """A completed task whose stored result cannot be decoded reports that, as a StoredError."""
    with trio.fail_after(30):
        async with open_durable_queue(
            store=backend.url, workers=1, lease=5, poll_interval=0.05
        ) as queue:
            handle = await queue.submit(poison.ok, 1)
            assert await handle.result() == 1
            garbage = "X'FF'" if backend.kind == "sqlite" else "'\\xff'::bytea"
            await backend.execute(
                f"UPDATE {{tasks}} SET result = {garbage} WHERE id = ?", (int(handle.id),)
            )
            error = await failure_of(handle)
            assert error.summary.startswith(
                f"the stored result of task {handle.id} cannot be decoded"
            )
            await assert_goes_on(queue)


async def test_dashboard_shows_corrupt_rows(tmp_path: Path) -> None:
    """The dashboard's REST API lists a corrupt row with the others and shows its detail."""
    url = f"sqlite:///{tmp_path}/tasks.db"
    with trio.fail_after(20):
        async with (
            open_durable_queue(store=url, workers=0) as queue,
            trio.open_nursery() as nursery,
        ):
            good = await queue.submit(poison.ok, 1)
            bad = await queue.submit(poison.ok, 2)
            with sqlite3.connect(tmp_path / "tasks.db") as lite:
                lite.execute(
                    "UPDATE tasks SET errors = 'garbage', timeout = 'abc' WHERE id = ?",
                    (int(bad.id),),
                )
            lite.close()
            base: str = await nursery.start(partial(serve_dashboard, queue, port=0))
            async with httpx.AsyncClient(base_url=base) as client:
                listing = await client.get("/api/tasks")
                assert listing.status_code == 200, listing.text
                assert [task["id"] for task in listing.json()["tasks"]] == [bad.id, good.id]
                detail = await client.get(f"/api/tasks/{bad.id}")
                assert detail.status_code == 200, detail.text
                assert CORRUPT_TASK_ERROR in detail.text
            nursery.cancel_scope.cancel()


# ----------------------------------------------------------- a worker process


async def test_worker_process_survives_every_poison(backend: Backend, tmp_path: Path) -> None:
    """One worker process meets every poison task and a corrupt row, and goes on running."""
    workers = WorkerProcesses(tmp_path, backend.url)
    try:
        with trio.fail_after(60):
            async with open_durable_queue(store=backend.url, workers=0) as producer:
                poisoned: list[DurableTaskHandle[Any]] = [
                    await producer.submit(poison.surrogate_result),
                    await producer.submit(poison.surrogate_error),
                    await producer.submit(poison.nul_error),
                    await producer.submit(poison.cleanup_fails, timeout=0.2),
                    await producer.submit(poison.cleanup_fails_retried, timeout=0.2),
                ]
                corrupt = await producer.submit(poison.ok, 0)
                await backend.execute(
                    "UPDATE {tasks} SET errors = 'x' WHERE id = ?"
                    if backend.kind == "sqlite"
                    else "UPDATE {tasks} SET timeout = 'NaN' WHERE id = ?",
                    (int(corrupt.id),),
                )
                to_cancel = await producer.submit(poison.cleanup_fails)
                quick = await producer.submit_many(helper.quick, [(key,) for key in range(20)])
                process = await trio.lowlevel.open_process(
                    [
                        sys.executable,
                        "-m",
                        "trio_workq",
                        "worker",
                        "_poison_tasks",
                        "--store",
                        backend.url,
                        "--poll-interval",
                        "0.05",
                        "--workers",
                        "4",
                    ],
                    env=workers.environ(),
                    stdout=workers.output_file,
                    stderr=subprocess.STDOUT,
                )
                workers.processes.append(process)
                await wait_running(to_cancel)
                assert await producer.cancel(to_cancel.id)
                for handle in (*poisoned, corrupt):
                    await failure_of(handle)
                with pytest.raises(TaskCancelled):
                    await to_cancel.result()
                assert [await handle.result() for handle in quick] == list(range(20))
                # After all that, the process still takes new work.
                assert await (await producer.submit(poison.ok, 7)).result() == 7
                assert process.returncode is None, workers.worker_output()
                assert await workers.stop(process, signal.SIGTERM) == 0, workers.worker_output()
    finally:
        await workers.aclose()
