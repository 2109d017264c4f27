# SPDX-License-Identifier: MIT
"""The queue-behaviour suite: one set of tests, run on every backend.

Each test runs on the in-memory queue and on the durable queue over each
store (`_backends.BACKENDS`), so parity is tested rather than hoped for.
Where the backends differ today, the test says so in a comment marked
``DIFFERENCE`` and asserts each backend's documented behaviour in an
explicit branch (issue 16 is to remove most of them).

The in-memory backend runs under an autojumping mock clock; the durable
ones in real time (their stores work in threads, which race a virtual
clock), with short delays and `trio.fail_after` bounds. Every test takes
the `clock` fixture: pytest-trio uses a clock only when it is an argument
of the test itself.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar, cast

import _suite_tasks as tasks
import outcome
import pytest
import trio
from _backends import (
    CANCELLED,
    COMPLETED,
    FAILED,
    RETRYING,
    SCHEDULED,
    STARTED,
    SUBMITTED,
    UNIX_TIME_STEP,
    Backend,
    counts,
    wait_for_status,
    wait_until,
)
from _backends import backend as backend  # the fixtures
from _backends import backend_kind as backend_kind
from _backends import clock as clock

from trio_workq import (
    QueueClosed,
    QueueStatistics,
    Retry,
    Store,
    StoredError,
    TaskCancelled,
    TaskEvent,
    TaskHandle,
    TaskNotFound,
    TaskQueue,
    TaskStateError,
    TaskStatus,
    TaskTimeout,
    WorkQueue,
)

Clock = trio.abc.Clock | None
T = TypeVar("T")


@pytest.fixture(autouse=True)
def _fresh_tasks() -> Iterator[None]:
    tasks.runs.clear()
    tasks.gates.clear()
    tasks.record_times.clear()
    yield
    tasks.runs.clear()
    tasks.gates.clear()
    tasks.record_times.clear()


def assert_error(
    backend: Backend, error: BaseException | None, kind: type[BaseException], message: str
) -> None:
    """*error* is the task error ``kind(message)``, as this backend reports it.

    DIFFERENCE: the in-memory queue keeps the exception object; a durable
    queue stores text and gives back a `StoredError` whose summary is
    ``module.Type: message`` (builtins without the module).
    """
    if backend.durable:
        assert isinstance(error, StoredError)
        qualified = (
            kind.__qualname__
            if kind.__module__ == "builtins"
            else f"{kind.__module__}.{kind.__qualname__}"
        )
        expected = f"{qualified}: {message}" if message else qualified
        assert error.summary == expected
    else:
        assert isinstance(error, kind)
        assert str(error) == message


def same(value: T) -> T:
    return value


def first(pair: tuple[T, Any]) -> T:
    return pair[0]


def gate(key: str) -> trio.Event:
    """A fresh gate for `tasks.gate` with *key*."""
    event = tasks.gates[key] = trio.Event()
    return event


# ------------------------------------------------------------- submit and result


async def test_submit_and_result(backend: Backend, clock: Clock) -> None:
    """Values come back from `result`; an exception fails the task and `result` raises it."""
    async with backend.open() as q:
        value = await q.submit(tasks.echo, {"a": [1, 2], "b": "x"})
        none = await q.submit(tasks.nothing)
        failing = await q.submit(tasks.fail, "boom")

        assert await value.result() == {"a": [1, 2], "b": "x"}
        assert await none.wait() == outcome.Value(None)
        with pytest.raises(StoredError if backend.durable else ValueError) as raised:
            await failing.result()
        assert_error(backend, raised.value, ValueError, "boom")

        info = await value.info()
        assert (info.status, info.attempts, info.last_error, info.errors) == (
            TaskStatus.COMPLETED,
            1,
            None,
            (),
        )
        info = await failing.info()
        assert (info.status, info.attempts, len(info.errors)) == (TaskStatus.FAILED, 1, 1)
        assert_error(backend, info.last_error, ValueError, "boom")
        assert_error(backend, info.errors[0], ValueError, "boom")


async def test_wait_outcome(backend: Backend, clock: Clock) -> None:
    """`wait` returns the final attempt's outcome: a value, the error, or `TaskCancelled`."""
    async with backend.open() as q:
        completed = await q.submit(tasks.echo, 7)
        failed = await q.submit(tasks.fail, "no")
        cancelled = await q.schedule(tasks.record, "later", delay=60)
        assert await cancelled.cancel() is True

        assert await completed.wait() == outcome.Value(7)
        result = await failed.wait()
        assert isinstance(result, outcome.Error)
        assert_error(backend, result.error, ValueError, "no")
        result = await cancelled.wait()
        assert isinstance(result, outcome.Error)
        assert isinstance(result.error, TaskCancelled)
        assert tasks.runs == []


async def test_priorities_with_one_worker(backend: Backend, clock: Clock) -> None:
    """With one worker, higher priorities run first, FIFO within a priority."""
    opened = gate("gate")
    async with backend.open(workers=1) as q:
        first = await q.submit(tasks.gate, "gate")
        await wait_until(lambda: tasks.starts("gate") == 1)
        order = [(0, "a"), (5, "b"), (1, "c"), (5, "d"), (0, "e"), (1, "f")]
        handles = [await q.submit(tasks.record, key, priority=priority) for priority, key in order]
        opened.set()
        await first.result()
        for handle in handles:
            await handle.result()
    assert [key for event, key in tasks.runs if event == "run"] == ["b", "d", "c", "f", "a", "e"]


# ------------------------------------------------------------- timeouts and retries


async def test_timeout_is_recorded_and_retried(backend: Backend, clock: Clock) -> None:
    """An attempt over its timeout is cancelled, recorded as `TaskTimeout`, and retried."""
    async with backend.open() as q:
        recovers = await q.submit(tasks.slow_first, "recovers", 30, timeout=0.1)
        never = await q.submit(tasks.slow, "never", 30, timeout=0.1)
        with trio.fail_after(5):
            assert await recovers.result() == 2
            with pytest.raises(StoredError if backend.durable else TaskTimeout):
                await never.result()

        info = await recovers.info()
        assert (info.status, info.attempts, info.timeout, len(info.errors)) == (
            TaskStatus.COMPLETED,
            2,
            0.1,
            1,
        )
        info = await never.info()
        assert (info.status, info.attempts, len(info.errors)) == (TaskStatus.FAILED, 2, 2)
        for error in [*info.errors, info.last_error]:
            if backend.durable:
                assert isinstance(error, StoredError)
                assert error.summary.startswith("trio_workq.TaskTimeout")
            else:
                assert isinstance(error, TaskTimeout)


async def test_retry_with_fixed_backoff(backend: Backend, clock: Clock) -> None:
    """A failing task is retried up to ``max_attempts``, waiting out the backoff as ``retrying``."""
    async with backend.open() as q:
        start = trio.current_time()
        recovers = await q.submit(tasks.flaky, "recovers", 2)
        gives_up = await q.submit(tasks.flaky, "gives up", 5)
        info = await wait_for_status(q, recovers.id, TaskStatus.RETRYING)
        assert info.attempts == 1
        assert info.due_at is not None
        with trio.fail_after(5):
            assert await recovers.result() == 3
            with pytest.raises(StoredError if backend.durable else OSError):
                await gives_up.result()
        # Two backoffs of BACKOFF seconds each were waited out.
        assert trio.current_time() - start >= 2 * tasks.BACKOFF - UNIX_TIME_STEP

        info = await gives_up.info()
        assert (info.status, info.attempts, info.max_attempts) == (TaskStatus.FAILED, 3, 3)
        assert len(info.errors) == 3
        for attempt, error in enumerate(info.errors, 1):
            assert_error(backend, error, OSError, f"attempt {attempt} failed")
    assert tasks.starts("recovers") == tasks.starts("gives up") == 3


async def test_retry_on_filter(backend: Backend, clock: Clock) -> None:
    """Only exceptions in ``retry_on`` are retried; others fail the task at once."""
    async with backend.open() as q:
        retried = await q.submit(tasks.fails_with, "os", "OSError")
        not_retried = await q.submit(tasks.fails_with, "key", "KeyError")
        for handle in (retried, not_retried):
            with trio.fail_after(5):
                await handle.wait()
        assert (await retried.info()).attempts == 3
        info = await not_retried.info()
        assert (info.status, info.attempts) == (TaskStatus.FAILED, 1)
        assert_error(backend, info.last_error, KeyError, "'key'")
    assert (tasks.starts("os"), tasks.starts("key")) == (3, 1)


async def test_retry_raised_by_the_task(backend: Backend, clock: Clock) -> None:
    """`Retry` overrides ``retry_on`` and the backoff; without a policy it fails the task."""
    async with backend.open() as q:
        start = trio.current_time()
        again = await q.submit(tasks.asks_again, "again")
        no_policy = await q.submit(tasks.asks_again_without_policy, "no policy")
        with trio.fail_after(5):
            assert await again.result() == 2
            await no_policy.wait()
        assert trio.current_time() - start < 30  # the policy's 60 s backoff did not apply
        info = await no_policy.info()
        assert (info.status, info.attempts, info.max_attempts) == (TaskStatus.FAILED, 1, 1)
        assert_error(backend, info.last_error, Retry, "None")


# ------------------------------------------------------------- cancel


async def test_cancel_queued(backend: Backend, clock: Clock) -> None:
    """A queued task cancelled ends ``cancelled`` and never runs."""
    opened = gate("gate")
    async with backend.open(workers=1) as q:
        busy = await q.submit(tasks.gate, "gate")
        await wait_until(lambda: tasks.starts("gate") == 1)
        queued = await q.submit(tasks.record, "queued")
        by_handle = await q.submit(tasks.record, "by handle")
        assert (await queued.info()).status is TaskStatus.QUEUED
        assert await q.cancel(queued.id) is True
        assert await by_handle.cancel() is True
        for handle in (queued, by_handle):
            with pytest.raises(TaskCancelled):
                await handle.result()
            info = await handle.info()
            assert (info.status, info.attempts) == (TaskStatus.CANCELLED, 0)
            assert info.finished_at is not None
        opened.set()
        await busy.result()
    assert ("run", "queued") not in tasks.runs
    assert ("run", "by handle") not in tasks.runs


async def test_cancel_running(backend: Backend, clock: Clock) -> None:
    """A running task cancelled is interrupted and ends ``cancelled``."""
    async with backend.open() as q:
        running = await q.submit(tasks.block, "running")
        await wait_until(lambda: tasks.starts("running") == 1)
        assert await q.cancel(running.id) is True
        with trio.fail_after(5), pytest.raises(TaskCancelled):
            await running.result()
        info = await running.info()
        assert (info.status, info.attempts) == (TaskStatus.CANCELLED, 1)
    assert ("stopped", "running") in tasks.runs


async def test_cancel_scheduled(backend: Backend, clock: Clock) -> None:
    """A scheduled task cancelled ends ``cancelled`` and never runs."""
    async with backend.open() as q:
        scheduled = await q.schedule(tasks.record, "scheduled", delay=0.1)
        assert await q.cancel(scheduled.id) is True
        assert (await scheduled.info()).status is TaskStatus.CANCELLED
        await trio.sleep(0.3)  # past its due time
        assert (await scheduled.info()).status is TaskStatus.CANCELLED
    assert tasks.runs == []


async def test_cancel_retrying(backend: Backend, clock: Clock) -> None:
    """A task waiting out its backoff, cancelled, ends ``cancelled`` with its attempts kept."""
    async with backend.open() as q:
        retrying = await q.submit(tasks.retries_later, "retrying")
        await wait_for_status(q, retrying.id, TaskStatus.RETRYING)
        assert await q.cancel(retrying.id) is True
        info = await retrying.info()
        assert (info.status, info.attempts, len(info.errors)) == (TaskStatus.CANCELLED, 1, 1)
        with pytest.raises(TaskCancelled):
            await retrying.result()


async def test_cancel_finished(backend: Backend, clock: Clock) -> None:
    """Cancelling a finished task returns ``False`` and changes nothing."""
    async with backend.open() as q:
        completed = await q.submit(tasks.echo, 1)
        failed = await q.submit(tasks.fail, "x")
        await completed.wait()
        await failed.wait()
        cancelled = await q.schedule(tasks.record, "c", delay=60)
        assert await cancelled.cancel() is True
        for handle, status in [
            (completed, TaskStatus.COMPLETED),
            (failed, TaskStatus.FAILED),
            (cancelled, TaskStatus.CANCELLED),
        ]:
            assert await q.cancel(handle.id) is False
            assert await handle.cancel() is False
            assert (await handle.info()).status is status
        assert await completed.result() == 1


# ------------------------------------------------------------- retry()


async def test_retry_failed_and_cancelled(backend: Backend, clock: Clock) -> None:
    """`retry` runs a failed or cancelled task again as one more attempt, keeping its id."""
    async with backend.open() as q:
        failed = await q.submit(tasks.fails_with, "failed", "KeyError")
        await failed.wait()
        cancelled = await q.schedule(tasks.record, "cancelled", delay=60)
        await cancelled.cancel()

        again = await q.retry(failed.id)
        assert again.id == failed.id
        with trio.fail_after(5):
            await again.wait()
        info = await failed.info()
        assert (info.status, info.attempts) == (TaskStatus.FAILED, 2)
        assert len(info.errors) == 2
        for error in info.errors:
            assert_error(backend, error, KeyError, "'failed'")

        again = await q.retry(cancelled.id)
        assert again.id == cancelled.id
        with trio.fail_after(5):
            assert await again.result() == "cancelled"
        info = await cancelled.info()
        assert (info.status, info.attempts) == (TaskStatus.COMPLETED, 1)
    assert (tasks.starts("failed"), tasks.runs.count(("run", "cancelled"))) == (2, 1)


async def test_retry_after_the_attempts_ran_out(backend: Backend, clock: Clock) -> None:
    """`retry` of a task that used all its policy's attempts gives it exactly one more run."""
    async with backend.open() as q:
        handle = await q.submit(tasks.fails_with, "out", "OSError")
        with trio.fail_after(5):
            await handle.wait()
        assert (await handle.info()).attempts == 3
        await q.retry(handle.id)
        with trio.fail_after(5):
            await handle.wait()
        info = await handle.info()
        assert (info.status, info.attempts, len(info.errors)) == (TaskStatus.FAILED, 4, 4)
    assert tasks.starts("out") == 4
    if backend.durable:
        # DIFFERENCE: the store raises max_attempts to allow the extra run.
        assert info.max_attempts == 4
    else:
        # The in-memory queue keeps its policy's figure: 4 attempts "of 3".
        assert info.max_attempts == 3


async def test_retry_refuses_unfinished_and_completed(backend: Backend, clock: Clock) -> None:
    """`retry` of a task that is not ``failed`` or ``cancelled`` raises `TaskStateError`."""
    opened = gate("gate")
    async with backend.open() as q:
        completed = await q.submit(tasks.echo, 1)
        await completed.wait()
        running = await q.submit(tasks.gate, "gate")
        await wait_until(lambda: tasks.starts("gate") == 1)
        scheduled = await q.schedule(tasks.record, "s", delay=60)
        for handle in (completed, running, scheduled):
            with pytest.raises(TaskStateError):
                await q.retry(handle.id)
        opened.set()
        await running.result()
        await scheduled.cancel()


# ------------------------------------------------------------- schedule


async def test_schedule_delay_and_at(backend: Backend, clock: Clock) -> None:
    """Scheduled tasks are ``scheduled`` until due, never run before; a past ``at`` is now."""
    async with backend.open() as q:
        later = datetime.now(timezone.utc) + timedelta(seconds=0.4)
        start = trio.current_time()
        delayed = await q.schedule(tasks.record, "delay", delay=0.3)
        at = await q.schedule(tasks.record, "at", at=later)
        past = await q.schedule(
            tasks.record, "past", at=datetime.now(timezone.utc) - timedelta(hours=1)
        )
        for handle in (delayed, at):
            info = await handle.info()
            assert info.status is TaskStatus.SCHEDULED
            assert info.due_at is not None
        with trio.fail_after(5):
            assert await past.result() == "past"
            assert await delayed.result() == "delay"
            assert await at.result() == "at"
        # Measured on the test's clock, from before the schedule() calls: the
        # tasks record when they start. (`at` was read from the wall clock
        # just before `start`: a little slack.)
        assert tasks.record_times["past"] - start < 0.3
        assert tasks.record_times["delay"] - start >= 0.3 - UNIX_TIME_STEP
        assert tasks.record_times["at"] - start >= 0.4 - 0.05
        info = await delayed.info()
        assert info.started_at is not None
        assert info.queued_at is not None
        assert info.due_at is None  # only while scheduled or retrying
        assert info.created_at <= info.queued_at <= info.started_at
        if backend.durable:
            # DIFFERENCE: a durable task's created_at is when the store inserted
            # it, a little after the schedule() call that *delay* counts from.
            assert info.queued_at - info.created_at <= timedelta(seconds=0.3)
        else:
            assert abs(info.queued_at - info.created_at - timedelta(seconds=0.3)) <= timedelta(
                milliseconds=1
            )


# ------------------------------------------------------------- shutdown


async def test_graceful_shutdown(backend: Backend, clock: Clock) -> None:
    """`shutdown()` lets the running task finish; afterwards submits raise `QueueClosed`."""
    async with backend.open(workers=1) as q:
        retrying = await q.submit(tasks.retries_in_5s, "retrying")
        await wait_for_status(q, retrying.id, TaskStatus.RETRYING)
        running = await q.submit(tasks.sleep, "running", 0.2)
        await wait_until(lambda: tasks.starts("running") == 1)
        queued = await q.submit(tasks.record, "queued")
        scheduled = await q.schedule(tasks.record, "scheduled", delay=60)
        with trio.fail_after(5 if backend.durable else 10):
            await q.shutdown()
        assert (await running.info()).status is TaskStatus.COMPLETED
        left = [(await h.info()).status for h in (queued, scheduled, retrying)]
        with pytest.raises(QueueClosed):
            await q.submit(tasks.echo, 1)
    if backend.durable:
        # DIFFERENCE: a durable queue stops claiming and leaves queued,
        # scheduled and retrying tasks in the store for the next process.
        assert left == [TaskStatus.QUEUED, TaskStatus.SCHEDULED, TaskStatus.RETRYING]
        assert ("run", "queued") not in tasks.runs
        assert tasks.starts("retrying") == 1
    else:
        # The in-memory queue runs what is queued and gives retrying tasks
        # their remaining attempts (after the backoff); scheduled tasks not yet
        # due end cancelled (it has nowhere to keep them).
        assert left == [TaskStatus.COMPLETED, TaskStatus.CANCELLED, TaskStatus.FAILED]
        assert ("run", "queued") in tasks.runs
        assert tasks.starts("retrying") == 2


async def test_shutdown_timeout_interrupts_running(backend: Backend, clock: Clock) -> None:
    """`shutdown(timeout)` interrupts tasks still running at the deadline."""
    seen: list[Any] = []
    async with backend.open() as q:
        q.add_listener(lambda event: seen.append(event.kind))
        running = await q.submit(tasks.block, "running")
        await wait_until(lambda: tasks.starts("running") == 1)
        start = trio.current_time()
        with trio.fail_after(5):
            await q.shutdown(timeout=0.2)
        assert trio.current_time() - start >= 0.2
        info = await running.info()
    assert ("stopped", "running") in tasks.runs
    if backend.durable:
        # DIFFERENCE: a durable queue gives the interrupted task back to the
        # store (``queued``, the attempt not counted) for the next process,
        # and no event says so: listeners saw it start and never end.
        assert (info.status, info.attempts) == (TaskStatus.QUEUED, 0)
        assert seen == [SUBMITTED, STARTED]
    else:
        assert (info.status, info.attempts) == (TaskStatus.CANCELLED, 1)
        assert seen == [SUBMITTED, STARTED, CANCELLED]


async def test_shutdown_cancel_queued(backend: Backend, clock: Clock) -> None:
    """``shutdown(cancel_queued=True)``: queued tasks end ``cancelled``, running ones finish."""
    if backend.durable:
        # DIFFERENCE: DurableWorkQueue.shutdown has no cancel_queued (queued
        # tasks stay in the store for other processes).
        async with backend.open() as q:
            assert "cancel_queued" not in inspect.signature(q.shutdown).parameters
        return
    async with backend.open(workers=1) as q:
        assert isinstance(q, WorkQueue)
        running = await q.submit(tasks.sleep, "running", 0.2)
        await wait_until(lambda: tasks.starts("running") == 1)
        queued = await q.submit(tasks.record, "queued")
        await q.shutdown(cancel_queued=True)
        assert (await running.info()).status is TaskStatus.COMPLETED
        assert (await queued.info()).status is TaskStatus.CANCELLED
    assert ("run", "queued") not in tasks.runs


# ------------------------------------------------------------- events and info


async def test_events_of_a_task_that_fails_once(backend: Backend, clock: Clock) -> None:
    """Listeners see submitted, started, retrying, started, completed, with the attempt numbers."""
    seen: list[tuple[str, Any, int]] = []

    def listener(event: TaskEvent) -> None:
        seen.append((event.task_id, event.kind, event.attempt))

    async with backend.open() as q:
        q.add_listener(listener)
        handle = await q.submit(tasks.flaky, "f", 1)
        scheduled = await q.schedule(tasks.record, "s", delay=60)
        await scheduled.cancel()
        with trio.fail_after(5):
            assert await handle.result() == 2
    mine = [(kind, attempt) for task_id, kind, attempt in seen if task_id == handle.id]
    assert mine == [
        (SUBMITTED, 0),
        (STARTED, 1),
        (RETRYING, 1),
        (STARTED, 2),
        (COMPLETED, 2),
    ]
    assert [kind for task_id, kind, _ in seen if task_id == scheduled.id] == [SCHEDULED, CANCELLED]


class SlowToConfirm:
    """A store whose `add` returns a while after it committed (a slow network, a busy loop)."""

    def __init__(self, inner: Store, delay: float) -> None:
        self._inner = inner
        self._delay = delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def add(self, tasks: Any) -> Any:
        ids = await self._inner.add(tasks)
        await trio.sleep(self._delay)
        return ids


async def test_submitted_is_seen_before_started(backend: Backend, clock: Clock) -> None:
    """Listeners see a task's ``submitted`` before its ``started``, however slow the store.

    A durable queue emits ``submitted`` once the store's `add` has returned,
    while its fetcher may claim the task as soon as it is committed (the
    commit's NOTIFY wakes it): a claimed task starts only once the adds in
    flight have announced theirs. A store slow to confirm makes the race certain.
    """
    seen: list[Any] = []
    async with backend.open(wrap_store=lambda store: cast("Store", SlowToConfirm(store, 0.3))) as q:
        q.add_listener(lambda event: seen.append(event.kind))
        handle = await q.submit(tasks.echo, 1)
        with trio.fail_after(5):
            await handle.wait()
    assert seen == [SUBMITTED, STARTED, COMPLETED]


async def test_events_of_cancel_and_retry(backend: Backend, clock: Clock) -> None:
    """Cancelling a queued or running task, and `retry` of a failed one, are seen by listeners."""
    seen: list[tuple[str, Any]] = []

    def listener(event: TaskEvent) -> None:
        seen.append((event.task_id, event.kind))

    opened = gate("gate")
    async with backend.open(workers=1) as q:
        q.add_listener(listener)
        running = await q.submit(tasks.gate, "gate")
        await wait_until(lambda: tasks.starts("gate") == 1)
        queued = await q.submit(tasks.record, "queued")
        await queued.cancel()
        await running.cancel()
        with trio.fail_after(5):
            await running.wait()
        failed = await q.submit(tasks.fail, "once")
        with trio.fail_after(5):
            await failed.wait()
        again = await q.retry(failed.id)
        with trio.fail_after(5):
            await again.wait()
        assert not opened.is_set()

    def kinds(task_id: str) -> list[Any]:
        return [kind for seen_id, kind in seen if seen_id == task_id]

    assert kinds(queued.id) == [SUBMITTED, CANCELLED]
    assert kinds(running.id) == [SUBMITTED, STARTED, CANCELLED]
    assert kinds(failed.id) == [SUBMITTED, STARTED, FAILED, RETRYING, STARTED, FAILED]


async def test_unknown_ids(backend: Backend, clock: Clock) -> None:
    """Lookups and actions on an id the queue never had raise `TaskNotFound`."""
    async with backend.open() as q:
        known = await q.submit(tasks.echo, 1)
        await known.wait()
        unknown = str(int(known.id) + 1000)
        with pytest.raises(TaskNotFound):
            await q.get_info(unknown)
        with pytest.raises(TaskNotFound):
            await q.cancel(unknown)
        with pytest.raises(TaskNotFound):
            await q.retry(unknown)
        with pytest.raises(TaskNotFound):
            await q.get_handle(unknown)
        # A handle whose task is gone raises too.
        same = await q.get_handle(known.id)
        assert same.id == known.id
        assert await same.result() == 1


async def test_info_fields(backend: Backend, clock: Clock) -> None:
    """`get_info` gives status, attempts, the policy's max_attempts, errors, ordered times."""
    async with backend.open() as q:
        handle = await q.submit(tasks.flaky, "f", 1, priority=3, timeout=10)
        queued = await q.get_info(handle.id)
        assert (queued.id, queued.name, queued.priority, queued.timeout) == (
            handle.id,
            "suite.flaky",
            3,
            10,
        )
        assert (queued.max_attempts, queued.finished_at) == (3, None)
        with trio.fail_after(5):
            await handle.result()
        info = await q.get_info(handle.id)
    assert (info.status, info.attempts, info.max_attempts) == (TaskStatus.COMPLETED, 2, 3)
    assert len(info.errors) == 1
    assert info.queued_at is not None
    assert info.started_at is not None
    assert info.finished_at is not None
    assert info.created_at <= info.queued_at <= info.started_at <= info.finished_at
    assert info.created_at.tzinfo is not None
    # A completed task still shows the error of its last failed attempt.
    assert_error(backend, info.last_error, OSError, "attempt 1 failed")
    assert_error(backend, info.errors[0], OSError, "attempt 1 failed")


async def test_listing_and_counts_by_status(backend: Backend, clock: Clock) -> None:
    """`list_tasks` pages tasks newest first, by status; the counts per status agree."""
    opened = gate("gate")
    async with backend.open(workers=1) as q:
        completed = await q.submit(tasks.echo, 1)
        failed = await q.submit(tasks.fail, "x")
        await completed.wait()
        await failed.wait()
        running = await q.submit(tasks.gate, "gate")
        await wait_until(lambda: tasks.starts("gate") == 1)
        queued = [await q.submit(tasks.record, key) for key in "abc"]
        scheduled = await q.schedule(tasks.record, "s", delay=60)
        cancelled = await q.schedule(tasks.record, "c", delay=60)
        await cancelled.cancel()

        expected = {
            TaskStatus.COMPLETED: [completed.id],
            TaskStatus.FAILED: [failed.id],
            TaskStatus.RUNNING: [running.id],
            TaskStatus.QUEUED: [h.id for h in reversed(queued)],
            TaskStatus.SCHEDULED: [scheduled.id],
            TaskStatus.CANCELLED: [cancelled.id],
            TaskStatus.RETRYING: [],
        }
        for status, ids in expected.items():
            page = await q.list_tasks(status=status)
            assert [info.id for info in page.tasks] == ids, status
            assert all(info.status is status for info in page.tasks)
        assert await counts(q) == {status: len(ids) for status, ids in expected.items()}
        # One QueueStatistics; what a backend cannot know is None (documented per field).
        stats = await q.statistics()
        assert type(stats) is QueueStatistics
        assert (stats.workers, stats.busy_workers, stats.closed) == (1, 1, False)
        memory_only = (
            stats.submitted,
            stats.retained,
            stats.buffer_capacity,
            stats.producers_waiting,
            stats.schedulers_waiting,
        )
        durable_only = (stats.held, stats.owner)
        if backend.durable:
            assert memory_only == (None,) * 5
            assert stats.held == 1
            assert isinstance(stats.owner, str)
        else:
            assert memory_only == (8, 3, 1000, 0, 0)
            assert durable_only == (None, None)

        everything = [cancelled, scheduled, *reversed(queued), running, failed, completed]
        listed: list[str] = []
        cursor = None
        while True:
            page = await q.list_tasks(limit=3, cursor=cursor)
            listed += [info.id for info in page.tasks]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert listed == [h.id for h in everything]
        named = await q.list_tasks(name="suite.record")
        assert [info.id for info in named.tasks] == [
            cancelled.id,
            scheduled.id,
            *[h.id for h in reversed(queued)],
        ]

        opened.set()
        await scheduled.cancel()


# ------------------------------------------------------------- the one API


async def test_queues_and_handles_implement_the_protocols(backend: Backend, clock: Clock) -> None:
    """Every backend's queue is a `TaskQueue` and its handles `TaskHandle`s, at run time too."""
    async with backend.open() as q:
        assert isinstance(q, TaskQueue)
        handle = await q.submit(tasks.echo, 1)
        assert isinstance(handle, TaskHandle)
        assert isinstance(await q.get_handle(handle.id), TaskHandle)
        assert await handle.result() == 1
    assert not isinstance(object(), TaskQueue)
    assert not isinstance(object(), TaskHandle)


async def test_every_async_method_checkpoints(backend: Backend, clock: Clock) -> None:
    """Each async method of `TaskQueue` and `TaskHandle` is a checkpoint, on every backend."""
    async with backend.open(workers=1) as q:
        blocker = gate("blocker")
        with trio.testing.assert_checkpoints():
            running = await q.submit(tasks.gate, "blocker")
        await wait_until(lambda: tasks.starts("blocker") == 1)
        with trio.testing.assert_checkpoints():
            (queued,) = await q.submit_many(tasks.record, [("queued",)])
        with trio.testing.assert_checkpoints():
            assert await q.submit_many(tasks.record, []) == []
        with trio.testing.assert_checkpoints():
            later = await q.schedule(tasks.record, "later", delay=3600)
        with trio.testing.assert_checkpoints():
            await q.get_handle(queued.id)
        with trio.testing.assert_checkpoints():
            await q.get_info(queued.id)
        with trio.testing.assert_checkpoints():
            await q.list_tasks()
        with trio.testing.assert_checkpoints():
            await q.statistics()
        with trio.testing.assert_checkpoints():
            assert await later.info()
        with trio.testing.assert_checkpoints():
            assert await later.cancel() is True
        with trio.testing.assert_checkpoints():
            assert await q.cancel(queued.id) is True
        with trio.testing.assert_checkpoints():
            again = await q.retry(queued.id)
        blocker.set()
        with trio.testing.assert_checkpoints():
            assert await running.wait() == outcome.Value("blocker")
        with trio.testing.assert_checkpoints():
            assert await again.result() == "queued"


async def test_submit_many(backend: Backend, clock: Clock) -> None:
    """`submit_many` queues one task per call, in order; one bad call queues nothing."""
    async with backend.open(workers=2) as q:
        handles = await q.submit_many(tasks.echo, [(i,) for i in range(5)], priority=2)
        assert [await h.result() for h in handles] == list(range(5))
        assert {(await h.info()).priority for h in handles} == {2}
        before = await counts(q)
        with pytest.raises(TypeError):
            await q.submit_many(tasks.echo, [(1,), 5, (4,)])  # type: ignore[list-item]
        if backend.durable:  # DIFFERENCE: only a store must serialize the arguments
            with pytest.raises(TypeError):
                await q.submit_many(tasks.echo, [(1,), (object(),)])
        assert await counts(q) == before
        assert tasks.runs == []


async def test_bad_ids_and_arguments(backend: Backend, clock: Clock) -> None:
    """A non-string id is a TypeError and bad listing arguments are clear errors, everywhere."""
    async with backend.open() as q:
        for call in (q.get_handle, q.get_info, q.cancel, q.retry):
            with pytest.raises(TypeError, match="task_id must be a str"):
                await call(7)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="limit must be between"):
            await q.list_tasks(limit=0)
        with pytest.raises(ValueError, match="unknown status"):
            await q.list_tasks(status="lost")
        with pytest.raises(ValueError):
            await q.list_tasks(cursor="not a cursor")
        with pytest.raises(TypeError):
            await q.submit_many(tasks.echo, 5)  # type: ignore[arg-type]
        assert await counts(q) == dict.fromkeys(TaskStatus, 0)


async def test_listeners_are_synchronous(
    backend: Backend, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """An async listener is refused; one returning a coroutine (an async method called
    without await) is logged as such, and the coroutine is closed, never left pending."""

    async def async_listener(event: TaskEvent) -> None:
        await trio.lowlevel.checkpoint()

    class AsyncCallable:
        async def __call__(self, event: TaskEvent) -> None:
            await trio.lowlevel.checkpoint()

    async with backend.open() as q:
        for bad in (async_listener, AsyncCallable()):
            with pytest.raises(TypeError, match=r"use `async with queue\.subscribe\(\)"):
                q.add_listener(bad)  # type: ignore[arg-type]

        def cancels_without_await(event: TaskEvent) -> object:
            return q.cancel(event.task_id)

        q.add_listener(cancels_without_await)  # type: ignore[arg-type]
        handle = await q.submit(tasks.echo, 1)
        assert await handle.result() == 1  # the coroutine never ran
    assert "returned a coroutine, which does not run" in caplog.text
    assert "cancel_nowait" in caplog.text
