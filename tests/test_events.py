# SPDX-License-Identifier: MIT
"""Lifecycle events, the logger, and current_task()."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

import trio_workq
from trio_workq import EventKind, TaskEvent, TaskStatus


async def sleeper(seconds: float) -> str:
    await trio.sleep(seconds)
    return "slept"


async def fail_once_then(attempts: list[int]) -> str:
    attempts.append(1)
    await trio.lowlevel.checkpoint()
    if len(attempts) == 1:
        raise OSError("first attempt fails")
    return "ok"


def kinds_of(events: list[TaskEvent], task_id: str) -> list[EventKind]:
    return [e.kind for e in events if e.info.id == task_id]


class TestListeners:
    async def test_every_transition_emits(self, autojump_clock: trio.testing.MockClock) -> None:
        """Each status change emits one event with the info right after the change."""
        events: list[TaskEvent] = []
        policy = trio_workq.RetryPolicy(max_attempts=2, backoff=trio_workq.fixed(1))
        async with trio_workq.open_work_queue(workers=1) as queue:
            queue.add_listener(events.append)
            done = await queue.submit(sleeper, 1, name="done")
            attempts: list[int] = []
            retried = await queue.submit(fail_once_then, attempts, name="retried", retry=policy)
            bad = await queue.submit(sleeper, 5, name="bad", timeout=1)
            delayed = await queue.schedule(sleeper, 0, delay=10, name="delayed")
            dropped = await queue.schedule(sleeper, 0, delay=10, name="dropped")
            dropped.cancel_nowait()
            await delayed.wait()
        assert kinds_of(events, done.id) == ["submitted", "started", "completed"]
        assert kinds_of(events, retried.id) == [
            "submitted",
            "started",
            "retrying",
            "started",
            "completed",
        ]
        assert kinds_of(events, bad.id) == ["submitted", "started", "failed"]
        assert kinds_of(events, delayed.id) == ["scheduled", "started", "completed"]
        assert kinds_of(events, dropped.id) == ["scheduled", "cancelled"]
        started = [e for e in events if e.kind is EventKind.STARTED and e.info.id == retried.id]
        assert [e.info.attempts for e in started] == [1, 2]
        assert all(e.info.status is TaskStatus.RUNNING for e in started)
        retrying = next(e for e in events if e.kind is EventKind.RETRYING)
        assert retrying.info.due_at is not None
        assert isinstance(retrying.info.last_error, OSError)
        finished = next(e for e in events if e.kind is EventKind.COMPLETED)
        assert finished.info.finished_at == finished.timestamp
        assert str(EventKind.FAILED) == "failed"

    async def test_event_times(self, autojump_clock: trio.testing.MockClock) -> None:
        """Events carry trio time and the matching wall-clock timestamp; queued_at is set."""
        events: list[TaskEvent] = []
        async with trio_workq.open_work_queue(workers=1) as queue:
            queue.add_listener(events.append)
            start = trio.current_time()
            await queue.submit(sleeper, 2)
            await queue.submit(sleeper, 3)
        started = [e for e in events if e.kind is EventKind.STARTED]
        assert [e.time - start for e in started] == [0, 2]
        second = started[1].info
        assert second.queued_at is not None
        assert second.started_at is not None
        assert (second.started_at - second.queued_at).total_seconds() == pytest.approx(2)

    async def test_remove_listener(self) -> None:
        """A removed listener gets no more events; removing an unknown one is a ValueError."""
        events: list[TaskEvent] = []
        async with trio_workq.open_work_queue() as queue:
            queue.add_listener(events.append)
            await (await queue.submit(sleeper, 0)).wait()
            queue.remove_listener(events.append)
            seen = len(events)
            await (await queue.submit(sleeper, 0)).wait()
            assert len(events) == seen == 3
            with pytest.raises(ValueError, match="is not a listener"):
                queue.remove_listener(events.append)
            with pytest.raises(TypeError, match="listener must be callable"):
                queue.add_listener("nope")  # type: ignore[arg-type]

    async def test_raising_listener_is_logged_not_fatal(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A listener that raises is logged; the task and the queue carry on."""

        def broken(event: TaskEvent) -> None:
            raise RuntimeError("listener bug")

        events: list[TaskEvent] = []
        async with trio_workq.open_work_queue() as queue:
            queue.add_listener(broken)
            queue.add_listener(events.append)
            handle = await queue.submit(sleeper, 0)
            assert await handle.result() == "slept"
        assert [e.kind for e in events] == ["submitted", "started", "completed"]
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 3
        assert "listener" in errors[0].getMessage()
        assert errors[0].exc_info is not None


class TestStreams:
    async def test_subscribe_receives_events(self, autojump_clock: trio.testing.MockClock) -> None:
        """subscribe() yields every event in order; iteration ends when the queue stops."""
        received: list[EventKind] = []
        async with trio.open_nursery() as nursery:
            async with trio_workq.open_work_queue(nursery) as queue:
                async with queue.subscribe() as stream:

                    async def consume() -> None:
                        async for event in stream:
                            received.append(event.kind)

                    nursery.start_soon(consume)
                    await (await queue.submit(sleeper, 1)).wait()
                    await queue.shutdown()
                    await trio.testing.wait_all_tasks_blocked()
                    assert stream.dropped == 0
        assert received == ["submitted", "started", "completed"]

    async def test_slow_consumer_drops_never_blocks(self) -> None:
        """A full stream drops events (counted) and never slows the queue."""
        async with trio_workq.open_work_queue() as queue:
            async with queue.subscribe(max_buffer_size=2) as stream:
                handles = [queue.submit_nowait(sleeper, 0) for _ in range(5)]
                for handle in handles:
                    await handle.wait()
                assert stream.dropped == 15 - 2
                first = await stream.__anext__()
                assert first.kind is EventKind.SUBMITTED

    async def test_subscribe_after_stop_ends_at_once(self) -> None:
        """A stream opened on a stopped queue ends immediately; bad sizes are rejected."""
        async with trio_workq.open_work_queue() as queue:
            with pytest.raises(ValueError, match="max_buffer_size must be >= 1"):
                async with queue.subscribe(max_buffer_size=0):
                    pass  # pragma: no cover
        async with queue.subscribe() as stream:
            assert [e async for e in stream] == []


class TestLogging:
    async def test_failure_warning_retry_info_lifecycle_debug(
        self, caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Failures log at WARNING with traceback, retries at INFO, lifecycle at DEBUG."""
        caplog.set_level(logging.DEBUG, logger="trio_workq")  # before the queue opens
        policy = trio_workq.RetryPolicy(max_attempts=2, backoff=trio_workq.fixed(1))

        async def always_fails() -> None:
            await trio.lowlevel.checkpoint()
            raise OSError("disk on fire")

        async with trio_workq.open_work_queue() as queue:
            handle = await queue.submit(always_fails, name="burner", retry=policy)
            await handle.wait()
        records = [r for r in caplog.records if r.name == "trio_workq"]
        warnings = [r for r in records if r.levelno == logging.WARNING]
        infos = [r for r in records if r.levelno == logging.INFO]
        debugs = [r for r in records if r.levelno == logging.DEBUG]
        assert len(warnings) == 1
        assert "burner" in warnings[0].getMessage()
        assert "2 attempt" in warnings[0].getMessage()
        assert warnings[0].exc_info is not None
        assert warnings[0].exc_info[0] is OSError
        assert len(infos) == 1
        assert "retrying in 1 s" in infos[0].getMessage()
        assert [r.getMessage().split()[-1] for r in debugs] == [
            "submitted",
            "started",
            "retrying",
            "started",
            "failed",
        ]

    async def test_quiet_by_default_for_success(self, caplog: pytest.LogCaptureFixture) -> None:
        """A successful task logs nothing at INFO or above."""
        caplog.set_level(logging.INFO, logger="trio_workq")
        async with trio_workq.open_work_queue() as queue:
            await (await queue.submit(sleeper, 0)).wait()
        assert [r for r in caplog.records if r.name == "trio_workq"] == []


class TestCurrentTask:
    async def test_inside_a_task(self, autojump_clock: trio.testing.MockClock) -> None:
        """current_task() returns the running task's info, also in its child tasks."""
        seen: list[trio_workq.TaskInfo] = []

        async def introspect() -> None:
            seen.append(trio_workq.current_task())
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lambda: _record_child(seen))

        async with trio_workq.open_work_queue(workers=2) as queue:
            a = await queue.submit(introspect, name="a")
            b = await queue.submit(introspect, name="b")
        by_name = {info.name: info for info in seen}
        assert by_name["a"].id == a.id
        assert by_name["b"].id == b.id
        assert all(info.status is TaskStatus.RUNNING and info.attempts == 1 for info in seen)
        assert sorted(info.id for info in seen) == sorted([a.id, a.id, b.id, b.id])

    def test_outside_a_task(self) -> None:
        """Outside a queue's task, current_task() raises a clear RuntimeError."""
        with pytest.raises(RuntimeError, match=r"outside a task run by a WorkQueue"):
            trio_workq.current_task()


async def _record_child(seen: list[trio_workq.TaskInfo]) -> None:
    await trio.lowlevel.checkpoint()
    seen.append(trio_workq.current_task())


async def test_cheap_event_fields(autojump_clock: trio.testing.MockClock) -> None:
    """Events carry queue wait, run duration and error without building TaskInfo."""
    events: list[TaskEvent] = []
    policy = trio_workq.RetryPolicy(max_attempts=2, backoff=trio_workq.fixed(3))
    async with trio_workq.open_work_queue(workers=1) as queue:
        queue.add_listener(events.append)
        queue.submit_nowait(sleeper, 4, name="first")
        slow = queue.submit_nowait(sleeper, 10, name="slow", timeout=2, retry=policy)
        queued = queue.submit_nowait(sleeper, 1, name="never")
        await trio.sleep(5)
        queued.cancel_nowait()
        await slow.wait()
    table = [(e.name, str(e.kind), e.attempt, e.queue_wait, e.run_duration) for e in events]
    assert table == [
        ("first", "submitted", 0, None, None),
        ("slow", "submitted", 0, None, None),
        ("never", "submitted", 0, None, None),
        ("first", "started", 1, 0.0, None),
        ("first", "completed", 1, None, 4.0),
        ("slow", "started", 1, 4.0, None),
        ("never", "cancelled", 0, None, None),
        ("slow", "retrying", 1, None, 2.0),
        ("slow", "started", 2, 0.0, None),
        ("slow", "failed", 2, None, 2.0),
    ]
    errors = [e.error for e in events if e.kind in (EventKind.RETRYING, EventKind.FAILED)]
    assert all(isinstance(err, trio_workq.TaskTimeout) for err in errors)
    assert events[0].task_id == events[0].info.id
    assert "submitted" in repr(events[0])
