# SPDX-License-Identifier: MIT
"""What `MemoryStore` does beyond the `Store` contract (tests/test_store_contract.py).

Its clock, opening and sharing, its lazily cleaned heaps, and a durable queue
running on it.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing
from _recovery import recover_expired

import trio_workq
from trio_workq import RetryPolicy, fixed
from trio_workq._core.registry import task
from trio_workq._core.status import TaskStatus
from trio_workq._stores.memory import MemoryStore
from trio_workq._stores.protocol import Claimed, NewTask, StoreError

QUEUED, SCHEDULED = TaskStatus.QUEUED, TaskStatus.SCHEDULED


def new(due_at: float, *, status: TaskStatus = QUEUED, priority: int = 0) -> NewTask:
    return NewTask("job", b"[]", priority, due_at, 3, None, status)


@task(name="test_memory_store.double")
async def double(value: int) -> int:
    await trio.lowlevel.checkpoint()
    return 2 * value


attempts_seen: list[int] = []


@task(name="test_memory_store.flaky", retry=RetryPolicy(max_attempts=3, backoff=fixed(0.01)))
async def flaky() -> int:
    attempt = trio_workq.current_task().attempts
    attempts_seen.append(attempt)
    await trio.lowlevel.checkpoint()
    if attempt < 3:
        raise ValueError(f"attempt {attempt}")
    return attempt


def test_the_clock_must_be_callable() -> None:
    with pytest.raises(TypeError, match="clock must be a callable, not float"):
        MemoryStore(clock=1.0)  # type: ignore[arg-type]


async def test_every_time_comes_from_the_clock(autojump_clock: trio.testing.MockClock) -> None:
    """With trio's clock, a task scheduled an hour ahead falls due in virtual time."""
    store = MemoryStore(clock=trio.current_time)
    await store.open()
    start = trio.current_time()
    (task_id,) = await store.add([new(start + 3600, status=SCHEDULED)])
    claimed = await store.claim("w", 1, 30.0)
    assert (claimed.tasks, claimed.next_due) == ((), start + 3600)
    assert claimed.next_due is not None
    await trio.sleep_until(claimed.next_due)
    (running,) = (await store.claim("w", 1, 30.0)).tasks
    assert (running.id, running.started_at, running.lease_until) == (
        task_id,
        start + 3600,
        start + 3630,
    )
    await trio.sleep(31)
    assert [row.id for row in await store.expired(10)] == [task_id]
    assert await recover_expired(store, "lost", now=trio.current_time()) == 1
    await store.aclose()


async def test_wait_for_work_times_out_in_trio_time(autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryStore()
    await store.open()
    start = trio.current_time()
    await store.wait_for_work(600)
    assert trio.current_time() - start == 600


async def test_reopened_it_keeps_its_tasks() -> None:
    """Like a file: closed and opened again, the store still holds its tasks."""
    store = MemoryStore()
    with pytest.raises(StoreError, match="not open"):
        await store.counts()
    await store.open()
    (task_id,) = await store.add([new(0.0)])
    await store.aclose()
    with pytest.raises(StoreError, match="not open"):
        await store.get(task_id)
    await store.open()
    task_row = await store.get(task_id)
    assert task_row is not None
    assert task_row.status is QUEUED
    await store.aclose()


async def test_shared_opens() -> None:
    """Each open is matched by one aclose: the store serves until the last one."""
    store = MemoryStore()
    await store.open()
    await store.open()
    await store.aclose()
    assert (await store.counts())[QUEUED] == 0
    await store.aclose()
    await store.aclose()  # more than opened: harmless
    with pytest.raises(StoreError):
        await store.counts()


async def test_stale_heap_entries_are_never_claimed() -> None:
    """A task cancelled and requeued while waiting is claimed once, at its new time."""
    now = [100.0]
    store = MemoryStore(clock=lambda: now[0])
    await store.open()
    (later, soon) = await store.add(
        [new(150.0, status=SCHEDULED), new(120.0, status=SCHEDULED, priority=1)]
    )
    assert await store.cancel(later) is SCHEDULED
    assert await store.requeue(later) is TaskStatus.CANCELLED  # now queued, due at once
    assert await store.cancel(soon) is SCHEDULED
    claimed = await store.claim("w", 10, 30.0)
    assert [t.id for t in claimed.tasks] == [later]
    assert claimed.next_due is None  # both delayed entries are stale
    now[0] = 200.0
    assert (await store.claim("w", 10, 30.0)).tasks == ()
    assert await store.requeue(soon) is TaskStatus.CANCELLED
    assert [t.id for t in (await store.claim("w", 10, 30.0)).tasks] == [soon]
    assert (await store.claim("w", 10, 30.0)).tasks == ()
    await store.aclose()


async def test_a_stale_entry_that_fell_due_is_dropped() -> None:
    now = [100.0]
    store = MemoryStore(clock=lambda: now[0])
    await store.open()
    (task_id,) = await store.add([new(150.0, status=SCHEDULED)])
    assert repr(store) == "<MemoryStore 1 tasks>"
    assert await store.cancel(task_id) is SCHEDULED
    now[0] = 200.0
    assert (await store.claim("w", 10, 30.0)).tasks == ()
    assert store._delayed == []  # pyright: ignore[reportPrivateUsage] - the stale entry is gone
    await store.aclose()


async def test_a_clock_that_goes_back() -> None:
    """A wall clock set back makes a task that fell due wait again, as the SQL stores do."""
    now = [100.0]
    store = MemoryStore(clock=lambda: now[0])
    await store.open()
    (task_id,) = await store.add([new(110.0, status=SCHEDULED)])
    now[0] = 120.0
    await store.wait_for_work(0)
    assert await store.counts() == {**dict.fromkeys(TaskStatus, 0), SCHEDULED: 1}
    (first,) = (await store.claim("w", 1, 5.0)).tasks
    assert await store.release("w", task_id, 1)  # queued, due at 120
    now[0] = 115.0
    assert await store.claim("w", 1, 5.0) == Claimed((), 120.0)
    now[0] = 120.0
    assert [t.id for t in (await store.claim("w", 1, 5.0)).tasks] == [first.id]
    await store.aclose()


async def test_every_waiter_wakes() -> None:
    """Two queues sharing one store both wake when work arrives."""
    store = MemoryStore()
    await store.open()
    await store.wait_for_work(0)
    woke: list[int] = []

    async def waiter(k: int) -> None:
        await store.wait_for_work(30)
        woke.append(k)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter, 1)
            nursery.start_soon(waiter, 2)
            await trio.testing.wait_all_tasks_blocked()
            await store.add([new(0.0)])
    assert sorted(woke) == [1, 2]
    await store.aclose()


async def test_the_wait_for_work_timeout_is_checked() -> None:
    store = MemoryStore()
    await store.open()
    with pytest.raises(TypeError, match="timeout must be a number of seconds, not str"):
        await store.wait_for_work("1")  # type: ignore[arg-type]
    await store.aclose()


async def test_a_durable_queue_runs_on_it() -> None:
    """open_work_queue accepts it: tasks complete, retry with backoff, and outlive the queue."""
    attempts_seen.clear()
    store = MemoryStore()
    with trio.fail_after(10):
        async with trio_workq.open_work_queue(store=store, workers=2, poll_interval=0.05) as queue:
            handles = [await queue.submit(double, k) for k in range(5)]
            assert [await handle.result() for handle in handles] == [0, 2, 4, 6, 8]
            assert await (await queue.submit(flaky)).result() == 3
            assert attempts_seen == [1, 2, 3]
            later = await queue.schedule(double, 21, delay=3600)
        # The queue is closed; the store still holds its tasks.
        async with trio_workq.open_work_queue(store=store, workers=1, poll_interval=0.05) as queue:
            info = await queue.get_info(later.id)
            assert info is not None
            assert info.status is SCHEDULED
            assert (await queue.statistics()).completed == 6
