# SPDX-License-Identifier: MIT
# White-box: checks that the timer heap is compacted.
# pyright: reportPrivateUsage=false
"""Delayed tasks: schedule(), schedule_nowait(), the scheduler, max_scheduled and shutdown."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import trio
import trio.testing

import trio_workq
from trio_workq import TaskStatus


async def noop() -> None:
    await trio.lowlevel.checkpoint()


async def sleeper(seconds: float) -> None:
    await trio.sleep(seconds)


def sync_function() -> None:
    """Not async: the queue must refuse it."""


class StartLog:
    """An async job that records (label, trio time) when each run starts."""

    def __init__(self) -> None:
        self.starts: list[tuple[str, float]] = []

    async def job(self, label: str) -> str:
        self.starts.append((label, trio.current_time()))
        await trio.lowlevel.checkpoint()
        return label

    def start_of(self, label: str) -> float:
        (time,) = [t for name, t in self.starts if name == label]
        return time

    @property
    def labels(self) -> list[str]:
        return [name for name, _ in self.starts]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


async def schedule_either(
    queue: trio_workq.WorkQueue, nowait: bool, **kwargs: Any
) -> trio_workq.MemoryTaskHandle[None]:
    if nowait:
        return queue.schedule_nowait(noop, **kwargs)
    return await queue.schedule(noop, **kwargs)


async def schedule_labelled(queue: trio_workq.WorkQueue, log: StartLog, label: str) -> None:
    await queue.schedule(log.job, label, delay=1)


class TestDelay:
    async def test_runs_at_its_due_time(self, autojump_clock: trio.testing.MockClock) -> None:
        """A task scheduled with delay=5 starts exactly 5 seconds later and returns its value."""
        log = StartLog()
        async with trio_workq.open_work_queue(workers=2) as queue:
            start = trio.current_time()
            handle = await queue.schedule(log.job, "a", delay=5)
            assert handle.status is TaskStatus.SCHEDULED
            assert await handle.result() == "a"
            assert log.start_of("a") - start == 5
            assert handle.info_nowait().status is TaskStatus.COMPLETED

    async def test_never_starts_before_due(self, autojump_clock: trio.testing.MockClock) -> None:
        """Each delayed task starts at its own due time, never earlier, whatever the call order."""
        log = StartLog()
        delays = {"a": 7.25, "b": 0.5, "c": 3.0, "d": 0.0, "e": 3.0}
        async with trio_workq.open_work_queue(workers=4) as queue:
            start = trio.current_time()
            handles = [
                await queue.schedule(log.job, label, delay=delay) for label, delay in delays.items()
            ]
            for handle in handles:
                await handle.wait()
        assert sorted(log.labels) == sorted(delays)
        for label, delay in delays.items():
            assert log.start_of(label) - start == pytest.approx(delay, abs=1e-9)
            assert log.start_of(label) >= start + delay - 1e-9

    async def test_status_scheduled_then_queued_then_running(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A delayed task is 'scheduled' until due, 'queued' while workers are busy, then runs."""
        gate = trio.Event()
        release = trio.Event()

        async def blocker() -> None:
            await gate.wait()

        async def late() -> None:
            await release.wait()

        async with trio_workq.open_work_queue(workers=1) as queue:
            start = trio.current_time()
            await queue.submit(blocker)
            handle = await queue.schedule(late, delay=2)
            await trio.sleep(1.5)
            assert handle.status is TaskStatus.SCHEDULED
            assert queue.statistics_nowait().scheduled == 1
            await trio.sleep(1)  # now past due, but the only worker is busy
            assert handle.info_nowait().status is TaskStatus.QUEUED
            stats = queue.statistics_nowait()
            assert (stats.scheduled, stats.queued) == (0, 1)
            gate.set()
            await trio.testing.wait_all_tasks_blocked()
            assert handle.info_nowait().status is TaskStatus.RUNNING
            assert handle.info_nowait().started_at is not None
            release.set()
            await handle.result()
            assert trio.current_time() - start == pytest.approx(2.5)

    async def test_due_at_while_scheduled(self, autojump_clock: trio.testing.MockClock) -> None:
        """TaskInfo.due_at is created_at + delay while scheduled, and None once the task has run."""
        async with trio_workq.open_work_queue() as queue:
            handle = await queue.schedule(noop, delay=90)
            info = queue.get_info_nowait(handle.id)
            assert info.status is TaskStatus.SCHEDULED
            assert info.due_at is not None
            assert info.due_at.tzinfo is not None
            assert abs(info.due_at - (info.created_at + timedelta(seconds=90))) < timedelta(
                milliseconds=1
            )
            assert info.started_at is None
            await handle.result()
            assert handle.info_nowait().due_at is None

    async def test_zero_delay_runs_now(self, autojump_clock: trio.testing.MockClock) -> None:
        """delay=0 is accepted and the task runs without the clock advancing."""
        log = StartLog()
        async with trio_workq.open_work_queue() as queue:
            start = trio.current_time()
            handle = await queue.schedule(log.job, "now", delay=0)
            await handle.result()
        assert log.start_of("now") == start

    async def test_options_apply_and_timeout_counts_from_start(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """schedule() options apply; the timeout counts from the task's start, not the call."""
        async with trio_workq.open_work_queue() as queue:
            handle = await queue.schedule(
                sleeper, 3, delay=10, timeout=5, name="nightly", priority=4
            )
            info = handle.info_nowait()
            assert (info.name, info.priority, info.timeout) == ("nightly", 4, 5.0)
            await handle.result()  # 10 s waiting + 3 s running: within a 5 s timeout
            assert handle.status is TaskStatus.COMPLETED
            too_slow = await queue.schedule(sleeper, 30, delay=1, timeout=5)
            with pytest.raises(trio_workq.TaskTimeout):
                await too_slow.result()


class TestAt:
    async def test_aware_datetime(self, autojump_clock: trio.testing.MockClock) -> None:
        """at=now+30s runs the task about 30 seconds (of Trio time) later, not before."""
        log = StartLog()
        async with trio_workq.open_work_queue() as queue:
            start = trio.current_time()
            handle = await queue.schedule(log.job, "at", at=utcnow() + timedelta(seconds=30))
            await trio.sleep(29)
            assert handle.status is TaskStatus.SCHEDULED
            await handle.result()
        assert log.start_of("at") - start == pytest.approx(30, abs=0.5)

    async def test_other_time_zone(self, autojump_clock: trio.testing.MockClock) -> None:
        """An aware datetime in a non-UTC zone means the same instant."""
        log = StartLog()
        plus_five = timezone(timedelta(hours=5))
        async with trio_workq.open_work_queue() as queue:
            start = trio.current_time()
            at = (utcnow() + timedelta(seconds=60)).astimezone(plus_five)
            handle = await queue.schedule(log.job, "tz", at=at)
            assert handle.info_nowait().due_at is not None
            await handle.result()
        assert log.start_of("tz") - start == pytest.approx(60, abs=0.5)

    async def test_past_instant_runs_promptly(self, autojump_clock: trio.testing.MockClock) -> None:
        """at= an instant in the past runs the task at once."""
        log = StartLog()
        async with trio_workq.open_work_queue() as queue:
            start = trio.current_time()
            handle = await queue.schedule(log.job, "past", at=utcnow() - timedelta(days=1))
            await handle.result()
            nowait = queue.schedule_nowait(log.job, "past2", at=utcnow() - timedelta(hours=1))
            await nowait.result()
        assert log.start_of("past") == start
        assert log.start_of("past2") == start


class TestBadInput:
    @pytest.mark.parametrize("nowait", [False, True], ids=["schedule", "schedule_nowait"])
    @pytest.mark.parametrize(
        ("kwargs", "error", "message"),
        [
            (
                {"delay": 1, "at": datetime(2030, 1, 1, tzinfo=timezone.utc)},
                TypeError,
                "exactly one",
            ),
            ({}, TypeError, "exactly one"),
            ({"delay": -1}, ValueError, ">= 0"),
            ({"delay": -0.001}, ValueError, ">= 0"),
            ({"delay": math.nan}, ValueError, "finite"),
            ({"delay": math.inf}, ValueError, "finite"),
            ({"delay": -math.inf}, ValueError, "delay"),
            ({"delay": True}, TypeError, "number of seconds"),
            ({"delay": False}, TypeError, "number of seconds"),
            ({"delay": "5"}, TypeError, "number of seconds"),
            ({"at": datetime(2030, 1, 1)}, ValueError, "timezone-aware"),
            ({"at": "2030-01-01T00:00:00+00:00"}, TypeError, "datetime"),
            ({"at": 1_900_000_000}, TypeError, "datetime"),
        ],
    )
    async def test_bad_when(
        self, kwargs: dict[str, Any], error: type[Exception], message: str, nowait: bool
    ) -> None:
        """Bad delay/at arguments raise the documented error, and nothing is scheduled."""
        async with trio_workq.open_work_queue() as queue:
            with pytest.raises(error, match=message):
                await schedule_either(queue, nowait, **kwargs)
            stats = queue.statistics_nowait()
            assert (stats.submitted, stats.scheduled, stats.schedulers_waiting) == (0, 0, 0)

    async def test_bad_function(self) -> None:
        """A sync function is refused by schedule() and nothing is scheduled."""
        async with trio_workq.open_work_queue() as queue:
            with pytest.raises(TypeError, match="async function"):
                await queue.schedule(sync_function, delay=1)  # type: ignore[arg-type]
            assert queue.statistics_nowait().submitted == 0

    async def test_cancelled_caller_schedules_nothing(self) -> None:
        """schedule() called in a cancelled scope raises Cancelled and schedules nothing."""
        async with trio_workq.open_work_queue() as queue:
            with trio.CancelScope() as scope:
                scope.cancel()
                await queue.schedule(noop, delay=1)
            assert scope.cancelled_caught
            assert queue.statistics_nowait().submitted == 0


class TestCancel:
    async def test_cancel_scheduled_task(self, autojump_clock: trio.testing.MockClock) -> None:
        """cancel() on a scheduled task ends it 'cancelled' at once, and it never runs."""
        log = StartLog()
        async with trio_workq.open_work_queue() as queue:
            handle = await queue.schedule(log.job, "x", delay=10)
            other = await queue.schedule(log.job, "y", delay=10)
            assert handle.cancel_nowait() is True
            assert handle.status is TaskStatus.CANCELLED
            assert handle.done
            assert queue.cancel_nowait(other.id) is True
            stats = queue.statistics_nowait()
            assert (stats.scheduled, stats.cancelled) == (0, 2)
            await trio.sleep(20)
            assert handle.cancel_nowait() is False
            with pytest.raises(trio_workq.TaskCancelled, match="cancelled"):
                await handle.result()
            assert queue.get_info_nowait(other.id).status is TaskStatus.CANCELLED
        assert log.starts == []
        assert handle.attempts == 0

    async def test_cancel_one_of_many(self, autojump_clock: trio.testing.MockClock) -> None:
        """Cancelling some scheduled tasks leaves the others to fire at their times."""
        log = StartLog()
        async with trio_workq.open_work_queue() as queue:
            start = trio.current_time()
            handles = [await queue.schedule(log.job, str(i), delay=i) for i in range(1, 201)]
            for handle in handles[::2]:  # "1", "3", ...
                handle.cancel_nowait()
            assert queue.statistics_nowait().scheduled == 100
            await handles[-1].wait()
            assert all(h.status is TaskStatus.COMPLETED for h in handles[1::2])
        assert log.labels == [str(i) for i in range(2, 201, 2)]
        for label, started in log.starts:
            assert started - start == int(label)

    async def test_cancel_earliest_does_not_delay_others(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Cancelling the earliest scheduled task leaves the scheduler waiting for the next one."""
        log = StartLog()
        async with trio_workq.open_work_queue() as queue:
            start = trio.current_time()
            first = await queue.schedule(log.job, "first", delay=5)
            second = await queue.schedule(log.job, "second", delay=8)
            await trio.sleep(1)
            first.cancel_nowait()
            await second.wait()
        assert log.starts == [("second", start + 8)]


class TestScheduler:
    async def test_earlier_task_wakes_scheduler(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A task scheduled after a later one fires at its own time, not the later one's."""
        log = StartLog()
        async with trio_workq.open_work_queue() as queue:
            start = trio.current_time()
            late = await queue.schedule(log.job, "late", delay=100)
            await trio.sleep(1)  # the scheduler is now asleep until t=100
            await queue.schedule(log.job, "early", delay=10)
            await trio.sleep(1)
            queue.schedule_nowait(log.job, "earlier", delay=2)
            await late.wait()
        assert log.starts == [
            ("earlier", start + 4),
            ("early", start + 11),
            ("late", start + 100),
        ]

    async def test_equal_due_times_run_by_priority(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Tasks due at the same time run highest priority first, then in scheduling order."""
        log = StartLog()
        plan = [("low", 0), ("high", 10), ("low again", 0), ("mid", 5), ("negative", -1)]
        async with trio_workq.open_work_queue(workers=1) as queue:
            handles = [
                await queue.schedule(log.job, label, delay=1, priority=priority)
                for label, priority in plan
            ]
            for handle in handles:
                await handle.wait()
        assert log.labels == ["high", "mid", "low", "low again", "negative"]

    async def test_many_fire_in_due_order(self, autojump_clock: trio.testing.MockClock) -> None:
        """100,000 scheduled tasks run at their due times, in due order, priority breaking ties."""
        count = 100_000
        rng = random.Random(1234)
        plan = [(rng.randrange(50), rng.randrange(5)) for _ in range(count)]
        started: list[tuple[int, float]] = []

        async def job(index: int) -> None:
            started.append((index, trio.current_time()))

        async with trio_workq.open_work_queue(workers=1) as queue:
            start = trio.current_time()
            handles = [
                queue.schedule_nowait(job, index, delay=delay, priority=priority)
                for index, (delay, priority) in enumerate(plan)
            ]
            assert queue.statistics_nowait().scheduled == count
            for handle in handles:
                await handle.wait()
        expected = sorted(range(count), key=lambda i: (plan[i][0], -plan[i][1], i))
        assert [index for index, _ in started] == expected
        assert all(t - start == plan[index][0] for index, t in started)
        assert queue.statistics_nowait().submitted == count
        assert all(handle.status is TaskStatus.COMPLETED for handle in handles)

    async def test_full_buffer_delays_but_never_drops(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """workers=1, max_buffer_size=1: many due tasks wait for room, then all run, in order."""
        log = StartLog()
        count = 300
        async with trio_workq.open_work_queue(workers=1, max_buffer_size=1) as queue:
            start = trio.current_time()
            await queue.submit(sleeper, 10)  # holds the only worker until t=10
            await queue.submit(sleeper, 1)  # fills the buffer
            handles = [await queue.schedule(log.job, str(i), delay=1) for i in range(count)]
            await trio.sleep(5)
            assert all(h.status is TaskStatus.SCHEDULED for h in handles)  # delayed, not dropped
            stats = queue.statistics_nowait()
            assert (stats.scheduled, stats.queued, stats.producers_waiting) == (count, 1, 0)
            for handle in handles:
                await handle.wait()
        assert all(h.status is TaskStatus.COMPLETED for h in handles)
        assert log.labels == [str(i) for i in range(count)]
        assert all(t - start == 11 for _, t in log.starts)

    async def test_cancel_due_task_waiting_for_room(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A due task held back by a full buffer can be cancelled; it never runs, the others do."""
        log = StartLog()
        async with trio_workq.open_work_queue(workers=1, max_buffer_size=1) as queue:
            await queue.submit(sleeper, 10)
            await queue.submit(sleeper, 1)
            held = await queue.schedule(log.job, "held", delay=1)
            after = await queue.schedule(log.job, "after", delay=2)
            await trio.sleep(5)
            assert held.cancel_nowait() is True
            assert held.status is TaskStatus.CANCELLED
            assert queue.statistics_nowait().scheduled == 1
            assert await after.result() == "after"
        assert log.labels == ["after"]
        assert held.status is TaskStatus.CANCELLED


class TestMaxScheduled:
    async def test_schedule_nowait_would_block(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """schedule_nowait raises trio.WouldBlock once max_scheduled tasks are scheduled."""
        async with trio_workq.open_work_queue(max_scheduled=2) as queue:
            first = queue.schedule_nowait(noop, delay=10)
            queue.schedule_nowait(noop, at=utcnow() + timedelta(seconds=10))
            with pytest.raises(trio.WouldBlock):
                queue.schedule_nowait(noop, delay=1)
            stats = queue.statistics_nowait()
            assert (stats.scheduled, stats.submitted) == (2, 2)
            first.cancel_nowait()  # frees a slot
            third = queue.schedule_nowait(noop, delay=1)
            assert third.status is TaskStatus.SCHEDULED
            with pytest.raises(trio.WouldBlock):
                queue.schedule_nowait(noop, delay=1)
            await trio.sleep(2)  # third fell due and ran: its slot is free again
            assert third.info_nowait().status is TaskStatus.COMPLETED
            fourth = queue.schedule_nowait(noop, delay=1)
            assert queue.statistics_nowait().scheduled == 2
            await fourth.wait()

    async def test_schedule_waits_until_due_task_frees_a_slot(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """schedule() blocks at max_scheduled and returns when a scheduled task falls due."""
        log = StartLog()
        returned: list[float] = []
        async with trio_workq.open_work_queue(max_scheduled=1) as queue:
            start = trio.current_time()
            await queue.schedule(log.job, "first", delay=10)

            async def scheduler() -> None:
                await queue.schedule(log.job, "second", delay=3)
                returned.append(trio.current_time())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(scheduler)
                await trio.sleep(5)
                assert returned == []
                stats = queue.statistics_nowait()
                assert (stats.scheduled, stats.schedulers_waiting, stats.submitted) == (1, 1, 1)
        assert returned == [start + 10]
        # Its delay counted from the call: already past when admitted, so it runs at once.
        assert log.starts == [("first", start + 10), ("second", start + 10)]

    async def test_schedule_waits_until_cancel_frees_a_slot(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Cancelling a scheduled task lets a blocked schedule() proceed at once."""
        async with trio_workq.open_work_queue(max_scheduled=1) as queue:
            start = trio.current_time()
            first = await queue.schedule(noop, delay=100)
            got: list[trio_workq.MemoryTaskHandle[None]] = []

            async def scheduler() -> None:
                got.append(await queue.schedule(noop, delay=100))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(scheduler)
                await trio.testing.wait_all_tasks_blocked()
                assert got == []
                first.cancel_nowait()
            assert len(got) == 1
            assert got[0].status is TaskStatus.SCHEDULED
            assert trio.current_time() == start
            got[0].cancel_nowait()

    async def test_waiting_schedulers_are_fifo(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Callers blocked in schedule() are admitted in arrival order."""
        log = StartLog()
        async with trio_workq.open_work_queue(workers=1, max_scheduled=1) as queue:
            await queue.schedule(log.job, "0", delay=1)
            async with trio.open_nursery() as nursery:
                for i in range(1, 5):
                    nursery.start_soon(schedule_labelled, queue, log, str(i))
                    await trio.testing.wait_all_tasks_blocked()
                assert queue.statistics_nowait().schedulers_waiting == 4
        assert log.labels == ["0", "1", "2", "3", "4"]

    async def test_cancelled_blocked_schedule_leaves_nothing(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A schedule() cancelled while waiting for a slot schedules nothing."""
        async with trio_workq.open_work_queue(max_scheduled=1) as queue:
            await queue.schedule(noop, delay=100)
            with trio.move_on_after(1) as scope:
                await queue.schedule(noop, delay=1)
            assert scope.cancelled_caught
            stats = queue.statistics_nowait()
            assert (stats.submitted, stats.scheduled, stats.schedulers_waiting) == (1, 1, 0)
            await trio.sleep(200)
            assert queue.statistics_nowait().completed == 1


class TestShutdown:
    async def test_not_yet_due_tasks_end_cancelled(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Leaving the block cancels not-yet-due tasks at once; result() raises TaskCancelled."""
        log = StartLog()
        async with trio_workq.open_work_queue() as queue:
            start = trio.current_time()
            due = await queue.schedule(log.job, "due", delay=1)
            later = await queue.schedule(log.job, "later", delay=100)
            at = await queue.schedule(log.job, "at", at=utcnow() + timedelta(hours=1))
            await trio.sleep(2)
        assert trio.current_time() - start == 2  # shutdown did not wait for the timers
        assert due.status is TaskStatus.COMPLETED
        for handle in (later, at):
            assert handle.status is TaskStatus.CANCELLED
            with pytest.raises(trio_workq.TaskCancelled):
                await handle.result()
        assert log.labels == ["due"]
        stats = queue.statistics_nowait()
        assert (stats.scheduled, stats.cancelled, stats.completed) == (0, 2, 1)

    async def test_schedule_after_shutdown(self) -> None:
        """schedule() and schedule_nowait() raise QueueClosed once shutdown has begun."""
        async with trio_workq.open_work_queue() as queue:
            await queue.shutdown()
            with pytest.raises(trio_workq.QueueClosed, match="shutting down"):
                await queue.schedule(noop, delay=1)
            with pytest.raises(trio_workq.QueueClosed, match="shutting down"):
                queue.schedule_nowait(noop, at=utcnow())
        with pytest.raises(trio_workq.QueueClosed):
            await queue.schedule(noop, delay=0)
        assert queue.statistics_nowait().submitted == 0

    async def test_blocked_schedule_gets_queue_closed(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A caller blocked in schedule() at max_scheduled gets QueueClosed at shutdown."""
        errors: list[BaseException] = []
        async with trio_workq.open_work_queue(max_scheduled=1) as queue:
            first = await queue.schedule(noop, delay=100)

            async def scheduler() -> None:
                try:
                    await queue.schedule(noop, delay=1)
                except trio_workq.QueueClosed as exc:
                    errors.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(scheduler)
                await trio.testing.wait_all_tasks_blocked()
                await queue.shutdown()
        assert len(errors) == 1
        assert first.status is TaskStatus.CANCELLED
        assert queue.statistics_nowait().submitted == 1

    async def test_due_task_waiting_for_room_still_runs_at_shutdown(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A task already due but waiting for buffer room still runs in a graceful shutdown."""
        log = StartLog()
        async with trio_workq.open_work_queue(workers=1, max_buffer_size=1) as queue:
            await queue.submit(sleeper, 10)
            await queue.submit(sleeper, 1)
            held = await queue.schedule(log.job, "held", delay=1)
            await trio.sleep(5)
            assert held.status is TaskStatus.SCHEDULED
        assert held.info_nowait().status is TaskStatus.COMPLETED
        assert log.labels == ["held"]

    async def test_due_task_waiting_for_room_cancelled_with_enclosing_scope(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """When the enclosing scope is cancelled, a due task waiting for room ends 'cancelled'."""
        log = StartLog()
        handles: list[trio_workq.MemoryTaskHandle[str]] = []
        queues: list[trio_workq.WorkQueue] = []
        with trio.move_on_after(5):
            async with trio_workq.open_work_queue(workers=1, max_buffer_size=1) as queue:
                queues.append(queue)
                await queue.submit(sleeper, 10)
                await queue.submit(sleeper, 1)
                handles.append(await queue.schedule(log.job, "held", delay=1))
                await trio.sleep_forever()
        ((held,), (queue,)) = (handles, queues)
        assert log.starts == []
        with trio.move_on_after(1):
            await held.wait()
        assert held.status is TaskStatus.CANCELLED
        stats = queue.statistics_nowait()
        assert (stats.scheduled, stats.cancelled) == (0, 3)


async def test_cancelled_timers_are_compacted() -> None:
    """Cancelling most scheduled tasks shrinks the timer heap instead of keeping tombstones."""

    async def never() -> None:
        await trio.lowlevel.checkpoint()

    async with trio_workq.open_work_queue() as queue:
        handles = [queue.schedule_nowait(never, delay=1000 + i) for i in range(200)]
        for handle in handles[:150]:
            assert handle.cancel_nowait()
        assert len(queue._timers._heap) < 200
        assert queue._timers.live == 50
        assert queue.statistics_nowait().scheduled == 50
        await queue.shutdown()
    assert all(h.status is trio_workq.TaskStatus.CANCELLED for h in handles)
