# SPDX-License-Identifier: MIT
"""Graceful shutdown, deadlines, and what happens when the block is left abnormally."""

from __future__ import annotations

import sys

import pytest
import trio
import trio.testing

import trio_workq
from trio_workq import TaskStatus

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup


async def sleeper(seconds: float) -> str:
    await trio.sleep(seconds)
    return "slept"


async def test_leaving_block_drains(autojump_clock: trio.testing.MockClock) -> None:
    """Leaving the block normally waits for queued and running tasks to finish."""
    async with trio_workq.open_work_queue(workers=2) as queue:
        handles = [await queue.submit(sleeper, 1 + i) for i in range(6)]
    assert all(h.status is TaskStatus.COMPLETED for h in handles)
    assert queue.statistics_nowait().completed == 6


async def test_shutdown_deadline_cancels_rest(autojump_clock: trio.testing.MockClock) -> None:
    """At the deadline, running and still-queued tasks are cancelled and shutdown returns."""
    async with trio_workq.open_work_queue(workers=1) as queue:
        quick = await queue.submit(sleeper, 1)
        slow = await queue.submit(sleeper, 100)
        never = await queue.submit(sleeper, 1)
        start = trio.current_time()
        await queue.shutdown(timeout=5)
        assert trio.current_time() - start == pytest.approx(5)
    assert quick.status is TaskStatus.COMPLETED
    assert slow.status is TaskStatus.CANCELLED
    assert never.status is TaskStatus.CANCELLED
    assert never.info_nowait().attempts == 0
    with pytest.raises(trio_workq.TaskCancelled):
        await never.result()


async def test_shutdown_cancel_queued(autojump_clock: trio.testing.MockClock) -> None:
    """cancel_queued=True cancels buffered tasks at once and lets running ones finish."""
    async with trio_workq.open_work_queue(workers=1) as queue:
        running = await queue.submit(sleeper, 3)
        queued = [await queue.submit(sleeper, 1) for _ in range(5)]
        await trio.testing.wait_all_tasks_blocked()
        await queue.shutdown(cancel_queued=True)
    assert running.status is TaskStatus.COMPLETED
    assert all(h.status is TaskStatus.CANCELLED for h in queued)


async def test_shutdown_default_timeout_from_open(autojump_clock: trio.testing.MockClock) -> None:
    """shutdown_timeout sets the deadline used when the block is left."""
    start = trio.current_time()
    async with trio_workq.open_work_queue(shutdown_timeout=2) as queue:
        handle = await queue.submit(sleeper, 60)
    assert trio.current_time() - start == pytest.approx(2)
    assert handle.status is TaskStatus.CANCELLED


async def test_shutdown_waits_for_shielded_cleanup(autojump_clock: trio.testing.MockClock) -> None:
    """A task shielding its cleanup for a while delays shutdown until it unwinds."""

    async def stubborn() -> None:
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(4)

    async with trio_workq.open_work_queue() as queue:
        handle = await queue.submit(stubborn)
        start = trio.current_time()
        await queue.shutdown(timeout=1)
        assert trio.current_time() - start == pytest.approx(5)
        assert handle.status is TaskStatus.CANCELLED


async def test_callers_task_survives_deadline(autojump_clock: trio.testing.MockClock) -> None:
    """The shutdown deadline lives on the queue's scope: the caller's other tasks are untouched."""
    survived: list[float] = []

    async def bystander() -> None:
        await trio.sleep(20)
        survived.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        nursery.start_soon(bystander)
        async with trio_workq.open_work_queue(nursery, shutdown_timeout=1) as queue:
            handle = await queue.submit(sleeper, 100)
        assert handle.status is TaskStatus.CANCELLED
        assert not nursery.cancel_scope.cancel_called
    assert survived == [start + 20]


async def test_producers_waiting_get_queue_closed(autojump_clock: trio.testing.MockClock) -> None:
    """Callers blocked in submit() get QueueClosed when shutdown begins; their tasks never exist."""
    gate = trio.Event()
    errors: list[BaseException] = []

    async def blocker() -> None:
        await gate.wait()

    async def producer(queue: trio_workq.WorkQueue) -> None:
        try:
            await queue.submit(blocker)
        except trio_workq.QueueClosed as exc:
            errors.append(exc)

    async with trio_workq.open_work_queue(workers=1, max_buffer_size=0) as queue:
        await queue.submit(blocker)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(producer, queue)
            nursery.start_soon(producer, queue)
            await trio.testing.wait_all_tasks_blocked()
            assert queue.statistics_nowait().producers_waiting == 2
            nursery.start_soon(queue.shutdown)  # it then waits for the blocked task
            await trio.testing.wait_all_tasks_blocked()
            assert len(errors) == 2
            assert queue.statistics_nowait().submitted == 1
            gate.set()


async def test_exception_in_block_cancels_tasks(autojump_clock: trio.testing.MockClock) -> None:
    """An exception escaping the block cancels tasks promptly and propagates as itself."""
    start = trio.current_time()
    handles: list[trio_workq.MemoryTaskHandle[str]] = []
    with pytest.raises(KeyError, match="boom"):
        async with trio_workq.open_work_queue(workers=1) as queue:
            handles.append(await queue.submit(sleeper, 100))  # runs
            handles.append(await queue.submit(sleeper, 100))  # waits in the buffer
            await trio.testing.wait_all_tasks_blocked()
            raise KeyError("boom")
    assert trio.current_time() == start
    assert [h.status for h in handles] == [TaskStatus.CANCELLED] * 2
    assert handles[0].info_nowait().attempts == 1


async def test_exception_in_block_with_callers_nursery(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With the caller's nursery, an escaping exception still cancels the queue's tasks."""
    handles: list[trio_workq.MemoryTaskHandle[str]] = []
    with pytest.RaisesGroup(ValueError):
        async with trio.open_nursery() as nursery:
            async with trio_workq.open_work_queue(nursery, workers=1) as queue:
                handles.append(await queue.submit(sleeper, 100))
                await trio.testing.wait_all_tasks_blocked()
                raise ValueError
    assert handles[0].status is TaskStatus.CANCELLED


async def test_enclosing_cancel_cancels_tasks(autojump_clock: trio.testing.MockClock) -> None:
    """Cancelling the enclosing scope cancels the queue's tasks and records them cancelled."""
    handles: list[trio_workq.MemoryTaskHandle[str]] = []
    with trio.move_on_after(2) as scope:
        async with trio_workq.open_work_queue(workers=1) as queue:
            handles.append(await queue.submit(sleeper, 100))
            handles.append(await queue.submit(sleeper, 100))
            await trio.sleep(50)
    assert scope.cancelled_caught
    assert [h.status for h in handles] == [TaskStatus.CANCELLED] * 2


async def test_cancelled_shutdown_forces_cancellation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """If the caller of shutdown() is cancelled, the queue's tasks are cancelled at once."""
    async with trio_workq.open_work_queue(workers=1) as queue:
        handle = await queue.submit(sleeper, 100)
        with trio.move_on_after(1):
            await queue.shutdown()
        await handle.wait()
        assert handle.status is TaskStatus.CANCELLED


async def test_shutdown_twice_and_shorter_deadline_wins(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """shutdown() may be called again; a later, shorter deadline takes effect."""
    async with trio_workq.open_work_queue() as queue:
        handle = await queue.submit(sleeper, 100)
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(queue.shutdown, 50)
            await trio.sleep(1)
            await queue.shutdown(timeout=2)
        assert trio.current_time() - start == pytest.approx(3)
        assert handle.status is TaskStatus.CANCELLED
        await queue.shutdown()  # already stopped: returns at once


async def test_shutdown_checkpoints_and_rejects_bad_timeout() -> None:
    """shutdown() is a checkpoint and validates its timeout."""
    async with trio_workq.open_work_queue() as queue:
        with pytest.raises(ValueError, match="timeout must be >= 0"):
            await queue.shutdown(timeout=-1)
        assert not queue.statistics_nowait().closed
        with trio.testing.assert_checkpoints():
            await queue.shutdown()


async def test_keyboard_interrupt_is_not_swallowed() -> None:
    """A non-cancellation BaseException propagates out of the queue; its task ends cancelled."""

    async def interrupt() -> None:
        await trio.lowlevel.checkpoint()
        raise KeyboardInterrupt

    holder: list[trio_workq.MemoryTaskHandle[None]] = []
    with pytest.RaisesGroup(KeyboardInterrupt, flatten_subgroups=True):
        async with trio_workq.open_work_queue() as queue:
            holder.append(await queue.submit(interrupt))
            await trio.sleep_forever()
    assert holder[0].status is TaskStatus.CANCELLED


async def test_drain_gives_retrying_tasks_their_attempts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A graceful shutdown lets a task in backoff, or failing during the drain, retry."""
    attempts: list[float] = []

    async def flaky() -> str:
        attempts.append(trio.current_time())
        await trio.sleep(1)
        if len(attempts) < 3:
            raise OSError("not yet")
        return "finally"

    policy = trio_workq.RetryPolicy(max_attempts=3, backoff=trio_workq.fixed(2))
    start = trio.current_time()
    async with trio_workq.open_work_queue(retry=policy) as queue:
        handle = await queue.submit(flaky)
        await trio.sleep(1.5)  # first attempt failed; now retrying
        assert handle.status is TaskStatus.RETRYING
        later = await queue.schedule(flaky, delay=1)
    assert await handle.result() == "finally"
    assert attempts == [start, start + 3, start + 6]
    assert later.status is TaskStatus.CANCELLED
    assert later.info_nowait().attempts == 0


async def test_cancelling_task_held_for_room_lets_queue_drain(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A retry held for buffer room and cancelled during the drain does not stall shutdown."""
    runs: list[float] = []

    async def fails_first() -> None:
        runs.append(trio.current_time())
        raise OSError("first attempt")

    policy = trio_workq.RetryPolicy(max_attempts=2, backoff=trio_workq.fixed(1))
    async with trio.open_nursery() as nursery:
        async with trio_workq.open_work_queue(
            nursery, workers=1, max_buffer_size=0, retry=policy
        ) as queue:
            start = trio.current_time()
            flaky = await queue.submit(fails_first)
            await trio.testing.wait_all_tasks_blocked()
            blocker = await queue.submit(sleeper, 5)
            nursery.start_soon(queue.shutdown)  # drains: the retry is due at 1 s, held for room
            await trio.sleep(2)
            assert flaky.info_nowait().status is TaskStatus.RETRYING
            assert flaky.cancel_nowait()
        assert trio.current_time() - start == pytest.approx(5)
    assert flaky.status is TaskStatus.CANCELLED
    assert runs == [start]
    assert blocker.status is TaskStatus.COMPLETED


async def test_deadline_cancelled_task_failing_in_cleanup_is_not_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A task cancelled by the shutdown deadline that raises while unwinding is never retried."""
    runs: list[float] = []

    async def bad_cleanup() -> None:
        runs.append(trio.current_time())
        try:
            await trio.sleep_forever()
        finally:
            raise OSError("cleanup failed")

    policy = trio_workq.RetryPolicy(max_attempts=5, backoff=trio_workq.fixed(0))
    async with trio_workq.open_work_queue(retry=policy, shutdown_timeout=1) as queue:
        handle = await queue.submit(bad_cleanup)
    assert len(runs) == 1
    assert handle.status is TaskStatus.FAILED
    assert isinstance(handle.info_nowait().last_error, OSError)


async def test_exception_group_from_block_is_not_double_wrapped() -> None:
    """An ExceptionGroup raised in the block (no nursery given) comes out as that group."""
    with pytest.RaisesGroup(ValueError, match="^mine"):
        async with trio_workq.open_work_queue():
            raise BaseExceptionGroup("mine", [ValueError()])


async def test_drain_ends_when_last_task_was_held_for_room(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A retry held for room, taken directly by a worker during the drain, still lets it end."""
    runs: list[float] = []

    async def fails_first_without_checkpoint() -> str:
        runs.append(trio.current_time())
        if len(runs) == 1:
            raise OSError("first attempt")
        return "second"  # finishes before the scheduler task runs again

    policy = trio_workq.RetryPolicy(max_attempts=2, backoff=trio_workq.fixed(1))
    async with trio_workq.open_work_queue(workers=1, max_buffer_size=0, retry=policy) as queue:
        start = trio.current_time()
        flaky = await queue.submit(fails_first_without_checkpoint)
        await trio.testing.wait_all_tasks_blocked()
        blocker = await queue.submit(sleeper, 2)
        await trio.sleep(0.5)
        await queue.shutdown()  # the retry falls due at 1 s, held until the worker is free
    assert await flaky.result() == "second"
    assert runs == [start, start + 2]
    assert blocker.status is TaskStatus.COMPLETED
