# SPDX-License-Identifier: MIT
"""`trio_workq.testing.drain`, `assert_submitted` and `assert_not_submitted`, on every backend.

Most tests take the queue-behaviour suite's `backend` fixture (``_backends.py``),
so each runs on the in-memory queue and on durable queues over MemoryStore,
SQLite and PostgreSQL: the helpers are written once against the queue
interface, and this checks that they mean the same on each. Tests of hours of
virtual time run on the two backends that can follow trio's virtual clock.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
import trio
import trio.testing
from _backends import Backend
from _backends import backend as backend  # the fixtures
from _backends import backend_kind as backend_kind
from _backends import clock as clock

import trio_workq
from trio_workq import QueueClosed, RetryPolicy, TaskQueue, TaskStatus, fixed
from trio_workq.testing import (
    DrainResult,
    MemoryStore,
    assert_not_submitted,
    assert_submitted,
    drain,
)

Clock = trio.abc.Clock | None
HOUR = 3600.0
#: How long the tasks below wait before doing anything: the test calls `drain` at once
#: after submitting, and a drain counts only what happens while it listens.
SETTLE = 0.2

#: The queue the tasks below submit to (a task cannot reach its queue otherwise).
current_queue: list[TaskQueue] = []
#: Attempts of `flaky`, by key.
attempts: dict[str, int] = {}


@pytest.fixture(autouse=True)
def _fresh() -> None:
    current_queue.clear()
    attempts.clear()


# Registered under their default names (module:qualname), which the in-memory
# queue gives them too: a name means the same task on every backend.


@trio_workq.task
async def echo(value: Any) -> Any:
    await trio.lowlevel.checkpoint()
    return value


@trio_workq.task
async def nap(seconds: float) -> float:
    await trio.sleep(seconds)
    return seconds


@trio_workq.task
async def fan_out(width: int, depth: int) -> None:
    """Submit *width* children, each fanning out one level less: a tree of tasks."""
    await trio.sleep(SETTLE)
    if depth:
        for _ in range(width):
            await current_queue[0].submit(fan_out, width, depth - 1)


@trio_workq.task
async def flaky(key: str, failures: int) -> str:
    """Fail the first *failures* attempts, then return *key*."""
    await trio.sleep(SETTLE)
    attempts[key] = attempts.get(key, 0) + 1
    if attempts[key] <= failures:
        raise ValueError(f"attempt {attempts[key]} of {key} fails")
    return key


@trio_workq.task
async def cancel_task(task_id: str) -> bool:
    await trio.sleep(SETTLE)
    return await current_queue[0].cancel(task_id)


@asynccontextmanager
async def open_raw(backend: Backend, **options: Any) -> AsyncGenerator[TaskQueue]:
    """The backend's queue, where the tasks above find it."""
    async with backend.open(**options) as queue:
        current_queue.append(queue)
        yield queue


# ---------------------------------------------------------------------- drain


async def test_drain_returns_once_every_task_has_run(backend: Backend, clock: Clock) -> None:
    async with open_raw(backend) as queue:
        handles = [await queue.submit(nap, SETTLE + 0.05 * i) for i in range(5)]
        result = await drain(queue)
        # Started before the drain began, or during it: a drain counts what it sees.
        assert 0 <= result.started <= 5
        assert result == DrainResult(started=result.started, completed=5)
        for handle in handles:
            assert (await handle.info()).status is TaskStatus.COMPLETED
        stats = await queue.statistics()
        assert (stats.queued, stats.running, stats.retrying) == (0, 0, 0)


async def test_drain_waits_for_the_tasks_that_tasks_submit(backend: Backend, clock: Clock) -> None:
    """Idle means idle: the tasks that drained tasks submit are drained too (Oban's recursion)."""
    async with open_raw(backend, workers=2) as queue:
        await queue.submit(fan_out, 2, 2)  # 1 + 2 + 4 tasks
        result = await drain(queue)
        assert (result.submitted, result.completed) == (6, 7)
        await assert_submitted(queue, fan_out, count=7, status=TaskStatus.COMPLETED)


async def test_drain_leaves_scheduled_tasks_unless_asked(backend: Backend, clock: Clock) -> None:
    async with open_raw(backend) as queue:
        start = trio.current_time()
        later = await queue.schedule(echo, "later", delay=0.5)
        await queue.submit(echo, "now")
        assert (await drain(queue)).completed == 1
        assert trio.current_time() - start < 0.5
        assert (await later.info()).status is TaskStatus.SCHEDULED

        assert await drain(queue, with_scheduled=True) == DrainResult(started=1, completed=1)
        assert trio.current_time() - start >= 0.5 - 1e-3
        assert (await later.info()).status is TaskStatus.COMPLETED


async def test_drain_waits_out_retries(backend: Backend, clock: Clock) -> None:
    retry = RetryPolicy(max_attempts=3, backoff=fixed(0.2))
    async with open_raw(backend, retry=retry) as queue:
        recovers = await queue.submit(flaky, "recovers", 2)
        gives_up = await queue.submit(flaky, "gives-up", 5)
        result = await drain(queue)
        assert result == DrainResult(started=result.started, completed=1, failed=1, retrying=4)
        assert 4 <= result.started <= 6
        assert await recovers.result() == "recovers"
        assert (await gives_up.info()).status is TaskStatus.FAILED


async def test_drain_counts_tasks_cancelled_meanwhile(backend: Backend, clock: Clock) -> None:
    async with open_raw(backend) as queue:
        doomed = await queue.schedule(echo, "never", delay=HOUR)
        await queue.submit(cancel_task, doomed.id)
        result = await drain(queue, with_scheduled=True)
        assert (result.completed, result.cancelled) == (1, 1)
        assert (await doomed.info()).status is TaskStatus.CANCELLED


async def test_drain_of_an_idle_queue_returns_at_once(backend: Backend, clock: Clock) -> None:
    async with open_raw(backend) as queue:
        start = trio.current_time()
        with trio.testing.assert_checkpoints():
            assert await drain(queue) == DrainResult()
        await queue.schedule(echo, "later", delay=HOUR)
        with trio.testing.assert_checkpoints():
            assert await drain(queue) == DrainResult()  # scheduled tasks do not count
        assert trio.current_time() - start < 1


async def test_drain_checks_its_arguments(backend: Backend, clock: Clock) -> None:
    async with open_raw(backend) as queue:
        with pytest.raises(ValueError, match="poll_interval must be > 0"):
            await drain(queue, poll_interval=0)
        with pytest.raises(ValueError, match="poll_interval must be finite"):
            await drain(queue, poll_interval=float("nan"))
        with pytest.raises(TypeError, match="poll_interval must be a number"):
            await drain(queue, poll_interval="1")  # type: ignore[arg-type]


# Hours of virtual time: the two backends that follow trio's clock.
VIRTUAL = ["memory", "memorystore"]


@asynccontextmanager
async def virtual_queue(kind: str) -> AsyncGenerator[TaskQueue]:
    if kind == "memory":
        async with trio_workq.open_work_queue() as memory:
            current_queue.append(memory)
            yield memory
    else:
        async with trio_workq.open_work_queue(store=MemoryStore(), poll_interval=600) as durable:
            current_queue.append(durable)
            yield durable


@pytest.mark.parametrize("kind", VIRTUAL)
async def test_drain_jumps_over_hours_without_spinning(
    kind: str, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ten-hour delay takes a handful of readings: drain waits on events, not in a loop."""
    async with virtual_queue(kind) as queue:
        readings = 0
        statistics = queue.statistics

        async def counted() -> Any:
            nonlocal readings
            readings += 1
            return await statistics()

        monkeypatch.setattr(queue, "statistics", counted)
        start = trio.current_time()
        await queue.schedule(nap, HOUR, delay=10 * HOUR)
        result = await drain(queue, with_scheduled=True)
        assert result == DrainResult(started=1, completed=1)
        assert trio.current_time() - start == pytest.approx(11 * HOUR, abs=1)
        # In memory, one reading per event (started, completed) and the first one; on
        # the MemoryStore, also one per poll interval (600 s) of the 11 hours.
        polls = 0 if kind == "memory" else 11 * HOUR / 600
        assert readings <= 3 + polls + 1


@pytest.mark.parametrize("kind", ["memorystore", "sqlite"])
def test_drain_sees_the_work_of_another_queue_on_the_store(kind: str, tmp_path: Path) -> None:
    """The statistics of a durable queue cover its store: drain waits for other processes.

    Queue *submitter* has no workers; *worker*, on the same store (as another
    process would be), runs the tasks. Its events are not the submitter's:
    drain sees them by polling the statistics.
    """
    store: MemoryStore | str = (
        MemoryStore() if kind == "memorystore" else f"sqlite:///{tmp_path}/shared.db"
    )
    clock = trio.testing.MockClock(autojump_threshold=0) if kind == "memorystore" else None

    async def main() -> None:
        async with (
            trio_workq.open_work_queue(store=store, workers=0, poll_interval=0.05) as submitter,
            trio_workq.open_work_queue(store=store, workers=2, poll_interval=0.05) as worker,
        ):
            handles = [await submitter.submit(nap, 0.1) for _ in range(4)]
            with trio.fail_after(10):
                result = await drain(submitter)
            assert result == DrainResult()  # the events happened in the other queue
            for handle in handles:
                assert (await handle.info()).status is TaskStatus.COMPLETED
            assert (await drain(worker)).completed == 0

    trio.run(main, clock=clock)


@pytest.mark.parametrize("kind", ["memorystore", "sqlite"])
async def test_drain_raises_if_the_queue_shuts_down_with_tasks_left(
    kind: str, tmp_path: Path
) -> None:
    """A durable queue that shuts down leaves its queued tasks in the store: never idle."""
    store: MemoryStore | str = (
        MemoryStore() if kind == "memorystore" else f"sqlite:///{tmp_path}/left.db"
    )
    async with trio_workq.open_work_queue(store=store, workers=0, poll_interval=0.05) as queue:
        await queue.submit(echo, "left")
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(queue.shutdown)
                with pytest.raises(
                    QueueClosed, match=r"shutting down with tasks left \(1 queued\)"
                ):
                    await drain(queue)
        with pytest.raises(QueueClosed):
            await drain(queue)  # already shut down


# ------------------------------------------------------------ assert_submitted


async def test_assert_submitted_matches_function_name_args_status(
    backend: Backend, clock: Clock
) -> None:
    async with open_raw(backend) as queue:
        first = await queue.submit(echo, "a")
        pair = await queue.submit(echo, ("x", 1), priority=5)
        later = await queue.schedule(echo, {"k": [1, 2]}, delay=HOUR)
        await drain(queue)

        infos = await assert_submitted(queue, echo, count=3)
        assert [info.id for info in infos] == [first.id, pair.id, later.id]  # oldest first
        by_name = await assert_submitted(queue, infos[0].name, count=3)
        assert [info.id for info in by_name] == [first.id, pair.id, later.id]
        assert [i.id for i in await assert_submitted(queue, echo, args=("a",))] == [first.id]
        # A tuple comes back from a JSON store as a list: both forms match, on every backend.
        assert [i.id for i in await assert_submitted(queue, echo, args=(["x", 1],))] == [pair.id]
        assert [i.id for i in await assert_submitted(queue, echo, args=(("x", 1),))] == [pair.id]
        assert [i.id for i in await assert_submitted(queue, echo, args=({"k": (1, 2)},))] == [
            later.id
        ]
        assert len(await assert_submitted(queue, echo, args=(ANY,))) == 3
        assert len(await assert_submitted(queue, args=(ANY,), kwargs={})) == 3
        completed = await assert_submitted(queue, echo, status="completed", count=2)
        assert [i.id for i in completed] == [first.id, pair.id]
        waiting = await assert_submitted(queue, status=[TaskStatus.SCHEDULED, "queued"])
        assert [i.id for i in waiting] == [later.id]
        assert [i.id for i in await assert_submitted(queue, priority=5)] == [pair.id]
        assert (await assert_submitted(queue, echo, args=("a",), status="completed"))[
            0
        ].status is TaskStatus.COMPLETED


async def test_assert_submitted_fails_with_what_was_submitted(
    backend: Backend, clock: Clock
) -> None:
    async with open_raw(backend) as queue:
        first = await queue.submit(echo, "a")
        second = await queue.submit(nap, 0)
        await drain(queue)
        name = (await first.info()).name
        with pytest.raises(AssertionError) as failed:
            await assert_submitted(queue, echo, args=("b",))
        message = str(failed.value)
        assert message.startswith("expected at least one task matching echo args=('b',); found 0")
        assert f"{first.id}: {name}('a') completed, priority 0" in message
        assert f"{second.id}: {name.replace('echo', 'nap')}(0) completed" in message

        with pytest.raises(AssertionError, match=r"expected 2 task\(s\) matching echo; found 1"):
            await assert_submitted(queue, echo, count=2)
        with pytest.raises(AssertionError, match="status=queued; found 0"):
            await assert_submitted(queue, nap, status=TaskStatus.QUEUED)
        assert await assert_submitted(queue, nap, status="queued", count=0) == []


async def test_a_failed_assertion_lists_twenty_tasks(backend: Backend, clock: Clock) -> None:
    async with open_raw(backend) as queue:
        await queue.submit_many(echo, [(i,) for i in range(25)])
        await drain(queue)
        with pytest.raises(AssertionError) as failed:
            await assert_submitted(queue, nap)
        message = str(failed.value)
        assert "Submitted (25, oldest first):" in message
        assert "echo(19) completed" in message
        assert "echo(20)" not in message
        assert message.endswith("... and 5 more")


async def test_assert_submitted_on_an_empty_queue(backend: Backend, clock: Clock) -> None:
    async with open_raw(backend) as queue:
        with pytest.raises(AssertionError, match="No task was submitted"):
            await assert_submitted(queue)
        await assert_not_submitted(queue)


async def test_keyword_arguments_of_a_partial(backend: Backend, clock: Clock) -> None:
    async with open_raw(backend) as queue:
        handle = await queue.submit(functools.partial(echo, value="k"))
        await drain(queue)
        (info,) = await assert_submitted(queue, echo, kwargs={"value": "k"}, args=())
        assert info.id == handle.id
        await assert_not_submitted(queue, echo, kwargs={})
        await assert_not_submitted(queue, echo, args=("k",))
        with pytest.raises(AssertionError, match=r"echo\(value='k'\) completed"):
            await assert_submitted(queue, echo, kwargs={"value": "other"})


async def test_listing_goes_beyond_one_page(backend: Backend, clock: Clock) -> None:
    """list_tasks pages hold at most 1000 tasks: the assertions page through all."""
    async with open_raw(backend, workers=10) as queue:
        await queue.submit_many(echo, [(i,) for i in range(1005)])
        await drain(queue)
        (oldest,) = await assert_submitted(queue, echo, args=(0,))
        assert (await assert_submitted(queue, echo, count=1005))[0].id == oldest.id
        await assert_not_submitted(queue, echo, args=(1005,))


async def test_assert_not_submitted(backend: Backend, clock: Clock) -> None:
    async with open_raw(backend) as queue:
        await assert_not_submitted(queue, echo)
        handle = await queue.submit(echo, "a")
        await drain(queue)
        await assert_not_submitted(queue, echo, args=("b",))
        await assert_not_submitted(queue, echo, status="failed")
        await assert_not_submitted(queue, nap)
        with pytest.raises(AssertionError) as failed:
            await assert_not_submitted(queue, echo, args=("a",), status="completed")
        message = str(failed.value)
        expected = "expected no task matching echo args=('a',) status=completed; found 1"
        assert message.startswith(f"{expected} (ids {handle.id})")
        assert "echo('a') completed" in message
        with pytest.raises(AssertionError, match="expected no task matching any task; found 1"):
            await assert_not_submitted(queue)


async def test_bad_arguments_are_refused(backend: Backend, clock: Clock) -> None:
    async with open_raw(backend) as queue:
        with pytest.raises(TypeError, match=r"not a functools\.partial"):
            await assert_submitted(queue, functools.partial(echo, 1))
        with pytest.raises(ValueError, match="unknown status 'done'"):
            await assert_submitted(queue, echo, status="done")
        with pytest.raises(ValueError, match="at least one status"):
            await assert_not_submitted(queue, echo, status=[])
        with pytest.raises(TypeError, match="args must be a tuple or list"):
            await assert_submitted(queue, echo, args="a")
        with pytest.raises(TypeError, match="kwargs must be a mapping"):
            await assert_submitted(queue, echo, kwargs=[("a", 1)])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="count must be >= 0"):
            await assert_submitted(queue, echo, count=-1)
        with pytest.raises(TypeError, match="count must be an int"):
            await assert_submitted(queue, echo, count=True)
        with pytest.raises(TypeError, match="priority must be an int"):
            await assert_submitted(queue, echo, priority=1.5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="task must be a function, a task name or None"):
            await assert_submitted(queue, 3)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="expected a trio_workq queue"):
            await assert_submitted(object(), echo)  # type: ignore[arg-type]


async def unregistered(value: Any) -> Any:
    await trio.lowlevel.checkpoint()
    return value


async def test_a_function_matches_its_tasks_whatever_their_name() -> None:
    """In memory a function matches the tasks that run it, under any name."""
    async with trio_workq.open_work_queue() as queue:
        await queue.submit(unregistered, 1, name="custom")
        await drain(queue)
        (info,) = await assert_submitted(queue, unregistered, args=(1,))
        assert info.name == "custom"
        await assert_submitted(queue, "custom")


async def test_a_durable_queue_needs_a_registered_function() -> None:
    async with trio_workq.open_work_queue(store=MemoryStore()) as queue:
        with pytest.raises(TypeError, match=r"unregistered is not a registered task"):
            await assert_submitted(queue, unregistered)
        with pytest.raises(TypeError, match=r"not a registered task"):
            await assert_not_submitted(queue, unregistered)
