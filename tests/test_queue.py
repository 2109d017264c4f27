# SPDX-License-Identifier: MIT
# White-box: checks that the ready set and retained records stay bounded; clears the name cache.
# pyright: reportPrivateUsage=false
"""Submitting, running, results, lookups, priorities and backpressure."""

from __future__ import annotations

import functools
import inspect
import math
import operator
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import outcome
import pytest
import trio
import trio.testing

import trio_workq
from trio_workq import TaskStatus
from trio_workq._core.info import _recent_names


async def noop() -> None:
    await trio.lowlevel.checkpoint()


async def double(x: int) -> int:
    await trio.lowlevel.checkpoint()
    return 2 * x


async def boom(message: str) -> None:
    await trio.lowlevel.checkpoint()
    raise ValueError(message)


def sync_function() -> None:
    """Not async: the queue must refuse it."""


class TestSubmitAndResult:
    async def test_result_returns_value(self) -> None:
        """A submitted task runs and its handle returns the value."""
        async with trio_workq.open_work_queue(workers=2) as queue:
            handle = await queue.submit(double, 21)
            assert await handle.result() == 42
            assert handle.done
            assert handle.info_nowait().status is TaskStatus.COMPLETED

    async def test_failure_is_reraised_and_recorded(self) -> None:
        """A task's exception is re-raised by result() and recorded, and the worker survives."""
        async with trio_workq.open_work_queue(workers=1) as queue:
            bad = await queue.submit(boom, "nope")
            with pytest.raises(ValueError, match=r"^nope$"):
                await bad.result()
            info = queue.get_info_nowait(bad.id)
            assert info.status is TaskStatus.FAILED
            assert isinstance(info.last_error, ValueError)
            assert info.errors == (info.last_error,)
            good = await queue.submit(double, 1)
            assert await good.result() == 2

    async def test_wait_returns_fresh_outcomes(self) -> None:
        """wait() returns the final attempt's outcome, unwrappable on every call."""
        async with trio_workq.open_work_queue() as queue:
            handle = await queue.submit(double, 4)
            first = await handle.wait()
            second = await handle.wait()
            assert isinstance(first, outcome.Value)
            assert first.unwrap() == 8
            assert second.unwrap() == 8
            failed = await queue.submit(boom, "x")
            error = await failed.wait()
            assert isinstance(error, outcome.Error)
            assert isinstance(error.error, ValueError)

    async def test_kwargs_through_partial(self) -> None:
        """Keyword arguments travel through functools.partial, trio style."""

        async def greet(name: str, *, punctuation: str) -> str:
            await trio.lowlevel.checkpoint()
            return f"hi {name}{punctuation}"

        async with trio_workq.open_work_queue() as queue:
            handle = await queue.submit(functools.partial(greet, punctuation="!"), "ann")
            assert await handle.result() == "hi ann!"
            assert handle.info_nowait().name.endswith("greet")

    async def test_async_callable_object_and_method(self) -> None:
        """Objects with an async __call__ and bound async methods are accepted."""

        class Job:
            async def __call__(self) -> str:
                await trio.lowlevel.checkpoint()
                return "called"

            async def method(self) -> str:
                await trio.lowlevel.checkpoint()
                return "method"

        async with trio_workq.open_work_queue() as queue:
            assert await (await queue.submit(Job())).result() == "called"
            assert await (await queue.submit(Job().method)).result() == "method"

    async def test_callable_returning_non_awaitable_fails_the_task(self) -> None:
        """A callable of unknown kind that returns no awaitable fails its task, not the queue."""

        opaque: Any = operator.itemgetter(0)  # a C callable: its kind cannot be told
        async with trio_workq.open_work_queue() as queue:
            handle = await queue.submit(opaque, [1])
            with pytest.raises(TypeError):
                await handle.result()
            assert await (await queue.submit(double, 3)).result() == 6

    async def test_names(self) -> None:
        """The name defaults to module:qualname and can be set explicitly."""
        async with trio_workq.open_work_queue() as queue:
            default = await queue.submit(double, 1)
            named = await queue.submit(double, 1, name="doubler")
            assert default.name == f"{__name__}:double"
            assert named.info_nowait().name == "doubler"
            assert "doubler" in repr(named)

    async def test_default_names_of_many_callables(self) -> None:
        """Default names stay right past the name cache's bound, also for unhashable callables."""

        class Unhashable:
            __hash__ = None  # type: ignore[assignment]

            async def __call__(self) -> None:
                await trio.lowlevel.checkpoint()

        async with trio_workq.open_work_queue(max_buffer_size=math.inf) as queue:
            partials = [functools.partial(double, i) for i in range(600)]
            handles = [queue.submit_nowait(p) for p in partials]
            assert {h.name for h in handles} == {f"{__name__}:double"}
            assert len(_recent_names) <= 256
            unhashable = queue.submit_nowait(Unhashable())
            assert unhashable.name.endswith("Unhashable")

    async def test_ids_unique_and_lookup(self) -> None:
        """Every task gets a distinct string id usable with get_info/get_handle."""
        async with trio_workq.open_work_queue() as queue:
            handles = [queue.submit_nowait(double, i) for i in range(50)]
            assert len({h.id for h in handles}) == 50
            assert all(isinstance(h.id, str) for h in handles)
            for h in handles:
                assert queue.get_handle_nowait(h.id) is h
            assert [await h.result() for h in handles] == [2 * i for i in range(50)]

    async def test_unknown_id(self) -> None:
        """get_info, get_handle and cancel raise TaskNotFound (a KeyError) for unknown ids."""
        async with trio_workq.open_work_queue() as queue:
            for bad_id in ("nope", "999"):
                with pytest.raises(trio_workq.TaskNotFound, match="no task with id"):
                    queue.get_info_nowait(bad_id)
                with pytest.raises(KeyError):
                    queue.cancel_nowait(bad_id)
            with pytest.raises(TypeError, match="task_id must be a str, not int"):
                queue.get_info_nowait(5)  # type: ignore[arg-type]
            assert "no task with id 'x'" in str(trio_workq.TaskNotFound("no task with id 'x'"))

    async def test_timestamps_are_aware_utc(self, autojump_clock: trio.testing.MockClock) -> None:
        """created/started/finished are aware UTC datetimes in order, matching trio time spans."""

        async def nap() -> None:
            await trio.sleep(5)

        async with trio_workq.open_work_queue(workers=1) as queue:
            blocker = await queue.submit(nap)
            handle = await queue.submit(nap)
            await handle.result()
            info = handle.info_nowait()
            assert info.created_at.tzinfo is timezone.utc
            assert info.started_at is not None
            assert info.finished_at is not None
            assert info.created_at <= info.started_at <= info.finished_at
            assert (info.finished_at - info.started_at).total_seconds() == pytest.approx(5)
            assert (info.started_at - info.created_at).total_seconds() == pytest.approx(5)
            assert abs(info.created_at - datetime.now(timezone.utc)).total_seconds() < 60
            assert blocker.done

    async def test_submit_checkpoints(self) -> None:
        """submit() is a checkpoint on the fast path; submit_nowait() is not."""
        async with trio_workq.open_work_queue(workers=1) as queue:
            with trio.testing.assert_checkpoints():
                await queue.submit(noop)
            with trio.testing.assert_no_checkpoints():
                queue.submit_nowait(noop)

    async def test_wait_and_result_checkpoint_when_done(self) -> None:
        """wait() and result() checkpoint even when the task has finished."""
        async with trio_workq.open_work_queue() as queue:
            handle = await queue.submit(double, 1)
            await handle.wait()
            with trio.testing.assert_checkpoints():
                await handle.wait()
            with trio.testing.assert_checkpoints():
                await handle.result()

    async def test_submit_cancelled_before_start_queues_nothing(self) -> None:
        """A submit() whose caller is already cancelled raises Cancelled and queues nothing."""
        async with trio_workq.open_work_queue() as queue:
            with trio.CancelScope() as scope:
                scope.cancel()
                await queue.submit(noop)
            assert scope.cancelled_caught
            assert queue.statistics_nowait().submitted == 0


class TestBadInput:
    @pytest.mark.parametrize(
        ("fn", "message"),
        [
            (sync_function, "synchronous function"),
            (functools.partial(sync_function), "synchronous function"),
            (42, "expected an async function"),
            ("double", "expected an async function"),
            (None, "expected an async function"),
            (int, "the class"),
            (print, "synchronous function"),
        ],
    )
    async def test_not_async_callable(self, fn: Any, message: str) -> None:
        """Sync functions, non-callables and classes raise TypeError and queue nothing."""
        async with trio_workq.open_work_queue() as queue:
            with pytest.raises(TypeError, match=message):
                await queue.submit(fn)
            with pytest.raises(TypeError, match=message):
                queue.submit_nowait(fn)
            assert queue.statistics_nowait().submitted == 0

    async def test_coroutine_object(self) -> None:
        """A coroutine object is refused with a hint, and closed (no 'never awaited' warning)."""
        async with trio_workq.open_work_queue() as queue:
            coro = double(1)
            with pytest.raises(TypeError, match=r"not a coroutine object"):
                await queue.submit(coro)  # type: ignore[arg-type]
            assert inspect.getcoroutinestate(coro) == "CORO_CLOSED"
            assert queue.statistics_nowait().submitted == 0

    async def test_async_generator_function(self) -> None:
        """An async generator function is not a task."""

        async def agen() -> Any:
            yield 1

        async with trio_workq.open_work_queue() as queue:
            with pytest.raises(TypeError, match="async generator function"):
                queue.submit_nowait(agen)

    async def test_sync_call_method(self) -> None:
        """An object whose __call__ is synchronous is refused."""

        class SyncCall:
            def __call__(self) -> None:
                pass

        async with trio_workq.open_work_queue() as queue:
            with pytest.raises(TypeError, match="synchronous __call__"):
                queue.submit_nowait(SyncCall())  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("kwargs", "error", "message"),
        [
            ({"timeout": 0}, ValueError, "timeout must be > 0"),
            ({"timeout": -1}, ValueError, "timeout must be > 0"),
            ({"timeout": math.nan}, ValueError, "timeout must be > 0"),
            ({"timeout": "5"}, TypeError, "timeout must be a number"),
            ({"timeout": True}, TypeError, "timeout must be a number"),
            ({"priority": 1.5}, TypeError, "priority must be an int"),
            ({"priority": True}, TypeError, "priority must be an int"),
            ({"priority": 0.0}, TypeError, "priority must be an int"),
            ({"priority": False}, TypeError, "priority must be an int"),
            ({"name": 3}, TypeError, "name must be a str"),
            ({"retry": 3}, TypeError, "retry must be a RetryPolicy"),
        ],
    )
    async def test_bad_options(
        self, kwargs: dict[str, Any], error: type[Exception], message: str
    ) -> None:
        """Bad options raise a clear error at submit and nothing is queued."""
        async with trio_workq.open_work_queue() as queue:
            with pytest.raises(error, match=message):
                await queue.submit(noop, **kwargs)
            with pytest.raises(error, match=message):
                queue.submit_nowait(noop, **kwargs)
            assert queue.statistics_nowait().submitted == 0

    async def test_infinite_timeout_means_none(self) -> None:
        """timeout=math.inf is accepted and means no timeout."""
        async with trio_workq.open_work_queue() as queue:
            handle = await queue.submit(noop, timeout=math.inf)
            assert handle.info_nowait().timeout is None
            await handle.result()

    @pytest.mark.parametrize(
        ("kwargs", "error", "message"),
        [
            ({"workers": 0}, ValueError, "workers must be >= 1"),
            ({"workers": -3}, ValueError, "workers must be >= 1"),
            ({"workers": 2.0}, TypeError, "workers must be an int"),
            ({"workers": math.inf}, TypeError, "workers must be an int"),
            ({"max_buffer_size": -1}, ValueError, "max_buffer_size must be >= 0"),
            ({"max_buffer_size": 1.5}, TypeError, "max_buffer_size must be an int or math.inf"),
            ({"max_scheduled": 0}, ValueError, "max_scheduled must be >= 1"),
            ({"max_retained": -1}, ValueError, "max_retained must be >= 0"),
            ({"retention": -1}, ValueError, "retention must be >= 0"),
            ({"shutdown_timeout": -1}, ValueError, "shutdown_timeout must be >= 0"),
            ({"retry": "always"}, TypeError, "retry must be a RetryPolicy"),
        ],
    )
    async def test_bad_queue_arguments(
        self, kwargs: dict[str, Any], error: type[Exception], message: str
    ) -> None:
        """open_work_queue rejects bad arguments before starting anything."""
        with pytest.raises(error, match=message):
            async with trio_workq.open_work_queue(**kwargs):
                pytest.fail("the queue must not open")  # pragma: no cover

    async def test_submit_after_shutdown(self) -> None:
        """Submitting after shutdown began raises QueueClosed."""
        async with trio_workq.open_work_queue() as queue:
            await queue.shutdown()
            with pytest.raises(trio_workq.QueueClosed):
                await queue.submit(noop)
            with pytest.raises(trio_workq.QueueClosed):
                queue.submit_nowait(noop)
            assert queue.statistics_nowait().closed


class TestConcurrency:
    @pytest.mark.parametrize("workers", [1, 3, 10])
    async def test_limit_never_exceeded(
        self, workers: int, autojump_clock: trio.testing.MockClock
    ) -> None:
        """At most `workers` tasks run at once, and the pool is fully used."""
        running = 0
        peak = 0

        async def job(duration: float) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await trio.sleep(duration)
            running -= 1

        async with trio_workq.open_work_queue(workers=workers, max_buffer_size=math.inf) as queue:
            for i in range(50):
                await queue.submit(job, (i % 7) * 0.1 + 0.05)
                if i % 5 == 0:
                    assert queue.statistics_nowait().running <= workers
        assert peak == workers

    async def test_busy_workers_in_statistics(self, autojump_clock: trio.testing.MockClock) -> None:
        """statistics() counts busy workers, queued and finished tasks."""
        release = trio.Event()

        async def wait_for_release() -> None:
            await release.wait()

        async with trio_workq.open_work_queue(workers=2, max_buffer_size=10) as queue:
            for _ in range(5):
                await queue.submit(wait_for_release)
            await trio.testing.wait_all_tasks_blocked()
            stats = queue.statistics_nowait()
            assert (stats.workers, stats.busy_workers, stats.running, stats.queued) == (2, 2, 2, 3)
            assert (stats.submitted, stats.buffer_capacity) == (5, 10)
            release.set()
        stats = queue.statistics_nowait()
        assert (stats.completed, stats.queued, stats.running, stats.closed) == (5, 0, 0, True)

    async def test_task_can_submit_to_its_own_queue(self) -> None:
        """A running task may submit follow-up tasks (and wait for them, given a free worker)."""
        async with trio_workq.open_work_queue(workers=2) as queue:

            async def parent() -> int:
                child = await queue.submit(double, 5)
                return await child.result()

            assert await (await queue.submit(parent, name="parent")).result() == 10


class TestPriority:
    async def test_higher_priority_first_fifo_within(self) -> None:
        """Higher priority runs first; equal priorities run in submit order."""
        order: list[str] = []
        gate = trio.Event()

        async def blocker() -> None:
            await gate.wait()

        async def record(label: str) -> None:
            order.append(label)
            await trio.lowlevel.checkpoint()

        async with trio_workq.open_work_queue(workers=1, max_buffer_size=100) as queue:
            await queue.submit(blocker)
            await trio.testing.wait_all_tasks_blocked()
            plan = [("a", 0), ("b", 5), ("c", 0), ("d", -1), ("e", 5), ("f", 10), ("g", 0)]
            for label, priority in plan:
                await queue.submit(record, label, priority=priority)
            gate.set()
        assert order == ["f", "b", "e", "a", "c", "g", "d"]

    async def test_many_priority_levels(self) -> None:
        """Order holds across many levels, including after emptied levels are dropped."""
        order: list[int] = []
        gate = trio.Event()

        async def blocker() -> None:
            await gate.wait()

        async def record(priority: int) -> None:
            order.append(priority)
            await trio.lowlevel.checkpoint()

        async with trio_workq.open_work_queue(workers=1, max_buffer_size=math.inf) as queue:
            for round_ in range(3):
                gate = trio.Event()
                await queue.submit(blocker)
                await trio.testing.wait_all_tasks_blocked()
                priorities = [(p * 7919 + round_ * 40) % 101 - 50 for p in range(40)]
                for priority in priorities:
                    queue.submit_nowait(record, priority, priority=priority)
                gate.set()
                await trio.testing.wait_all_tasks_blocked()
                assert order == sorted(priorities, reverse=True)
                order.clear()
            assert len(queue._ready._order) <= queue._ready.MAX_LEVELS + 40

    async def test_priority_in_info(self) -> None:
        """TaskInfo reports the task's priority."""
        async with trio_workq.open_work_queue() as queue:
            handle = await queue.submit(noop, priority=-7)
            assert handle.info_nowait().priority == -7


class TestBackpressure:
    async def test_submit_waits_when_full(self) -> None:
        """With every worker busy and the buffer full, submit() blocks until a task is taken."""
        gate = trio.Event()

        async def blocker() -> None:
            await gate.wait()

        async with trio_workq.open_work_queue(workers=1, max_buffer_size=2) as queue:
            for _ in range(3):  # one running, two buffered
                await queue.submit(blocker)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.WouldBlock):
                queue.submit_nowait(blocker)
            submitted = trio.Event()

            async def producer() -> None:
                await queue.submit(noop)
                submitted.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(producer)
                await trio.testing.wait_all_tasks_blocked()
                assert not submitted.is_set()
                assert queue.statistics_nowait().producers_waiting == 1
                gate.set()
            assert submitted.is_set()
            assert queue.statistics_nowait().producers_waiting == 0

    async def test_waiting_producers_are_fifo(self) -> None:
        """Producers blocked on a full buffer are admitted in arrival order."""
        gate = trio.Event()
        order: list[int] = []

        async def blocker() -> None:
            await gate.wait()

        async def record(i: int) -> None:
            order.append(i)
            await trio.lowlevel.checkpoint()

        async with trio_workq.open_work_queue(workers=1, max_buffer_size=1) as queue:
            await queue.submit(blocker)
            await queue.submit(blocker)
            async with trio.open_nursery() as nursery:
                for i in range(5):
                    nursery.start_soon(queue.submit, record, i)
                    await trio.testing.wait_all_tasks_blocked()
                gate.set()
        assert order == [0, 1, 2, 3, 4]

    async def test_cancelled_producer_leaves_nothing(self) -> None:
        """A submit() cancelled while waiting for room queues nothing."""
        gate = trio.Event()

        async def blocker() -> None:
            await gate.wait()

        async with trio_workq.open_work_queue(workers=1, max_buffer_size=0) as queue:
            await queue.submit(blocker)
            with trio.move_on_after(1) as scope:
                await queue.submit(noop)
            assert scope.cancelled_caught
            stats = queue.statistics_nowait()
            assert (stats.submitted, stats.producers_waiting) == (1, 0)
            gate.set()

    async def test_unbuffered_submit_waits_for_a_worker(self) -> None:
        """max_buffer_size=0: submit returns only once a worker has taken the task."""
        gate = trio.Event()

        async def blocker() -> None:
            await gate.wait()

        async with trio_workq.open_work_queue(workers=2, max_buffer_size=0) as queue:
            first = await queue.submit(blocker)
            second = await queue.submit(blocker)
            await trio.testing.wait_all_tasks_blocked()
            assert first.status is second.status is TaskStatus.RUNNING
            with pytest.raises(trio.WouldBlock):
                queue.submit_nowait(noop)
            taken_status: list[TaskStatus] = []

            async def producer() -> None:
                handle = await queue.submit(noop)
                taken_status.append(handle.status)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(producer)
                await trio.testing.wait_all_tasks_blocked()
                assert taken_status == []
                assert queue.statistics_nowait().queued == 0
                gate.set()
            assert len(taken_status) == 1
            assert taken_status[0] is not TaskStatus.QUEUED

    async def test_unbounded_buffer(self) -> None:
        """max_buffer_size=math.inf never blocks."""
        async with trio_workq.open_work_queue(workers=1, max_buffer_size=math.inf) as queue:
            handles = [queue.submit_nowait(double, i) for i in range(5000)]
            assert queue.statistics_nowait().queued >= 4999
        assert all(h.done for h in handles)

    async def test_cancelling_queued_task_frees_room(self) -> None:
        """Cancelling a buffered task makes room for a waiting producer."""
        gate = trio.Event()

        async def blocker() -> None:
            await gate.wait()

        async with trio_workq.open_work_queue(workers=1, max_buffer_size=1) as queue:
            await queue.submit(blocker)
            buffered = await queue.submit(blocker)
            got: list[trio_workq.MemoryTaskHandle[None]] = []

            async def producer() -> None:
                got.append(await queue.submit(noop))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(producer)
                await trio.testing.wait_all_tasks_blocked()
                assert got == []
                assert buffered.cancel_nowait()
                await trio.testing.wait_all_tasks_blocked()
                assert len(got) == 1
                assert got[0].status is TaskStatus.QUEUED
                gate.set()


class TestRetention:
    async def test_max_retained(self) -> None:
        """Only the newest max_retained finished records are kept; handles keep results."""
        async with trio_workq.open_work_queue(workers=1, max_retained=3) as queue:
            handles = [await queue.submit(double, i) for i in range(6)]
            for h in handles:
                await h.wait()
            assert queue.statistics_nowait().retained == 3
            for old in handles[:3]:
                with pytest.raises(trio_workq.TaskNotFound):
                    queue.get_info_nowait(old.id)
                assert await old.result() == 2 * handles.index(old)
            assert [queue.get_info_nowait(h.id).status for h in handles[3:]] == [
                TaskStatus.COMPLETED
            ] * 3

    async def test_retention_time(self, autojump_clock: trio.testing.MockClock) -> None:
        """Finished records are forgotten after `retention` seconds."""
        async with trio_workq.open_work_queue(retention=60) as queue:
            handle = await queue.submit(double, 1)
            await handle.wait()
            await trio.sleep(59)
            assert queue.get_info_nowait(handle.id).status is TaskStatus.COMPLETED
            await trio.sleep(2)
            with pytest.raises(trio_workq.TaskNotFound):
                queue.get_info_nowait(handle.id)
            assert await handle.result() == 2

    async def test_old_records_leave_memory_without_lookups(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """With no count limit, records past `retention` are dropped within 1,024 finishes,
        even if nothing looks them up."""
        async with trio_workq.open_work_queue(
            max_retained=math.inf, retention=60, max_buffer_size=math.inf
        ) as queue:
            for _ in range(10):
                await queue.submit(double, 1)
            await trio.testing.wait_all_tasks_blocked()
            await trio.sleep(61)
            for _ in range(1024):
                queue.submit_nowait(double, 1)
            await trio.testing.wait_all_tasks_blocked()
            assert len(queue._retained) == 1024

    async def test_retain_nothing(self) -> None:
        """max_retained=0 forgets records as soon as tasks finish."""
        async with trio_workq.open_work_queue(max_retained=0) as queue:
            handle = queue.submit_nowait(double, 1)
            assert queue.get_info_nowait(handle.id).status is TaskStatus.QUEUED
            assert await handle.result() == 2
            with pytest.raises(trio_workq.TaskNotFound):
                queue.get_info_nowait(handle.id)


class TestOpenWorkQueue:
    async def test_workers_ready_on_entry(self) -> None:
        """Right after opening, every worker is idle: an unbuffered submit_nowait succeeds."""
        async with trio_workq.open_work_queue(workers=3, max_buffer_size=0) as queue:
            handles = [queue.submit_nowait(noop) for _ in range(3)]
            with pytest.raises(trio.WouldBlock):
                queue.submit_nowait(noop)
        assert all(h.status is TaskStatus.COMPLETED for h in handles)

    async def test_in_callers_nursery(self, nursery: trio.Nursery) -> None:
        """Given a nursery, the queue's workers live in it."""
        async with trio_workq.open_work_queue(nursery, workers=2) as queue:
            assert await (await queue.submit(double, 2)).result() == 4
        assert queue.statistics_nowait().closed

    async def test_public_api(self) -> None:
        """__all__ lists the public names, each re-exported from the package."""
        for name in trio_workq.__all__:
            obj = getattr(trio_workq, name)
            assert obj is not None
        assert trio_workq.WorkQueue.__module__ == "trio_workq"
        assert isinstance(trio_workq.__version__, str)
        with pytest.raises(AttributeError):
            trio_workq.does_not_exist  # noqa: B018

    def test_status_enum(self) -> None:
        """TaskStatus is a str enum with terminal states marked."""
        assert TaskStatus("queued") is TaskStatus.QUEUED
        assert str(TaskStatus.RUNNING) == "running"
        assert {s for s in TaskStatus if s.is_terminal} == {
            TaskStatus.COMPLETED,
            TaskStatus.FAILED,
            TaskStatus.CANCELLED,
        }


def _typed(fn: Callable[[int], Awaitable[int]]) -> Callable[[int], Awaitable[int]]:
    return fn


async def test_handle_is_generic_in_result() -> None:
    """TaskHandle[T] carries the result type (checked by mypy/pyright on this file)."""
    async with trio_workq.open_work_queue() as queue:
        handle: trio_workq.MemoryTaskHandle[int] = await queue.submit(_typed(double), 5)
        value: int = await handle.result()
        assert value == 10
