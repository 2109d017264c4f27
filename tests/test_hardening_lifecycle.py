# SPDX-License-Identifier: MIT
# White-box: checks which due task the scheduler holds.
# pyright: reportPrivateUsage=false
"""Listeners that act on the queue mid-transition, stale timers, shutdown rules, huge ids."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

import trio_workq
from trio_workq import EventKind, TaskEvent, TaskStatus

HUGE_ID = "1" * 5000  # past Python's 4,300-digit int() limit


async def always_fail() -> None:
    await trio.lowlevel.checkpoint()
    raise OSError("boom")


async def sleeper(seconds: float) -> str:
    await trio.sleep(seconds)
    return "slept"


def check_counts(queue: trio_workq.WorkQueue) -> None:
    """The statistics agree with the listings, and every task is counted once."""
    stats = queue.statistics_nowait()
    counts = {
        TaskStatus.QUEUED: stats.queued,
        TaskStatus.SCHEDULED: stats.scheduled,
        TaskStatus.RETRYING: stats.retrying,
        TaskStatus.RUNNING: stats.running,
        TaskStatus.COMPLETED: stats.completed,
        TaskStatus.FAILED: stats.failed,
        TaskStatus.CANCELLED: stats.cancelled,
    }
    assert stats.submitted is not None
    assert stats.buffer_capacity is not None
    assert stats.retained == stats.completed + stats.failed + stats.cancelled
    forgotten = stats.submitted - sum(counts.values())
    assert forgotten >= 0
    for status, count in counts.items():
        listed = len(queue.list_tasks_nowait(status=status, limit=1000).tasks)
        assert listed == count, status
    listed_all = queue.list_tasks_nowait(limit=1000).tasks
    assert len(listed_all) == stats.submitted - forgotten
    assert len({info.id for info in listed_all}) == len(listed_all)
    assert stats.queued <= stats.buffer_capacity + stats.workers - stats.busy_workers


class TestListenerActsMidTransition:
    async def test_cancel_on_zero_backoff_retrying(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Cancelling from a ``retrying`` listener (zero backoff) ends the task cancelled, once."""
        policy = trio_workq.RetryPolicy(max_attempts=3, backoff=trio_workq.fixed(0))
        async with trio_workq.open_work_queue(workers=1, max_retained=2) as queue:

            def listener(event: TaskEvent) -> None:
                if event.kind is EventKind.RETRYING:
                    queue.cancel_nowait(event.task_id)

            queue.add_listener(listener)
            handle = await queue.submit(always_fail, retry=policy)
            await handle.wait()
            assert handle.status is TaskStatus.CANCELLED
            assert handle.info_nowait().attempts == 1
            check_counts(queue)
            stats = queue.statistics_nowait()
            assert (stats.failed, stats.cancelled) == (0, 1)
            # Later records push it out of the retained ones: no KeyError.
            for _ in range(5):
                await (await queue.submit(sleeper, 0)).wait()
            check_counts(queue)

    async def test_retry_from_failed_listener(
        self, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """`WorkQueue.retry` from a ``failed`` listener runs the task again."""
        retried: list[str] = []
        async with trio_workq.open_work_queue(workers=1) as queue:

            def listener(event: TaskEvent) -> None:
                if event.kind is EventKind.FAILED and not retried:
                    retried.append(queue.retry_nowait(event.task_id).id)

            queue.add_listener(listener)
            handle = await queue.submit(always_fail, retry=None)
            await trio.sleep(1)
            assert retried == [handle.id]
            assert handle.status is TaskStatus.FAILED
            assert handle.info_nowait().attempts == 2
            check_counts(queue)
            assert queue.statistics_nowait().failed == 1
        assert "listener" not in caplog.text

    @pytest.mark.parametrize("status", [TaskStatus.FAILED, TaskStatus.CANCELLED])
    async def test_waiters_see_the_first_ending_of_a_retried_task(
        self, autojump_clock: trio.testing.MockClock, status: TaskStatus
    ) -> None:
        """A waiter from before a listener's retry is woken by the ending it waited for."""
        async with trio_workq.open_work_queue(workers=1) as queue:
            retried = False

            def listener(event: TaskEvent) -> None:
                nonlocal retried
                if event.kind.value == status.value and not retried:
                    retried = True
                    queue.retry_nowait(event.task_id)

            queue.add_listener(listener)
            handle: trio_workq.MemoryTaskHandle[object]
            if status is TaskStatus.FAILED:
                handle = await queue.submit(always_fail)
            else:
                handle = await queue.submit(sleeper, 5)
                await trio.testing.wait_all_tasks_blocked()
                handle.cancel_nowait()
            start = trio.current_time()
            await handle.wait()  # woken by the first ending, not the retried run's
            assert trio.current_time() == start
            assert retried
            if status is TaskStatus.CANCELLED:
                assert not handle.done  # its second run takes 5 s
            check_counts(queue)
            await trio.sleep(10)
            assert handle.info_nowait().attempts == 2
            check_counts(queue)

    @pytest.mark.parametrize("buffer", [0, 1])
    async def test_submit_from_submitted_listener_respects_capacity(
        self, autojump_clock: trio.testing.MockClock, buffer: int
    ) -> None:
        """A listener submitting on ``submitted`` finds the new task already counted."""
        outcomes: list[str] = []
        async with trio_workq.open_work_queue(workers=1, max_buffer_size=buffer) as queue:
            if buffer:
                await queue.submit(sleeper, 10)  # occupy the worker
                await trio.testing.wait_all_tasks_blocked()

            def listener(event: TaskEvent) -> None:
                if event.kind is EventKind.SUBMITTED and not outcomes:
                    try:
                        queue.submit_nowait(sleeper, 1)
                    except trio.WouldBlock:
                        outcomes.append("full")
                    else:
                        outcomes.append("queued")

            queue.add_listener(listener)
            queue.submit_nowait(sleeper, 1)
            assert outcomes == ["full"]
            assert queue.statistics_nowait().queued <= buffer + (0 if buffer else 1)
            check_counts(queue)

    async def test_cancel_from_scheduled_and_submitted_listeners(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Cancelling a task from its own first event leaves the counts consistent."""
        async with trio_workq.open_work_queue(workers=1) as queue:

            def listener(event: TaskEvent) -> None:
                if event.kind in (EventKind.SUBMITTED, EventKind.SCHEDULED):
                    queue.cancel_nowait(event.task_id)

            queue.add_listener(listener)
            first = await queue.schedule(sleeper, 1, delay=5)
            second = await queue.submit(sleeper, 1)
            third = queue.submit_nowait(sleeper, 1)
            check_counts(queue)
            await trio.sleep(10)
            assert [h.status for h in (first, second, third)] == [TaskStatus.CANCELLED] * 3
            assert [h.info_nowait().attempts for h in (first, second, third)] == [0, 0, 0]
            check_counts(queue)

    async def test_cancel_a_task_being_started_from_an_admitted_producers_event(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A worker taking a task admits waiting producers only once that task runs.

        Before, a listener of the admitted task's ``submitted`` event found the
        taken task still ``queued`` (out of the ready set): cancelling it left
        the queued count off by one, and the worker ran the cancelled task.
        """
        starts: list[str] = []

        async def record(label: str) -> None:
            starts.append(label)
            await trio.sleep(1)

        async with trio_workq.open_work_queue(workers=1, max_buffer_size=1) as queue:
            first = await queue.submit(record, "first")
            second = await queue.submit(record, "second")  # fills the buffer
            await trio.testing.wait_all_tasks_blocked()

            seen: list[TaskStatus] = []

            def listener(event: TaskEvent) -> None:
                if event.kind is EventKind.SUBMITTED:
                    seen.append(second.status)
                    queue.cancel_nowait(second.id)

            queue.add_listener(listener)
            third = await queue.submit(record, "third")  # waits for room
            await third.wait()
            assert seen == [TaskStatus.RUNNING]
            assert starts == ["first", "second", "third"]
            assert first.status is TaskStatus.COMPLETED
            assert second.status is TaskStatus.CANCELLED
            assert third.status is TaskStatus.COMPLETED
            check_counts(queue)
            assert queue.statistics_nowait().queued == 0

    async def test_shutdown_never_overfills_the_buffer_with_a_held_task(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """At shutdown the scheduler's due task waits for room like before; it still runs."""
        async with trio_workq.open_work_queue(workers=1, max_buffer_size=1) as queue:
            await queue.submit(sleeper, 5)  # takes the worker
            await queue.submit(sleeper, 5)  # fills the buffer
            due = await queue.schedule(sleeper, 1, delay=1)
            await trio.sleep(2)
            assert queue._held is due
            async with trio.open_nursery() as nursery:
                nursery.start_soon(queue.shutdown)
                await trio.sleep(1)
                assert queue.statistics_nowait().queued <= 1
        assert due.status is TaskStatus.COMPLETED


class TestRetryAfterCancel:
    @pytest.mark.parametrize("waiting", ["scheduled", "retrying"])
    async def test_old_timer_entry_does_not_fire(
        self, autojump_clock: trio.testing.MockClock, waiting: str
    ) -> None:
        """Cancel then retry of a waiting task forgets its old due time."""
        starts: list[float] = []

        async def job() -> None:
            starts.append(trio.current_time())
            await trio.lowlevel.checkpoint()
            raise OSError("fails")

        policy = trio_workq.RetryPolicy(max_attempts=2, backoff=trio_workq.fixed(20))
        async with trio_workq.open_work_queue(workers=1) as queue:
            if waiting == "scheduled":
                handle = await queue.schedule(job, delay=10, retry=policy)
                # A live timer due just before the old entry keeps that one in the heap.
                await queue.schedule(sleeper, 0, delay=9)
                await trio.sleep(2)
            else:
                # First attempt at t=0, retrying until t=8 (old entry): cancel and retry at t=2.
                handle = await queue.submit(
                    job, retry=trio_workq.RetryPolicy(max_attempts=3, backoff=trio_workq.fixed(8))
                )
                await queue.schedule(sleeper, 0, delay=7)
                await trio.sleep(2)
                assert handle.status is TaskStatus.RETRYING
                starts.clear()
            handle.cancel_nowait()
            queue.retry_nowait(handle.id)
            await handle.wait()
            check_counts(queue)
        if waiting == "scheduled":
            # Attempt at t=2 (the retry), then its backoff: t=22, not the old t=10.
            assert starts == [2, 22]
        else:
            # Attempt at t=2, then backoff 8: t=10; the stale t=8 entry never fires.
            assert starts == [2, 10]


class TestShutdownCancelQueued:
    async def test_retrying_not_yet_due_is_cancelled(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """cancel_queued=True cancels a task waiting out its backoff."""
        policy = trio_workq.RetryPolicy(max_attempts=3, backoff=trio_workq.fixed(10))
        async with trio_workq.open_work_queue(workers=1) as queue:
            handle = await queue.submit(always_fail, retry=policy)
            await trio.sleep(1)
            assert handle.info_nowait().status is TaskStatus.RETRYING
            await queue.shutdown(cancel_queued=True)
        assert handle.status is TaskStatus.CANCELLED
        assert handle.info_nowait().attempts == 1

    async def test_retrying_due_and_held_is_cancelled(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """cancel_queued=True cancels a due retrying task waiting for room in the buffer."""
        policy = trio_workq.RetryPolicy(max_attempts=3, backoff=trio_workq.fixed(1))
        async with trio_workq.open_work_queue(workers=1, max_buffer_size=1) as queue:
            handle = await queue.submit(always_fail, retry=policy)
            await trio.testing.wait_all_tasks_blocked()
            await queue.submit(sleeper, 10)  # takes the worker
            await queue.submit(sleeper, 10)  # fills the buffer
            await trio.sleep(3)
            assert handle.info_nowait().status is TaskStatus.RETRYING
            assert queue._held is handle  # due, waiting for room
            await queue.shutdown(cancel_queued=True)
        assert handle.status is TaskStatus.CANCELLED
        assert handle.info_nowait().attempts == 1

    async def test_attempt_failing_after_cancel_queued_is_not_retried(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A running attempt that fails after cancel_queued=True starts no new attempt."""

        async def slow_fail() -> None:
            await trio.sleep(5)
            raise OSError("late")

        policy = trio_workq.RetryPolicy(max_attempts=3, backoff=trio_workq.fixed(0))
        async with trio_workq.open_work_queue(workers=1) as queue:
            handle = await queue.submit(slow_fail, retry=policy)
            await trio.testing.wait_all_tasks_blocked()
            await queue.shutdown(cancel_queued=True)
        assert handle.status is TaskStatus.CANCELLED
        assert handle.info_nowait().attempts == 1
        assert isinstance(handle.info_nowait().last_error, OSError)

    async def test_without_cancel_queued_retries_still_run(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A plain shutdown still gives retrying tasks their attempts."""
        policy = trio_workq.RetryPolicy(max_attempts=3, backoff=trio_workq.fixed(10))
        async with trio_workq.open_work_queue(workers=1) as queue:
            handle = await queue.submit(always_fail, retry=policy)
            await trio.sleep(1)
            await queue.shutdown()
        assert handle.status is TaskStatus.FAILED
        assert handle.info_nowait().attempts == 3


class TestHugeIds:
    async def test_lookups_raise_task_not_found(self) -> None:
        """Ids past the int() digit limit name no task: TaskNotFound, not ValueError."""
        async with trio_workq.open_work_queue() as queue:
            for call in (queue.get_info, queue.get_handle, queue.cancel, queue.retry):
                with pytest.raises(trio_workq.TaskNotFound):
                    await call(HUGE_ID)
            nowait = (
                queue.get_info_nowait,
                queue.get_handle_nowait,
                queue.cancel_nowait,
                queue.retry_nowait,
            )
            for call_nowait in nowait:
                with pytest.raises(trio_workq.TaskNotFound):
                    call_nowait(HUGE_ID)

    async def test_dashboard_answers_404(self) -> None:
        """The dashboard answers a huge id with a 404, not a 500."""
        import httpx

        from trio_workq.web import create_app

        with trio.fail_after(20):
            async with trio_workq.open_work_queue(shutdown_timeout=0) as queue:
                transport = httpx.ASGITransport(app=create_app(queue))
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://testserver"
                ) as client:
                    response = await client.get(f"/api/tasks/{HUGE_ID}")
                    assert response.status_code == 404, response.text
                    for action in ("cancel", "retry"):
                        response = await client.post(f"/api/tasks/{HUGE_ID}/{action}")
                        assert response.status_code == 404, response.text

    async def test_durable_queue_raises_task_not_found(self, tmp_path: Path) -> None:
        """The durable queue (SQLite store) and its dashboard treat a huge id as unknown."""
        import httpx

        from trio_workq.web._app import build_app
        from trio_workq.web._source import QueueSource

        with trio.fail_after(20):
            async with trio_workq.open_work_queue(
                store=f"sqlite:///{tmp_path}/tasks.db", workers=0
            ) as queue:
                with pytest.raises(trio_workq.TaskNotFound):
                    await queue.get_info(HUGE_ID)
                with pytest.raises(trio_workq.TaskNotFound):
                    await queue.cancel(HUGE_ID)
                with pytest.raises(trio_workq.TaskNotFound):
                    await queue.retry(HUGE_ID)
                transport = httpx.ASGITransport(app=build_app(QueueSource(queue), token=None))
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://testserver"
                ) as client:
                    response = await client.get(f"/api/tasks/{HUGE_ID}")
                    assert response.status_code == 404, response.text
                    for action in ("cancel", "retry"):
                        response = await client.post(f"/api/tasks/{HUGE_ID}/{action}")
                        assert response.status_code == 404, response.text
