# SPDX-License-Identifier: MIT
"""Per-task cancellation and timeouts: one cancel scope per task."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import trio_workq
from trio_workq import TaskStatus


async def sleeper(seconds: float) -> str:
    await trio.sleep(seconds)
    return "slept"


class TestCancel:
    async def test_cancel_queued(self) -> None:
        """A queued task is removed without running and ends cancelled."""
        ran: list[str] = []
        gate = trio.Event()

        async def blocker() -> None:
            await gate.wait()

        async def record() -> None:
            ran.append("ran")
            await trio.lowlevel.checkpoint()

        async with trio_workq.open_work_queue(workers=1) as queue:
            await queue.submit(blocker)
            victim = await queue.submit(record)
            assert victim.status is TaskStatus.QUEUED
            assert victim.cancel_nowait() is True
            assert victim.info_nowait().status is TaskStatus.CANCELLED
            assert queue.statistics_nowait().queued == 0
            gate.set()
            with pytest.raises(trio_workq.TaskCancelled, match="was cancelled"):
                await victim.result()
        assert ran == []
        assert victim.info_nowait().attempts == 0

    async def test_cancel_running_only_that_task(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """cancel() on a running task cancels it promptly and nothing else."""
        async with trio_workq.open_work_queue(workers=3) as queue:
            handles = [await queue.submit(sleeper, 10) for _ in range(3)]
            await trio.testing.wait_all_tasks_blocked()
            start = trio.current_time()
            assert queue.cancel_nowait(handles[1].id) is True
            outcome_ = await handles[1].wait()
            assert trio.current_time() == start  # prompt: no time passed
            with pytest.raises(trio_workq.TaskCancelled):
                outcome_.unwrap()
            assert handles[1].status is TaskStatus.CANCELLED
            assert await handles[0].result() == "slept"
            assert await handles[2].result() == "slept"
            assert queue.statistics_nowait().cancelled == 1

    async def test_worker_survives_cancel(self, autojump_clock: trio.testing.MockClock) -> None:
        """After a task is cancelled its worker runs the next task (its scope is renewed)."""
        async with trio_workq.open_work_queue(workers=1) as queue:
            first = await queue.submit(sleeper, 10)
            await trio.testing.wait_all_tasks_blocked()
            first.cancel_nowait()
            second = await queue.submit(sleeper, 1)
            assert await second.result() == "slept"
            assert first.status is TaskStatus.CANCELLED

    async def test_cancel_finished_returns_false(self) -> None:
        """cancel() after the task finished returns False and changes nothing."""
        async with trio_workq.open_work_queue() as queue:
            handle = await queue.submit(sleeper, 0)
            assert await handle.result() == "slept"
            assert handle.cancel_nowait() is False
            assert handle.status is TaskStatus.COMPLETED
            assert queue.statistics_nowait().cancelled == 0

    async def test_cancel_twice(self, autojump_clock: trio.testing.MockClock) -> None:
        """A second cancel() of a queued task returns False; of a running one, True and harmless."""
        gate = trio.Event()

        async def blocker() -> None:
            await gate.wait()

        async with trio_workq.open_work_queue(workers=1) as queue:
            running = await queue.submit(blocker)
            queued = await queue.submit(blocker)
            await trio.testing.wait_all_tasks_blocked()
            assert queued.cancel_nowait() is True
            assert queued.cancel_nowait() is False
            assert running.cancel_nowait() is True
            assert running.cancel_nowait() is True
            await running.wait()
            assert running.status is TaskStatus.CANCELLED
            assert queue.statistics_nowait().cancelled == 2

    async def test_cancel_racing_completion(self) -> None:
        """A cancel() that arrives after the task's last checkpoint loses: the task completes."""

        async def finish_without_checkpoint_after(event: trio.Event) -> str:
            await event.wait()
            return "done"

        async with trio_workq.open_work_queue(workers=1) as queue:
            event = trio.Event()
            handle = await queue.submit(finish_without_checkpoint_after, event)
            await trio.testing.wait_all_tasks_blocked()
            event.set()  # the task is rescheduled and will return without another checkpoint
            assert handle.cancel_nowait() is True
            assert await handle.result() == "done"
            assert handle.status is TaskStatus.COMPLETED
            # The worker's scope was spent by that cancel(); the next task is unaffected.
            nxt = await queue.submit(sleeper, 0)
            assert await nxt.result() == "slept"

    async def test_cancel_before_start_checkpoint(self) -> None:
        """A task cancelled while running but before its first checkpoint still ends cancelled."""
        started = trio.Event()

        async def job() -> None:
            started.set()
            await trio.sleep_forever()

        async with trio_workq.open_work_queue() as queue:
            handle = await queue.submit(job)
            await started.wait()
            handle.cancel_nowait()
            await handle.wait()
            assert handle.status is TaskStatus.CANCELLED

    async def test_task_that_swallows_cancel_and_raises(self) -> None:
        """A task raising another exception while being cancelled is recorded failed with it."""

        async def stubborn() -> None:
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                raise RuntimeError("cleanup failed") from None

        async with trio_workq.open_work_queue() as queue:
            handle = await queue.submit(stubborn)
            await trio.testing.wait_all_tasks_blocked()
            handle.cancel_nowait()
            with pytest.raises(RuntimeError, match="cleanup failed"):
                await handle.result()
            assert handle.status is TaskStatus.FAILED

    async def test_shielded_cleanup_finishes(self, autojump_clock: trio.testing.MockClock) -> None:
        """A cancelled task's shielded cleanup runs to the end before it is marked cancelled."""
        cleaned: list[float] = []

        async def with_cleanup() -> None:
            try:
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    await trio.sleep(3)
                    cleaned.append(trio.current_time())

        async with trio_workq.open_work_queue() as queue:
            handle = await queue.submit(with_cleanup)
            await trio.testing.wait_all_tasks_blocked()
            start = trio.current_time()
            handle.cancel_nowait()
            assert handle.status is TaskStatus.RUNNING
            await handle.wait()
            assert handle.info_nowait().status is TaskStatus.CANCELLED
            assert cleaned == [start + 3]


class TestTimeout:
    async def test_timeout_counts_from_start(self, autojump_clock: trio.testing.MockClock) -> None:
        """timeout counts from when the task starts running, not from submit."""
        async with trio_workq.open_work_queue(workers=1) as queue:
            first = await queue.submit(sleeper, 5)
            second = await queue.submit(sleeper, 2, timeout=3)  # waits 5 s in the queue
            assert await first.result() == "slept"
            assert await second.result() == "slept"

    async def test_timeout_fails_with_task_timeout(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """An overrun cancels the task at its deadline and records TaskTimeout."""
        async with trio_workq.open_work_queue(workers=1) as queue:
            start = trio.current_time()
            handle = await queue.submit(sleeper, 100, timeout=2.5)
            with pytest.raises(trio_workq.TaskTimeout, match=r"timed out after 2.5s"):
                await handle.result()
            assert trio.current_time() - start == pytest.approx(2.5)
            info = handle.info_nowait()
            assert info.status is TaskStatus.FAILED
            assert isinstance(info.last_error, trio_workq.TaskTimeout)
            assert isinstance(info.last_error, trio.TooSlowError)
            assert info.timeout == 2.5
            assert queue.statistics_nowait().failed == 1

    async def test_timeout_does_not_leak_to_next_task(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A worker's deadline is reset after a task with a timeout finishes."""
        async with trio_workq.open_work_queue(workers=1) as queue:
            quick = await queue.submit(sleeper, 1, timeout=2)
            slow = await queue.submit(sleeper, 50)
            assert await quick.result() == "slept"
            assert await slow.result() == "slept"

    async def test_timeout_after_timeout(self, autojump_clock: trio.testing.MockClock) -> None:
        """Consecutive timeouts on one worker each fire at their own deadline."""
        async with trio_workq.open_work_queue(workers=1) as queue:
            a = await queue.submit(sleeper, 100, timeout=1)
            b = await queue.submit(sleeper, 100, timeout=2)
            c = await queue.submit(sleeper, 1)
            for h in (a, b):
                with pytest.raises(trio_workq.TaskTimeout):
                    await h.result()
            assert await c.result() == "slept"
            assert c.info_nowait().started_at is not None
            assert b.info_nowait().finished_at == c.info_nowait().started_at

    async def test_cancel_wins_over_timeout(self, autojump_clock: trio.testing.MockClock) -> None:
        """A task cancelled before its deadline ends cancelled, not timed out."""
        async with trio_workq.open_work_queue() as queue:
            handle = await queue.submit(sleeper, 100, timeout=10)
            await trio.sleep(1)
            handle.cancel_nowait()
            await handle.wait()
            assert handle.status is TaskStatus.CANCELLED
            assert handle.info_nowait().last_error is None

    async def test_timeout_racing_completion(self, autojump_clock: trio.testing.MockClock) -> None:
        """A sleep ending exactly at the deadline loses to the timeout (the outer scope wins)."""

        async def busy_until_deadline() -> str:
            await trio.sleep(1)
            return "done"

        async with trio_workq.open_work_queue() as queue:
            handle = await queue.submit(busy_until_deadline, timeout=1)
            with pytest.raises(trio_workq.TaskTimeout):
                await handle.result()
            just_in_time = await queue.submit(busy_until_deadline, timeout=1.000001)
            assert await just_in_time.result() == "done"
            after = await queue.submit(sleeper, 5)
            assert await after.result() == "slept"
