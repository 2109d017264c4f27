# SPDX-License-Identifier: MIT
"""The in-memory worker loop: odd task outcomes, cancellation from any scope, fairness."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import trio
import trio.testing

import trio_workq
from trio_workq import RetryPolicy, TaskStatus, TaskTimeout, fixed
from trio_workq._core.outcomes import split_attempt_error
from trio_workq._core.registry import task
from trio_workq._durable.queue import DurableWorkQueue, open_durable_queue

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup


async def child_failing_in_cleanup() -> None:
    try:
        await trio.sleep_forever()
    finally:
        raise OSError("child cleanup failed")


async def nursery_failing_in_cleanup(started: list[float]) -> None:
    """A task whose nursery raises Cancelled *and* OSError when it is cancelled."""
    started.append(trio.current_time())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(child_failing_in_cleanup)
        await trio.sleep_forever()


async def sleeper(seconds: float) -> str:
    await trio.sleep(seconds)
    return "slept"


def group_of_oserror(exc: BaseException | None) -> bool:
    """Whether *exc* is an ExceptionGroup of OSErrors (any nesting)."""
    matches = pytest.RaisesGroup(OSError, flatten_subgroups=True).matches(exc)
    return matches and isinstance(exc, Exception)


class TestSplitAttemptError:
    def test_kinds(self) -> None:
        """Ordinary errors are the task's; Cancelled and KeyboardInterrupt & co are re-raised."""
        error = OSError()
        assert split_attempt_error(error) == (None, error)
        errors = ExceptionGroup("g", [OSError(), ValueError()])
        assert split_attempt_error(errors) == (None, errors)
        interrupt = KeyboardInterrupt()
        assert split_attempt_error(interrupt) == (interrupt, None)
        interrupted = BaseExceptionGroup("g", [OSError(), KeyboardInterrupt()])
        assert split_attempt_error(interrupted) == (interrupted, None)

    async def test_groups_with_cancelled(self) -> None:
        """A group of Cancelled and errors splits in two; with KeyboardInterrupt it stays whole."""
        cancelled: list[BaseException] = []
        with trio.CancelScope() as scope:
            scope.cancel()
            try:
                await trio.lowlevel.checkpoint()
            except trio.Cancelled as exc:
                cancelled.append(exc)
        only = BaseExceptionGroup("g", [cancelled[0]])
        assert split_attempt_error(cancelled[0]) == (cancelled[0], None)
        assert split_attempt_error(only) == (only, None)
        mixed = BaseExceptionGroup("g", [cancelled[0], BaseExceptionGroup("h", [OSError()])])
        to_raise, error = split_attempt_error(mixed)
        assert pytest.RaisesGroup(trio.Cancelled, flatten_subgroups=True).matches(to_raise)
        assert group_of_oserror(error)
        with_interrupt = BaseExceptionGroup("g", [cancelled[0], OSError(), KeyboardInterrupt()])
        assert split_attempt_error(with_interrupt) == (with_interrupt, None)


class TestGroupsRaisedWhileCancelled:
    async def test_cancel(self, autojump_clock: trio.testing.MockClock) -> None:
        """cancel() of a task whose nursery also raises an error ends that task only: cancelled."""
        started: list[float] = []
        policy = RetryPolicy(max_attempts=3, backoff=fixed(0))
        async with trio_workq.open_work_queue(workers=2, retry=policy) as queue:
            handle = await queue.submit(nursery_failing_in_cleanup, started)
            other = await queue.submit(sleeper, 5)
            await trio.sleep(1)
            assert handle.cancel_nowait()
            await handle.wait()
            assert other.status is TaskStatus.RUNNING
            assert await (await queue.submit(sleeper, 1)).result() == "slept"
        assert handle.status is TaskStatus.CANCELLED
        assert len(started) == 1
        info = handle.info_nowait()
        assert info.attempts == 1
        assert group_of_oserror(info.last_error)  # recorded, not raised by the queue
        with pytest.raises(trio_workq.TaskCancelled):
            await handle.result()
        assert await other.result() == "slept"

    async def test_timeout(self, autojump_clock: trio.testing.MockClock) -> None:
        """A timed-out task whose nursery also raises fails with TaskTimeout and is retried."""
        started: list[float] = []
        policy = RetryPolicy(max_attempts=2, backoff=fixed(0))
        async with trio_workq.open_work_queue(workers=2, retry=policy) as queue:
            start = trio.current_time()
            handle = await queue.submit(nursery_failing_in_cleanup, started, timeout=3)
            other = await queue.submit(sleeper, 10)
            with pytest.raises(TaskTimeout) as caught:
                await handle.result()
        assert started == [start, start + 3]
        assert handle.status is TaskStatus.FAILED
        assert group_of_oserror(caught.value.__cause__)
        assert [type(e) for e in handle.info_nowait().errors] == [TaskTimeout, TaskTimeout]
        assert await other.result() == "slept"

    async def test_enclosing_cancel(self, autojump_clock: trio.testing.MockClock) -> None:
        """Cancelled by an enclosing scope, such a task ends cancelled; only Cancelled goes on."""
        started: list[float] = []
        policy = RetryPolicy(max_attempts=3, backoff=fixed(0))
        handles: list[trio_workq.MemoryTaskHandle[None]] = []
        with trio.CancelScope() as scope:
            async with trio_workq.open_work_queue(retry=policy) as queue:
                handles.append(await queue.submit(nursery_failing_in_cleanup, started))
                await trio.sleep(1)
                scope.cancel()
                await trio.sleep_forever()
        assert scope.cancelled_caught
        assert handles[0].status is TaskStatus.CANCELLED
        assert len(started) == 1
        assert group_of_oserror(handles[0].info_nowait().last_error)

    async def test_keyboard_interrupt_in_group_propagates(self) -> None:
        """A KeyboardInterrupt raised beside the task's Cancelled still stops the queue."""

        async def interrupting_child() -> None:
            try:
                await trio.sleep_forever()
            finally:
                raise KeyboardInterrupt

        async def parent() -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(interrupting_child)
                await trio.sleep_forever()

        holder: list[trio_workq.MemoryTaskHandle[None]] = []
        with pytest.RaisesGroup(KeyboardInterrupt, flatten_subgroups=True):
            async with trio_workq.open_work_queue() as queue:
                holder.append(await queue.submit(parent))
                await trio.testing.wait_all_tasks_blocked()
                holder[0].cancel_nowait()
                await trio.sleep_forever()
        assert holder[0].status is TaskStatus.CANCELLED

    async def test_plain_group_is_a_failure(self, autojump_clock: trio.testing.MockClock) -> None:
        """A group of ordinary exceptions is an ordinary failure, retried per policy."""
        runs: list[int] = []

        async def fails_in_group() -> None:
            runs.append(1)
            await trio.lowlevel.checkpoint()
            raise ExceptionGroup("two", [OSError(), ValueError()])

        policy = RetryPolicy(max_attempts=2, backoff=fixed(0))
        async with trio_workq.open_work_queue(retry=policy) as queue:
            handle = await queue.submit(fails_in_group)
            with pytest.RaisesGroup(OSError, ValueError):
                await handle.result()
        assert len(runs) == 2


async def test_enclosing_cancel_is_never_retried(autojump_clock: trio.testing.MockClock) -> None:
    """A task raising at once when an enclosing scope cancels the queue runs no further attempt."""
    starts: list[int] = []

    async def fails_in_cleanup(key: int) -> None:
        starts.append(key)
        try:
            await trio.sleep_forever()
        finally:
            raise OSError("cleanup failed")

    policy = RetryPolicy(max_attempts=5, backoff=fixed(0))
    handles: list[trio_workq.MemoryTaskHandle[None]] = []
    with trio.CancelScope() as scope:
        async with trio_workq.open_work_queue(workers=10, retry=policy) as queue:
            handles.extend([await queue.submit(fails_in_cleanup, key) for key in range(20)])
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()
            await trio.sleep_forever()
    assert sorted(starts) == list(range(10))
    assert [h.info_nowait().attempts for h in handles] == [1] * 10 + [0] * 10
    assert all(h.status is TaskStatus.FAILED for h in handles[:10])
    assert all(h.status is TaskStatus.CANCELLED for h in handles[10:])


async def test_nothing_starts_after_the_shutdown_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A worker freed after the deadline by a shielded task takes no queued task."""
    starts: list[float] = []

    async def shielded() -> str:
        with trio.CancelScope(shield=True):
            await trio.sleep(2)
        return "shielded"

    async def records_start() -> None:
        starts.append(trio.current_time())
        await trio.sleep(1)

    async with trio_workq.open_work_queue(workers=1) as queue:
        first = await queue.submit(shielded)
        queued = [await queue.submit(records_start) for _ in range(3)]
        start = trio.current_time()
        await queue.shutdown(timeout=1)
        assert trio.current_time() - start == pytest.approx(2)
    assert first.status is TaskStatus.COMPLETED
    assert starts == []
    assert [(h.status, h.info_nowait().attempts) for h in queued] == [(TaskStatus.CANCELLED, 0)] * 3


class TestShutdownFromOwnTask:
    async def test_returns_and_the_queue_drains(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """shutdown() awaited inside one of the queue's tasks starts the shutdown and returns."""

        async def stopper() -> str:
            await queue.shutdown()
            assert queue.statistics_nowait().closed
            await trio.sleep(1)
            return "stopped"

        with trio.fail_after(100):
            async with trio_workq.open_work_queue(workers=2) as queue:
                handle = queue.submit_nowait(stopper)
                queued = queue.submit_nowait(sleeper, 3)
                assert await handle.result() == "stopped"
        assert await queued.result() == "slept"

    async def test_deadline_applies_to_the_caller(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """With a timeout, the calling task runs on, and is cancelled at the deadline if busy."""
        marks: list[float] = []

        async def stopper(seconds: float) -> None:
            await queue.shutdown(timeout=5)
            marks.append(trio.current_time())
            await trio.sleep(seconds)
            marks.append(trio.current_time())

        with trio.fail_after(100):
            async with trio_workq.open_work_queue(workers=2) as queue:
                start = trio.current_time()
                quick = queue.submit_nowait(stopper, 1)
                slow = queue.submit_nowait(stopper, 60)
        assert quick.status is TaskStatus.COMPLETED
        assert slow.status is TaskStatus.CANCELLED
        assert marks == [start, start, start + 1]
        assert trio.current_time() - start == pytest.approx(5)


async def test_later_longer_deadline_does_not_extend(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """shutdown(2) then shutdown(50): the queue stops at the first, shorter deadline."""
    async with trio_workq.open_work_queue() as queue:
        handle = await queue.submit(sleeper, 100)
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(queue.shutdown, 2)
            await trio.sleep(1)
            await queue.shutdown(timeout=50)
        assert trio.current_time() - start == pytest.approx(2)
        assert handle.status is TaskStatus.CANCELLED


async def test_workers_yield_to_other_tasks() -> None:
    """A backlog of tasks that never await does not monopolize the run loop.

    Counted in tasks run between two wakes of another trio task (not in
    wall time): the workers yield about every millisecond.
    """
    total = 30_000
    ran = 0

    async def no_await() -> None:
        nonlocal ran
        ran += 1

    longest = 0
    with trio.fail_after(60):
        async with trio_workq.open_work_queue(max_buffer_size=math.inf) as queue:
            for _ in range(total):
                queue.submit_nowait(no_await)
            seen = ran
            while ran < total:
                await trio.sleep(0)  # noqa: ASYNC115 - the call a web handler would make
                longest = max(longest, ran - seen)
                seen = ran
    assert ran == total
    # About 1 ms of work (hundreds of tasks): far below the whole backlog.
    assert longest <= total // 5, longest


# ------------------------------------------------------------ durable queue

durable_queues: list[DurableWorkQueue] = []  # the queue the durable tasks below stop
durable_started: list[trio.Event] = []  # the last one is set when durable_sleeper starts


@task(name="hardening.durable_stopper")
async def durable_stopper() -> str:
    await durable_queues[-1].shutdown()
    return "returned"


@task(name="hardening.durable_sleeper")
async def durable_sleeper(seconds: float) -> str:
    durable_started[-1].set()
    await trio.sleep(seconds)
    return "slept"


class TestDurable:
    async def test_shutdown_from_own_task(self, tmp_path: Path) -> None:
        """A durable task awaiting its queue's shutdown() starts it and returns."""
        url = f"sqlite:///{tmp_path}/tasks.db"
        with trio.fail_after(20):
            async with open_durable_queue(store=url, workers=1, lease=5) as queue:
                durable_queues.append(queue)
                handle = await queue.submit(durable_stopper)
                with trio.fail_after(10):
                    assert await handle.result() == "returned"
                assert (await queue.statistics()).closed

    async def test_later_longer_deadline_does_not_extend(self, tmp_path: Path) -> None:
        """shutdown(0.5) then shutdown(50): the durable queue stops at the shorter deadline."""
        url = f"sqlite:///{tmp_path}/tasks.db"
        async with open_durable_queue(store=url, workers=1, lease=5) as queue:
            durable_started.append(trio.Event())
            handle = await queue.submit(durable_sleeper, 60)
            with trio.fail_after(10):
                await durable_started[-1].wait()
            start = trio.current_time()
            with trio.fail_after(20):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(queue.shutdown, 0.5)
                    await trio.sleep(0.1)
                    await queue.shutdown(timeout=50)
            assert 0.4 <= trio.current_time() - start < 5
            info = await queue.get_info(handle.id)
        assert (info.status, info.attempts) == (TaskStatus.QUEUED, 0)  # given back
