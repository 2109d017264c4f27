# SPDX-License-Identifier: MIT
# White-box: reads the tasks a queue holds and its stop event, mid-run.
# pyright: reportPrivateUsage=false
"""The durable queue in one process, on a real SQLite store and on a `MemoryStore`.

Every test opens its own database file under ``tmp_path`` (or its own
`MemoryStore`: the ``url`` fixture). Leases are short (1 s), so lease expiry
and renewal happen within a test's time.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import trio
import trio.testing
from _backends import wait_for_status

import trio_workq
from trio_workq import RetryPolicy, TaskStatus, fixed
from trio_workq._core.registry import definition_for, task
from trio_workq._durable.queue import (
    LEASE_EXPIRED_ERROR,
    DurableTaskHandle,
    DurableWorkQueue,
    StoredError,
    error_text,
    open_durable_queue,
)
from trio_workq._durable.serialize import JSONSerializer, PickleSerializer
from trio_workq._stores.memory import MemoryStore
from trio_workq._stores.protocol import NewTask, Store, StoreError
from trio_workq._stores.sqlite import SQLiteStore

# ---------------------------------------------------------------- the tasks

runs: list[tuple[str, Any]] = []  # what the tasks below did, in order


@task
async def add(a: int, b: int) -> int:
    await trio.lowlevel.checkpoint()
    return a + b


@task(name="durable.echo")
async def echo(*args: Any, **kwargs: Any) -> Any:
    await trio.lowlevel.checkpoint()
    return {"args": list(args), "kwargs": kwargs}


@task
async def boom(message: str) -> None:
    await trio.lowlevel.checkpoint()
    raise ValueError(message)


@task(retry=RetryPolicy(max_attempts=3, backoff=fixed(0)))
async def flaky(succeed_on: int) -> int:
    attempt = trio_workq.current_task().attempts
    await trio.lowlevel.checkpoint()
    if attempt < succeed_on:
        raise OSError(f"attempt {attempt} failed")
    return attempt


@task
async def flaky_default_policy(succeed_on: int) -> int:
    attempt = trio_workq.current_task().attempts
    await trio.lowlevel.checkpoint()
    if attempt < succeed_on:
        raise OSError(f"attempt {attempt} failed")
    return attempt


@task(retry=None)
async def never_retried() -> None:
    await trio.lowlevel.checkpoint()
    raise OSError("once only")


@task(retry=RetryPolicy(max_attempts=2, backoff=fixed(30), retry_on=(KeyError,)))
async def asks_again() -> int:
    attempt = trio_workq.current_task().attempts
    await trio.lowlevel.checkpoint()
    if attempt == 1:
        raise trio_workq.Retry(delay=0)  # overrides retry_on and the 30 s backoff
    return attempt


@task
async def asks_again_without_policy() -> None:
    await trio.lowlevel.checkpoint()
    raise trio_workq.Retry


@task
async def sleeper(seconds: float) -> str:
    runs.append(("sleeper", seconds))
    await trio.sleep(seconds)
    return "slept"


@task
async def record(key: str) -> str:
    runs.append(("record", key))
    await trio.lowlevel.checkpoint()
    return key


@task
async def whoami() -> dict[str, Any]:
    info = trio_workq.current_task()
    await trio.lowlevel.checkpoint()
    return {
        "id": info.id,
        "name": info.name,
        "status": info.status.value,
        "attempts": info.attempts,
    }


@task
async def returns_a_set() -> set[int]:
    await trio.lowlevel.checkpoint()
    return {1, 2}


@task(retry=RetryPolicy(max_attempts=2, backoff=fixed(0)))
async def lingers_first_time() -> str:
    """The first attempt runs until cancelled; later ones return at once."""
    info = trio_workq.current_task()
    if info.attempts == 1:
        try:
            await trio.sleep_forever()
        finally:
            runs.append(("first attempt stopped", info.attempts))
    await trio.lowlevel.checkpoint()
    return "second"


second_attempt_may_end = trio.Event()  # replaced by the test that uses it


@task(retry=RetryPolicy(max_attempts=3, backoff=fixed(0)))
async def returns_then_waits() -> int:
    """The first attempt returns at once; later ones wait for `second_attempt_may_end`."""
    attempt = trio_workq.current_task().attempts
    runs.append(("attempt", attempt))
    await trio.lowlevel.checkpoint()
    if attempt >= 2:
        await second_attempt_may_end.wait()
    return attempt


@task
async def shielded_work() -> str:
    """Returns normally even when cancelled meanwhile (a bounded, shielded step)."""
    runs.append(("shielded", 1))
    with trio.CancelScope(shield=True):
        await trio.sleep(0.3)
    return "done"


@task
async def thread_work() -> str:
    """Returns normally even when cancelled meanwhile (a thread is waited for)."""
    runs.append(("thread", 1))
    await trio.to_thread.run_sync(time.sleep, 0.3)
    return "done"


def unregistered_function() -> None:
    """Not registered (and not even async)."""


async def unregistered() -> None:
    await trio.lowlevel.checkpoint()


# -------------------------------------------------------------- fixtures


@pytest.fixture(params=["sqlite", "memory"])
def url(request: pytest.FixtureRequest, tmp_path: Any) -> Store | str:
    """The store every queue of a test opens: a SQLite file's URL, or one `MemoryStore`."""
    if request.param == "memory":
        return MemoryStore()  # reopened by each queue, it keeps its tasks as a file does
    return f"sqlite:///{tmp_path}/tasks.db"


def store_at(url: Store | str) -> Store:
    """A store object to open on the same tasks as the queues of the test."""
    return SQLiteStore(url) if isinstance(url, str) else url


@pytest.fixture(autouse=True)
def _clear_runs() -> None:
    runs.clear()


async def wait_for_start(count: int = 1, *, within: float = 15) -> None:
    """Wait until the tasks above have started *count* runs (a claim alone is not a start)."""
    with trio.fail_after(within):
        while True:
            if len(runs) >= count:
                return
            await trio.sleep(0.005)


async def wait_for_completed(queue: DurableWorkQueue, count: int, *, within: float = 15) -> None:
    """Poll the store until at least *count* tasks have completed."""
    with trio.fail_after(within):
        while True:
            if (await queue.statistics()).completed >= count:
                return
            await trio.sleep(0.01)


async def counts(url: Store | str) -> dict[TaskStatus, int]:
    store = store_at(url)
    await store.open()
    try:
        return await store.counts()
    finally:
        await store.aclose()


@pytest.fixture
async def submit_only(url: Store | str) -> AsyncIterator[DurableWorkQueue]:
    """A queue with no workers: tasks it submits stay in the store."""
    async with open_durable_queue(store=url, workers=0) as queue:
        yield queue


# ------------------------------------------------------------------ tests


class TestSubmitAndRun:
    async def test_result_is_stored_and_returned(self, url: Store | str) -> None:
        """A submitted task runs; its result comes back from the store."""
        async with open_durable_queue(store=url, workers=2, lease=1) as queue:
            handle = await queue.submit(add, 2, 3)
            assert isinstance(handle, DurableTaskHandle)
            assert await handle.result() == 5
            info = await handle.info()
            assert info.status is TaskStatus.COMPLETED
            assert info.attempts == 1
            assert info.name.endswith(":add")
            assert info.started_at is not None
            assert info.finished_at is not None
            assert info.last_error is None

    async def test_open_work_queue_with_a_store(self, url: Store | str) -> None:
        """open_work_queue(store=...) opens a durable queue; in-memory options are refused."""
        async with trio_workq.open_work_queue(workers=1, store=url, lease=1) as queue:
            assert isinstance(queue, trio_workq.DurableWorkQueue)
            assert await (await queue.submit(add, 1, 2)).result() == 3
        with pytest.raises(TypeError, match="max_buffer_size"):
            trio_workq.open_work_queue(store=url, max_buffer_size=5)  # type: ignore[call-overload]
        with pytest.raises(TypeError, match="lease"):
            trio_workq.open_work_queue(lease=5)  # type: ignore[call-overload]

    async def test_submit_many(self, url: Store | str) -> None:
        """submit_many stores every call in one go, or none if one is bad."""
        async with open_durable_queue(store=url, workers=2, lease=1) as queue:
            handles = await queue.submit_many(add, [(1, 2), (3, 4), (5, 6)], priority=3)
            assert [await handle.result() for handle in handles] == [3, 7, 11]
            assert (await handles[0].info()).priority == 3
            with pytest.raises(TypeError, match="cannot be serialized"):
                calls: list[tuple[Any, int]] = [(1, 2), (object(), 1)]
                await queue.submit_many(add, calls)
            assert await queue.submit_many(add, []) == []
            assert len((await queue.list_tasks()).tasks) == 3

    async def test_keyword_arguments_through_partial(self, url: Store | str) -> None:
        """functools.partial of a registered task stores its keyword arguments too."""
        async with open_durable_queue(store=url, workers=1, lease=1) as queue:
            handle = await queue.submit(functools.partial(echo, 1, key="value"), (2, 3))
            # JSON has no tuples: they come back as lists.
            assert await handle.result() == {"args": [1, [2, 3]], "kwargs": {"key": "value"}}

    async def test_failure_comes_back_as_stored_error(self, url: Store | str) -> None:
        """A failed task's exception is stored as text and re-raised as StoredError."""
        async with open_durable_queue(store=url, workers=1, lease=1) as queue:
            handle = await queue.submit(boom, "it broke")
            with pytest.raises(StoredError, match=r"^ValueError: it broke$") as caught:
                await handle.result()
            assert "Traceback (most recent call last)" in caught.value.text
            assert caught.value.summary == "ValueError: it broke"
            info = await queue.get_info(handle.id)
            assert info.status is TaskStatus.FAILED
            assert info.errors == (info.last_error,)
            assert isinstance(info.last_error, StoredError)

    async def test_registration_policy_retries(self, url: Store | str) -> None:
        """The policy given to @task retries the task; each failure is kept."""
        async with open_durable_queue(store=url, workers=1, lease=1) as queue:
            handle = await queue.submit(flaky, 3)
            assert await handle.result() == 3
            info = await handle.info()
            assert info.attempts == 3
            assert info.max_attempts == 3
            assert [str(e) for e in info.errors] == [
                "OSError: attempt 1 failed",
                "OSError: attempt 2 failed",
            ]

    async def test_queue_default_policy(self, url: Store | str) -> None:
        """A task registered without a policy gets the queue's default."""
        policy = RetryPolicy(max_attempts=2, backoff=fixed(0))
        async with open_durable_queue(store=url, workers=1, lease=1, retry=policy) as queue:
            assert await (await queue.submit(flaky_default_policy, 2)).result() == 2
            failing = await queue.submit(flaky_default_policy, 3)
            with pytest.raises(StoredError, match="attempt 2 failed"):
                await failing.result()

    async def test_registration_without_retries_beats_queue_default(self, url: Store | str) -> None:
        """@task(retry=None) means no retries, whatever the queue's default."""
        policy = RetryPolicy(max_attempts=5, backoff=fixed(0))
        async with open_durable_queue(store=url, workers=1, lease=1, retry=policy) as queue:
            handle = await queue.submit(never_retried)
            with pytest.raises(StoredError, match="once only"):
                await handle.result()
            assert (await handle.info()).attempts == 1

    async def test_retry_exception(self, url: Store | str) -> None:
        """Raising Retry retries the task (its delay wins); without a policy it fails."""
        async with open_durable_queue(store=url, workers=1, lease=1) as queue:
            with trio.fail_after(10):  # the policy's 30 s backoff would time out
                assert await (await queue.submit(asks_again)).result() == 2
            handle = await queue.submit(asks_again_without_policy)
            with pytest.raises(StoredError, match=r"^trio_workq\.Retry"):
                await handle.result()

    async def test_timeout_fails_the_attempt(self, url: Store | str) -> None:
        """An attempt that overruns its timeout is cancelled and recorded as TaskTimeout."""
        async with open_durable_queue(store=url, workers=1, lease=1) as queue:
            handle = await queue.submit(sleeper, 30, timeout=0.2)
            with trio.fail_after(10), pytest.raises(StoredError, match="TaskTimeout"):
                await handle.result()
            assert (await handle.info()).timeout == 0.2

    async def test_unserializable_result_fails_without_retry(self, url: Store | str) -> None:
        """A result the serializer cannot store fails the task at once."""
        policy = RetryPolicy(max_attempts=3, backoff=fixed(0))
        async with open_durable_queue(store=url, workers=1, lease=1, retry=policy) as queue:
            handle = await queue.submit(returns_a_set)
            with pytest.raises(StoredError, match=r"result of task .* cannot be serialized"):
                await handle.result()
            assert (await handle.info()).attempts == 1

    async def test_current_task_inside_a_durable_task(self, url: Store | str) -> None:
        """current_task() inside a task describes the running attempt."""
        async with open_durable_queue(store=url, workers=1, lease=1) as queue:
            handle = await queue.submit(whoami)
            result = await handle.result()
            assert result == {
                "id": handle.id,
                "name": (await handle.info()).name,
                "status": "running",
                "attempts": 1,
            }

    async def test_priority_order(self, url: Store | str) -> None:
        """Tasks run highest priority first, then oldest first."""
        async with open_durable_queue(store=url, workers=0) as producer:
            for key, priority in (("low", -1), ("mid-1", 0), ("high", 5), ("mid-2", 0)):
                await producer.submit(record, key, priority=priority)
        async with open_durable_queue(store=url, workers=1, lease=1) as queue:
            await wait_for_completed(queue, 4)
        assert [key for _, key in runs] == ["high", "mid-1", "mid-2", "low"]

    async def test_schedule_delay(self, url: Store | str) -> None:
        """A scheduled task waits in the store until it is due, then runs."""
        async with open_durable_queue(store=url, workers=1, lease=1, poll_interval=0.05) as queue:
            start = trio.current_time()
            handle = await queue.schedule(record, "later", delay=0.5)
            info = await handle.info()
            assert info.status is TaskStatus.SCHEDULED
            assert info.due_at is not None
            assert info.queued_at is None
            assert await handle.result() == "later"
            assert trio.current_time() - start >= 0.45

    async def test_schedule_at(self, url: Store | str) -> None:
        """schedule(at=...) takes an aware datetime; one in the past means now."""
        async with open_durable_queue(store=url, workers=1, lease=1) as queue:
            past = datetime.now(timezone.utc) - timedelta(hours=1)
            assert await (await queue.schedule(record, "now", at=past)).result() == "now"
            future = datetime.now(timezone.utc) + timedelta(hours=1)
            handle = await queue.schedule(record, "in an hour", at=future)
            info = await handle.info()
            assert info.status is TaskStatus.SCHEDULED
            assert info.due_at is not None
            assert abs((info.due_at - future).total_seconds()) < 0.01

    async def test_events_for_this_process(self, url: Store | str) -> None:
        """Listeners see submitted/scheduled, started and the outcome of local runs."""
        async with open_durable_queue(store=url, workers=1, lease=1) as queue:
            seen: list[tuple[str, str]] = []
            queue.add_listener(lambda event: seen.append((event.task_id, event.kind.value)))
            ok = await queue.submit(add, 1, 1)
            await ok.result()
            bad = await queue.submit(flaky, 2)
            await bad.result()
            later = await queue.schedule(add, 2, 2, delay=3600)
        assert seen == [
            (ok.id, "submitted"),
            (ok.id, "started"),
            (ok.id, "completed"),
            (bad.id, "submitted"),
            (bad.id, "started"),
            (bad.id, "retrying"),
            (bad.id, "started"),
            (bad.id, "completed"),
            (later.id, "scheduled"),
        ]

    async def test_event_details(self, url: Store | str) -> None:
        """Events carry the attempt, the error object, durations and a TaskInfo."""
        async with open_durable_queue(store=url, workers=1, lease=1) as queue:
            events: list[trio_workq.TaskEvent] = []
            queue.add_listener(events.append)
            await (await queue.submit(flaky, 2)).result()
        retrying = next(e for e in events if e.kind is trio_workq.EventKind.RETRYING)
        assert isinstance(retrying.error, OSError)
        assert retrying.attempt == 1
        assert retrying.run_duration is not None
        assert retrying.info.status is TaskStatus.RETRYING
        started = next(e for e in events if e.kind is trio_workq.EventKind.STARTED)
        assert started.queue_wait is not None
        assert started.queue_wait >= 0
        assert started.timestamp.tzinfo is timezone.utc

    async def test_subscribe(self, url: Store | str) -> None:
        """subscribe() streams the same events; iteration ends when the queue stops."""
        async with open_durable_queue(store=url, workers=1, lease=1) as queue:
            async with queue.subscribe() as stream:
                await (await queue.submit(add, 1, 2)).result()
                kinds = [(await stream.__anext__()).kind.value for _ in range(3)]
        assert kinds == ["submitted", "started", "completed"]

    async def test_a_failing_listener_is_ignored(
        self, url: Store | str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A listener that raises is logged; the task still completes."""

        def bad_listener(event: trio_workq.TaskEvent) -> None:
            raise RuntimeError("listener bug")

        async with open_durable_queue(store=url, workers=1, lease=1) as queue:
            queue.add_listener(bad_listener)
            assert await (await queue.submit(add, 1, 2)).result() == 3
            queue.remove_listener(bad_listener)
            with pytest.raises(ValueError, match="is not a listener"):
                queue.remove_listener(bad_listener)
            with pytest.raises(TypeError, match="must be callable"):
                queue.add_listener("nope")  # type: ignore[arg-type]
        assert "listener bug" in caplog.text

    async def test_result_from_another_queue(self, url: Store | str) -> None:
        """A handle made from an id works from a queue that did not submit the task."""
        async with open_durable_queue(store=url, workers=0) as producer:
            handle = await producer.submit(add, 20, 22)
        async with open_durable_queue(store=url, workers=1, lease=1, poll_interval=0.05) as worker:
            assert await (await worker.get_handle(handle.id)).result() == 42

    async def test_operations_checkpoint(self, submit_only: DurableWorkQueue) -> None:
        """Every async method of the queue and the handle is a checkpoint."""
        queue = submit_only
        with trio.testing.assert_checkpoints():
            handle = await queue.submit(add, 1, 2)
        with trio.testing.assert_checkpoints():
            await queue.schedule(add, 1, 2, delay=60)
        with trio.testing.assert_checkpoints():
            await queue.get_info(handle.id)
        with trio.testing.assert_checkpoints():
            await queue.list_tasks()
        with trio.testing.assert_checkpoints():
            await queue.statistics()
        with trio.testing.assert_checkpoints():
            await handle.info()
        with trio.testing.assert_checkpoints():
            await handle.cancel()
        with trio.testing.assert_checkpoints():
            await handle.wait()


class TestCancelAndRetry:
    async def test_cancel_queued(self, submit_only: DurableWorkQueue) -> None:
        """A task waiting in the store is cancelled at once and never runs."""
        queue = submit_only
        cancelled: list[str] = []
        queue.add_listener(
            lambda e: cancelled.append(e.task_id) if e.kind.value == "cancelled" else None
        )
        handle = await queue.submit(record, "never")
        assert await queue.cancel(handle.id) is True
        info = await handle.info()
        assert info.status is TaskStatus.CANCELLED
        assert info.finished_at is not None
        with pytest.raises(trio_workq.TaskCancelled, match="was cancelled"):
            await handle.result()
        assert await handle.cancel() is False
        assert cancelled == [handle.id]

    async def test_cancel_running_in_this_process(self, url: Store | str) -> None:
        """A running task is cancelled through its cancel scope, promptly."""
        async with open_durable_queue(store=url, workers=1, lease=1) as queue:
            handle = await queue.submit(sleeper, 30)
            await wait_for_start()
            start = trio.current_time()
            assert await handle.cancel() is True
            outcome = await handle.wait()
            assert trio.current_time() - start < 0.5
            with pytest.raises(trio_workq.TaskCancelled):
                outcome.unwrap()
            assert (await handle.info()).status is TaskStatus.CANCELLED

    async def test_cancel_running_from_another_queue(self, url: Store | str) -> None:
        """A cancel written by another queue reaches the running task within about a second."""
        async with (
            open_durable_queue(store=url, workers=1, lease=30) as owner,
            open_durable_queue(store=url, workers=0) as other,
        ):
            handle = await owner.submit(sleeper, 30)
            await wait_for_status(other, handle.id, TaskStatus.RUNNING)
            start = trio.current_time()
            assert await other.cancel(handle.id) is True
            await wait_for_status(other, handle.id, TaskStatus.CANCELLED, within=3)
            assert trio.current_time() - start <= 1.5

    async def test_cancel_scheduled(self, submit_only: DurableWorkQueue) -> None:
        """A scheduled task can be cancelled before it is due."""
        handle = await submit_only.schedule(record, "x", delay=60)
        assert await submit_only.cancel(handle.id) is True
        assert (await handle.info()).status is TaskStatus.CANCELLED

    async def test_cancel_unknown(self, submit_only: DurableWorkQueue) -> None:
        """Cancelling an id the store does not hold raises TaskNotFound."""
        with pytest.raises(trio_workq.TaskNotFound, match="no task with id '12345'"):
            await submit_only.cancel("12345")
        with pytest.raises(trio_workq.TaskNotFound):
            await submit_only.cancel("not-an-id")
        with pytest.raises(TypeError, match="task_id must be a str"):
            await submit_only.cancel(12345)  # type: ignore[arg-type]

    async def test_retry_failed_task(self, url: Store | str) -> None:
        """retry() runs a failed task again, as one more attempt."""
        async with open_durable_queue(store=url, workers=1, lease=1) as queue:
            handle = await queue.submit(flaky_default_policy, 2)
            with pytest.raises(StoredError):
                await handle.result()
            again = await queue.retry(handle.id)
            assert again == handle
            assert await handle.result() == 2
            info = await handle.info()
            assert info.attempts == 2
            assert info.status is TaskStatus.COMPLETED

    async def test_retry_rejects_unfinished_and_unknown(self, url: Store | str) -> None:
        """Only failed or cancelled tasks can be retried; unknown ids raise TaskNotFound."""
        async with open_durable_queue(store=url, workers=1, lease=1) as queue:
            handle = await queue.submit(add, 1, 1)
            await handle.result()
            with pytest.raises(trio_workq.TaskStateError, match="is completed"):
                await queue.retry(handle.id)
            with pytest.raises(trio_workq.TaskNotFound):
                await queue.retry("999999")


class TestLookups:
    async def test_unknown_ids(self, submit_only: DurableWorkQueue) -> None:
        """get_handle, get_info and an old handle raise TaskNotFound for unknown ids."""
        with pytest.raises(trio_workq.TaskNotFound):
            await submit_only.get_handle("424242")
        with pytest.raises(trio_workq.TaskNotFound):
            await submit_only.get_info("424242")
        with pytest.raises(TypeError, match="task_id must be a str"):
            await submit_only.get_handle(1)  # type: ignore[arg-type]
        handle = await submit_only.submit(add, 1, 2)
        assert await submit_only.cancel(handle.id)
        await submit_only.store.purge_finished(
            submit_only.store.now() + 60
        )  # gone; its handle stays
        with pytest.raises(trio_workq.TaskNotFound):
            await handle.result()

    async def test_handles_compare_by_id(self, submit_only: DurableWorkQueue) -> None:
        """Two handles of one task are equal and hash alike."""
        handle = await submit_only.submit(add, 1, 2)
        same = await submit_only.get_handle(handle.id)
        assert handle == same
        assert hash(handle) == hash(same)
        assert handle != await submit_only.submit(add, 1, 2)
        assert handle != handle.id
        assert repr(handle) == f"<DurableTaskHandle id={handle.id}>"

    async def test_list_tasks_filters_and_pages(self, submit_only: DurableWorkQueue) -> None:
        """list_tasks pages newest first and filters by status and name."""
        queue = submit_only
        ids = [(await queue.submit(add, i, i)).id for i in range(5)]
        other = await queue.submit(record, "x")
        await queue.cancel(ids[0])
        first = await queue.list_tasks(limit=4)
        assert [info.id for info in first.tasks] == [other.id, *reversed(ids[1:])][:4]
        assert first.next_cursor is not None
        second = await queue.list_tasks(limit=4, cursor=first.next_cursor)
        assert [info.id for info in second.tasks] == [ids[1], ids[0]]
        assert second.next_cursor is None
        cancelled = await queue.list_tasks(status="cancelled")
        assert [info.id for info in cancelled.tasks] == [ids[0]]
        named = await queue.list_tasks(name=(await other.info()).name)
        assert [info.id for info in named.tasks] == [other.id]

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"limit": 0}, ValueError, "limit must be between 1 and 1000"),
            ({"limit": 1001}, ValueError, "limit must be between 1 and 1000"),
            ({"limit": "5"}, TypeError, "limit must be an int"),
            ({"status": "sleeping"}, ValueError, "unknown status 'sleeping'"),
            ({"status": 3}, TypeError, "status must be a TaskStatus or str"),
            ({"name": 3}, TypeError, "name must be a str"),
            ({"cursor": 3}, TypeError, "cursor must be a str"),
            ({"cursor": "bogus"}, ValueError, "cursor"),
        ],
    )
    async def test_list_tasks_bad_arguments(
        self, submit_only: DurableWorkQueue, kwargs: dict[str, Any], error: type, match: str
    ) -> None:
        """Bad list_tasks arguments raise a clear error."""
        with pytest.raises(error, match=match):
            await submit_only.list_tasks(**kwargs)

    async def test_statistics(self, url: Store | str) -> None:
        """statistics() counts the store's statuses and this process's workers."""
        async with open_durable_queue(store=url, workers=2, lease=1) as queue:
            done = await queue.submit(add, 1, 1)
            await done.result()
            running = await queue.submit(sleeper, 30)
            await wait_for_start()
            await queue.schedule(add, 1, 1, delay=60)
            stats = await queue.statistics()
            assert (stats.workers, stats.busy_workers, stats.held) == (2, 1, 1)
            assert (stats.completed, stats.running, stats.scheduled) == (1, 1, 1)
            assert stats.closed is False
            assert stats.owner == queue.owner
            assert queue.owner.count(":") == 2
            store_url = url if isinstance(url, str) else url.url
            assert repr(queue).startswith(f"<DurableWorkQueue store={store_url!r}")
            await running.cancel()


class TestShutdownAndRestart:
    async def test_shutdown_leaves_waiting_tasks_in_the_store(self, url: Store | str) -> None:
        """Queued and scheduled tasks stay in the store; the next queue runs them."""
        async with open_durable_queue(store=url, workers=0) as producer:
            queued = await producer.submit(record, "queued")
            scheduled = await producer.schedule(record, "scheduled", delay=0.3)
        assert runs == []
        async with open_durable_queue(store=url, workers=2, lease=1, poll_interval=0.05) as queue:
            assert await (await queue.get_handle(queued.id)).result() == "queued"
            assert await (await queue.get_handle(scheduled.id)).result() == "scheduled"

    async def test_shutdown_deadline_gives_running_tasks_back(self, url: Store | str) -> None:
        """At the shutdown deadline running tasks are cancelled and queued again, uncounted."""
        async with open_durable_queue(store=url, workers=1, lease=1) as queue:
            handle = await queue.submit(sleeper, 30)
            await wait_for_start()
            start = trio.current_time()
            await queue.shutdown(timeout=0.2)
            assert 0.15 <= trio.current_time() - start < 2
            with pytest.raises(trio_workq.QueueClosed):
                await queue.submit(add, 1, 1)
            assert (await queue.statistics()).closed
        info = await self._info(url, handle.id)
        assert info.status is TaskStatus.QUEUED
        assert info.attempts == 0

    async def test_shutdown_waits_for_running_tasks(self, url: Store | str) -> None:
        """Without a deadline, shutdown lets a running task finish."""
        async with open_durable_queue(store=url, workers=1, lease=1) as queue:
            handle = await queue.submit(sleeper, 0.3)
            await wait_for_start()
        assert (await self._info(url, handle.id)).status is TaskStatus.COMPLETED

    async def test_exception_in_block_gives_tasks_back(self, url: Store | str) -> None:
        """An exception leaving the block interrupts running tasks and re-queues them."""
        handles: list[DurableTaskHandle[str]] = []
        with pytest.raises(KeyError, match="user error"):
            async with open_durable_queue(store=url, workers=1, lease=1) as queue:
                handles.append(await queue.submit(sleeper, 30))
                await wait_for_start()
                raise KeyError("user error")
        info = await self._info(url, handles[0].id)
        assert (info.status, info.attempts) == (TaskStatus.QUEUED, 0)

    async def test_cancelled_from_outside_gives_tasks_back(self, url: Store | str) -> None:
        """Cancelling the nursery around the queue re-queues its running tasks."""
        handles: list[DurableTaskHandle[str]] = []
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                async with open_durable_queue(nursery, store=url, workers=1, lease=1) as queue:
                    handles.append(await queue.submit(sleeper, 30))
                    await wait_for_start()
                    scope.cancel()
                    await trio.sleep_forever()
        info = await self._info(url, handles[0].id)
        assert (info.status, info.attempts) == (TaskStatus.QUEUED, 0)

    async def test_a_claim_that_returns_after_the_drain_gives_its_tasks_back(
        self, url: Store | str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A claim the store ran while shutdown finished: its tasks go back, none stays running."""
        handles: list[DurableTaskHandle[str]] = []
        async with trio.open_nursery() as nursery:
            async with open_durable_queue(store=url, workers=1, lease=30) as queue:
                store = queue.store
                claim = store.claim
                claim_may_finish = trio.Event()

                async def slow_claim(owner: str, limit: int, lease: float) -> Any:
                    # Once the store has an operation, it runs even if its caller is cancelled.
                    with trio.CancelScope(shield=True):
                        await claim_may_finish.wait()
                        return await claim(owner, limit, lease)

                monkeypatch.setattr(store, "claim", slow_claim)
                handles.append(await queue.submit(record, "late"))
                await trio.testing.wait_all_tasks_blocked()  # the claim is in flight
                nursery.start_soon(queue.shutdown)
                await trio.testing.wait_all_tasks_blocked()  # drained: the fetcher is cancelled
                claim_may_finish.set()
        assert runs == []
        info = await self._info(url, handles[0].id)
        assert (info.status, info.attempts) == (TaskStatus.QUEUED, 0)

    async def test_restart_runs_everything_exactly_once(self, url: Store | str) -> None:
        """Interrupted tasks run again after a restart; every task completes exactly once."""
        async with open_durable_queue(store=url, workers=3, lease=1) as first:
            handles = [await first.submit(sleeper, 0.05 * (i % 4)) for i in range(30)]
            await wait_for_completed(first, 5)
            await first.shutdown(timeout=0)
        async with open_durable_queue(store=url, workers=3, lease=1) as second:
            for handle in handles:
                assert await (await second.get_handle(handle.id)).result() == "slept"
        assert (await counts(url))[TaskStatus.COMPLETED] == 30

    async def test_delayed_tasks_and_retries_survive_a_restart(self, url: Store | str) -> None:
        """A scheduled task and a task waiting out a retry backoff run after a restart."""
        policy = RetryPolicy(max_attempts=2, backoff=fixed(0.5))
        async with open_durable_queue(store=url, workers=1, lease=1, retry=policy) as first:
            later = await first.schedule(record, "later", delay=0.5)
            retried = await first.submit(flaky_default_policy, 2)
            await wait_for_status(first, retried.id, TaskStatus.RETRYING)
        assert runs == []  # the scheduled task was not due yet
        async with open_durable_queue(
            store=url, workers=1, lease=1, retry=policy, poll_interval=0.05
        ) as second:
            assert await (await second.get_handle(later.id)).result() == "later"
            assert await (await second.get_handle(retried.id)).result() == 2

    async def test_lost_lease_stops_the_attempt_and_records_nothing(
        self, url: Store | str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A task whose lease was lost is stopped here, and its outcome is not written."""
        async with open_durable_queue(store=url, workers=1, lease=1) as queue:
            store = queue.store
            renew = store.renew
            outage = True

            async def failing_renew(*args: Any) -> Any:
                if outage:
                    raise StoreError("simulated: the store cannot be reached")
                return await renew(*args)

            monkeypatch.setattr(store, "renew", failing_renew)
            handle = await queue.submit(lingers_first_time)
            # No renewal reaches the store: the lease expires and the reaper re-queues the task.
            await wait_for_status(queue, handle.id, TaskStatus.RETRYING)
            outage = False  # the next renewal learns that the lease is lost
            assert await handle.result() == "second"
        assert runs == [("first attempt stopped", 1)]
        info = await self._info(url, handle.id)
        assert info.attempts == 2
        assert [error.text for error in info.errors if isinstance(error, StoredError)] == [
            LEASE_EXPIRED_ERROR
        ]

    async def test_expired_lease_of_a_dead_worker_is_recovered(self, url: Store | str) -> None:
        """A task left running by a vanished owner runs again once its lease expires."""
        store = store_at(url)
        await store.open()
        try:
            payload = b'{"args":["orphan"]}'
            name = definition_for(record, None).name
            (task_id,) = await store.add(
                [NewTask(name, payload, 0, time.time(), 2, None, TaskStatus.QUEUED)]
            )
            claimed = await store.claim("dead-host:1:x", 1, 0.5)
            assert [t.id for t in claimed.tasks] == [task_id]
        finally:
            await store.aclose()
        async with open_durable_queue(store=url, workers=1, lease=0.5, poll_interval=0.05) as queue:
            assert await (await queue.get_handle(task_id)).result() == "orphan"
            info = await queue.get_info(task_id)
        assert info.attempts == 2
        assert str(info.errors[0]) == LEASE_EXPIRED_ERROR.split("\n")[0]

    async def test_stored_task_of_unknown_name_fails(self, url: Store | str) -> None:
        """A stored task whose name no module in this process registered fails clearly."""
        store = store_at(url)
        await store.open()
        try:
            new = NewTask(
                "nobody.registered.this", b'{"args":[]}', 0, time.time(), 3, None, TaskStatus.QUEUED
            )
            (task_id,) = await store.add([new])
        finally:
            await store.aclose()
        async with open_durable_queue(store=url, workers=1, lease=1) as queue:
            with pytest.raises(StoredError, match=r"no task named 'nobody\.registered\.this'"):
                await (await queue.get_handle(task_id)).result()
            assert (await queue.get_info(task_id)).attempts == 1  # not retried

    async def test_malformed_stored_arguments_fail(self, url: Store | str) -> None:
        """Stored arguments that are not in the queue's format fail the task."""
        name = definition_for(record, None).name
        async with open_durable_queue(store=url, workers=1, lease=1) as queue:
            ids = await queue.store.add(
                [
                    NewTask(name, payload, 0, time.time(), 1, None, TaskStatus.QUEUED)
                    for payload in (b"[1, 2]", b'{"args": 5}', b"not json")
                ]
            )
            for task_id in ids:
                with pytest.raises(StoredError):
                    await (await queue.get_handle(task_id)).result()

    @staticmethod
    async def _info(url: Store | str, task_id: str) -> trio_workq.TaskInfo:
        async with open_durable_queue(store=url, workers=0) as queue:
            return await queue.get_info(task_id)


class TestRecordingOutcomes:
    """Results are written by one recorder, many per store call, while workers go on."""

    async def test_workers_go_on_while_a_result_is_written(
        self, url: Store | str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async with open_durable_queue(store=url, workers=1, lease=5) as queue:
            store = queue.store
            complete_many = store.complete_many
            written = trio.Event()
            writes: list[list[str]] = []

            async def slow_complete_many(owner: str, items: Any) -> list[bool]:
                writes.append([task_id for task_id, _, _ in items])
                await written.wait()
                return await complete_many(owner, items)

            monkeypatch.setattr(store, "complete_many", slow_complete_many)
            completed: list[str] = []
            queue.add_listener(
                lambda event: (
                    completed.append(event.task_id)
                    if event.kind is trio_workq.EventKind.COMPLETED
                    else None
                )
            )
            first = await queue.submit(record, "first")
            second = await queue.submit(record, "second")
            await wait_for_start(2)  # the only worker ran both; the first result is unwritten
            assert writes[0] == [first.id]
            assert (await queue.get_info(first.id)).status is TaskStatus.RUNNING
            assert completed == []  # reported only once committed
            written.set()
            assert (await first.result(), await second.result()) == ("first", "second")
            assert sorted(completed) == sorted([first.id, second.id])

    async def test_results_waiting_when_cancelled_from_outside_are_written(
        self, url: Store | str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        handles: list[DurableTaskHandle[str]] = []
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                async with open_durable_queue(nursery, store=url, workers=1, lease=30) as queue:
                    store = queue.store
                    complete_many = store.complete_many
                    first_write = trio.Event()

                    async def stuck_once(owner: str, items: Any) -> list[bool]:
                        if not first_write.is_set():
                            first_write.set()
                            await trio.sleep_forever()  # the first write never gets through
                        return await complete_many(owner, items)

                    monkeypatch.setattr(store, "complete_many", stuck_once)
                    handles.append(await queue.submit(record, "done"))
                    await wait_for_start()
                    await first_write.wait()
                    scope.cancel()
                    await trio.sleep_forever()
        # Written on the way out, so it will not run again when its lease expires.
        async with open_durable_queue(store=url, workers=0) as queue:
            info = await queue.get_info(handles[0].id)
            assert (info.status, info.attempts) == (TaskStatus.COMPLETED, 1)
            assert await (await queue.get_handle(handles[0].id)).result() == "done"

    @pytest.mark.parametrize("fn", [shielded_work, thread_work])
    async def test_result_returned_after_outside_cancel_is_written(
        self, url: Store | str, fn: Any
    ) -> None:
        """A task that returns after the queue's nursery was cancelled still counts."""
        handles: list[DurableTaskHandle[str]] = []
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                async with open_durable_queue(nursery, store=url, workers=1, lease=30) as queue:
                    handles.append(await queue.submit(fn))
                    await wait_for_start()
                    scope.cancel()
                    await trio.sleep_forever()
        info = await TestShutdownAndRestart._info(url, handles[0].id)
        assert (info.status, info.attempts) == (TaskStatus.COMPLETED, 1)

    async def test_shutdown_waits_for_the_recorder(
        self, url: Store | str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A clean shutdown returns only once a waiting result is committed and reported."""
        kinds: list[str] = []
        async with open_durable_queue(store=url, workers=1, lease=1) as queue:
            store = queue.store
            complete_many = store.complete_many
            may_write = trio.Event()

            async def gated(owner: str, items: Any) -> list[bool]:
                await may_write.wait()
                return await complete_many(owner, items)

            monkeypatch.setattr(store, "complete_many", gated)
            queue.add_listener(lambda event: kinds.append(event.kind.value))
            handle = await queue.submit(record, "x")
            await wait_for_start()
            await trio.sleep(1.5)  # longer than the lease: the heartbeat keeps renewing it
            async with trio.open_nursery() as nursery:
                nursery.start_soon(queue.shutdown)
                await trio.sleep(0.3)
                assert not queue._stopped.is_set()  # still waiting for the write
                may_write.set()
            assert kinds[-1] == "completed"
        info = await TestShutdownAndRestart._info(url, handle.id)
        assert (info.status, info.attempts) == (TaskStatus.COMPLETED, 1)

    @pytest.mark.parametrize("failures", [3, 10_000])
    async def test_failing_store(
        self, url: Store | str, monkeypatch: pytest.MonkeyPatch, failures: int
    ) -> None:
        """Failed writes are retried; after a lease's time they are given up (and not held)."""
        kinds: list[str] = []
        async with open_durable_queue(store=url, workers=1, lease=1) as queue:
            store = queue.store
            complete_many = store.complete_many
            calls = 0

            async def failing(owner: str, items: Any) -> list[bool]:
                nonlocal calls
                calls += 1
                if calls <= failures:
                    raise StoreError("simulated: the store cannot be reached")
                return await complete_many(owner, items)

            monkeypatch.setattr(store, "complete_many", failing)
            queue.add_listener(lambda event: kinds.append(event.kind.value))
            handle = await queue.submit(record, "x")
            with trio.fail_after(5):
                while True:  # until the recorder has written it, or given up
                    if runs and handle.id not in queue._held:
                        break
                    await trio.sleep(0.02)
            assert kinds.count("completed") == (1 if failures == 3 else 0)
            assert calls == 4 if failures == 3 else calls > 4
        info = await TestShutdownAndRestart._info(url, handle.id)
        # Given up: the task stays running in the store until its lease runs out.
        assert info.status is (TaskStatus.COMPLETED if failures == 3 else TaskStatus.RUNNING)

    async def test_a_write_whose_answer_was_lost_still_reports_completed(
        self, url: Store | str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The first write commits but raises (a dropped connection); the retry is refused."""
        kinds: list[str] = []
        async with open_durable_queue(store=url, workers=1, lease=5) as queue:
            store = queue.store
            complete_many = store.complete_many
            calls = 0

            async def answer_lost_once(owner: str, items: Any) -> list[bool]:
                nonlocal calls
                calls += 1
                done = await complete_many(owner, items)
                if calls == 1:
                    raise StoreError("simulated: the connection dropped after the commit")
                return done

            monkeypatch.setattr(store, "complete_many", answer_lost_once)
            queue.add_listener(lambda event: kinds.append(event.kind.value))
            handle = await queue.submit(record, "x")
            assert await handle.result() == "x"
            with trio.fail_after(5):
                while True:  # the event follows the retry's confirmation
                    if "completed" in kinds:
                        break
                    await trio.sleep(0.01)
        assert calls == 2
        assert kinds.count("completed") == 1
        assert "lease lost" not in caplog.text

    async def test_a_reclaimed_attempt_stays_held(
        self, url: Store | str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Attempt 1's result waits, its lease expires, this process claims attempt 2.

        The refused write of attempt 1 must leave attempt 2 held: its lease is
        renewed and shutdown waits for it.
        """
        global second_attempt_may_end
        second_attempt_may_end = trio.Event()
        async with open_durable_queue(store=url, workers=2, lease=1, poll_interval=0.05) as queue:
            store = queue.store
            complete_many, renew = store.complete_many, store.renew
            may_write, written = trio.Event(), trio.Event()
            handle_ids: list[str] = []

            async def slow_complete_many(owner: str, items: Any) -> list[bool]:
                await may_write.wait()
                try:
                    return await complete_many(owner, items)
                finally:
                    written.set()

            async def renew_others(owner: str, ids: Any, lease: float) -> Any:
                if not may_write.is_set():  # attempt 1's renewals do not get through
                    ids = [task_id for task_id in ids if task_id not in handle_ids]
                return await renew(owner, ids, lease)

            monkeypatch.setattr(store, "complete_many", slow_complete_many)
            monkeypatch.setattr(store, "renew", renew_others)
            handle = await queue.submit(returns_then_waits)
            handle_ids.append(handle.id)
            await wait_for_start(2)
            assert runs == [("attempt", 1), ("attempt", 2)]
            may_write.set()  # attempt 1's write is refused: attempt 2 holds the row
            with trio.fail_after(5):
                await written.wait()
            await trio.lowlevel.checkpoint()  # the recorder handles the refusal
            assert handle.id in queue._held
            second_attempt_may_end.set()
            assert await handle.result() == 2
        info = await TestShutdownAndRestart._info(url, handle.id)
        assert (info.status, info.attempts) == (TaskStatus.COMPLETED, 2)


class TestBadInput:
    @pytest.mark.parametrize(
        ("fn", "match"),
        [
            (unregistered, "is not a registered task: decorate it with @trio_workq.task"),
            (unregistered_function, "is not a registered task"),
            (lambda: None, "a lambda cannot be stored"),
            (print, "is not a registered task"),
            ("add", "is not a registered task"),
        ],
    )
    async def test_unstorable_callables(
        self, url: Store | str, submit_only: DurableWorkQueue, fn: Any, match: str
    ) -> None:
        """Anything but a registered task is refused at submit; nothing is stored."""
        with pytest.raises(TypeError, match=match):
            await submit_only.submit(fn)
        with pytest.raises(TypeError, match=match):
            await submit_only.schedule(fn, delay=1)
        stats = await submit_only.statistics()
        assert stats.queued + stats.scheduled == 0

    async def test_closure_and_coroutine(self, submit_only: DurableWorkQueue) -> None:
        """A nested function and a coroutine object are refused with a hint."""

        async def nested() -> None:
            await trio.lowlevel.checkpoint()

        with pytest.raises(TypeError, match="nested function or closure"):
            await submit_only.submit(nested)
        coroutine = add(1, 2)
        with pytest.raises(TypeError, match=r"not a coroutine object: write submit\(fn, arg\)"):
            await submit_only.submit(coroutine)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("args", "error", "match"),
        [
            ((object(),), TypeError, "arguments of task .* cannot be serialized.*object"),
            (({1, 2},), TypeError, "not JSON serializable"),
            ((math.nan,), ValueError, "Out of range float"),
            (({"ok": {1: "x"}},), TypeError, "keys must be strings, got 1"),
        ],
    )
    async def test_unserializable_arguments(
        self, submit_only: DurableWorkQueue, args: tuple[Any, ...], error: type, match: str
    ) -> None:
        """Arguments JSON cannot hold faithfully are refused; nothing is stored."""
        with pytest.raises(error, match=match):
            await submit_only.submit(echo, *args)
        with pytest.raises(error, match=match):
            await submit_only.submit(functools.partial(echo, key=args[0]))
        assert (await submit_only.list_tasks()).tasks == ()

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"priority": 1.5}, TypeError, "priority must be an int"),
            ({"timeout": 0}, ValueError, "timeout must be > 0"),
            ({"timeout": "1"}, TypeError, "timeout must be a number"),
            ({"name": 5}, TypeError, "name must be a str"),
            ({"name": "other"}, ValueError, "is registered as .*, not as 'other'"),
        ],
    )
    async def test_bad_options(
        self, submit_only: DurableWorkQueue, kwargs: dict[str, Any], error: type, match: str
    ) -> None:
        """Bad submit options raise before anything is stored."""
        with pytest.raises(error, match=match):
            await submit_only.submit(add, 1, 2, **kwargs)
        assert (await submit_only.list_tasks()).tasks == ()

    async def test_schedule_needs_exactly_one_time(self, submit_only: DurableWorkQueue) -> None:
        """schedule() takes delay= or at=, not both or neither; at= must be aware."""
        with pytest.raises(TypeError, match="exactly one of delay= and at="):
            await submit_only.schedule(add, 1, 2)
        with pytest.raises(TypeError, match="exactly one of delay= and at="):
            await submit_only.schedule(add, 1, 2, delay=1, at=datetime.now(timezone.utc))
        with pytest.raises(ValueError, match="timezone-aware"):
            await submit_only.schedule(add, 1, 2, at=datetime.now())
        with pytest.raises(ValueError, match="delay must be >= 0"):
            await submit_only.schedule(add, 1, 2, delay=-1)

    @pytest.mark.parametrize(
        ("store", "error", "match"),
        [
            ("redis://localhost", ValueError, "unsupported store URL 'redis://localhost'"),
            ("sqlite:/tasks.db", ValueError, "malformed SQLite URL"),
            ("sqlite:///", ValueError, "malformed SQLite URL"),
            ("tasks.db", ValueError, "unsupported store URL"),
            (42, TypeError, "store must be a Store or a URL"),
        ],
    )
    async def test_bad_store_urls(self, store: Any, error: type, match: str) -> None:
        """A URL naming no supported store is refused before anything starts."""
        with pytest.raises(error, match=match):
            async with open_durable_queue(store=store):
                pytest.fail("the queue opened")  # pragma: no cover

    async def test_missing_directory_and_corrupt_file(self, tmp_path: Any) -> None:
        """A store that cannot be opened raises StoreError naming the file."""
        with pytest.raises(StoreError, match="does not exist"):
            async with open_durable_queue(store=f"sqlite:///{tmp_path}/no/such/dir/t.db"):
                pytest.fail("the queue opened")  # pragma: no cover
        corrupt = tmp_path / "corrupt.db"
        corrupt.write_bytes(b"this is not a database" * 100)
        with pytest.raises(StoreError, match=r"corrupt\.db"):
            async with open_durable_queue(store=f"sqlite:///{corrupt}"):
                pytest.fail("the queue opened")  # pragma: no cover

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"workers": -1}, ValueError, "workers must be >= 0"),
            ({"workers": 1.5}, TypeError, "workers must be an int"),
            ({"lease": 0}, ValueError, "lease must be > 0"),
            ({"poll_interval": -1}, ValueError, "poll_interval must be > 0"),
            ({"retention": -1}, ValueError, "retention must be >= 0"),
            ({"shutdown_timeout": math.inf}, ValueError, "shutdown_timeout must be finite"),
            ({"retry": 3}, TypeError, "retry must be a RetryPolicy or None"),
            ({"serializer": object()}, TypeError, "serializer must have dumps"),
        ],
    )
    async def test_bad_queue_options(
        self, url: Store | str, kwargs: dict[str, Any], error: type, match: str
    ) -> None:
        """Bad options of open_durable_queue raise before anything starts."""
        with pytest.raises(error, match=match):
            async with open_durable_queue(store=url, **kwargs):
                pytest.fail("the queue opened")  # pragma: no cover


class TestSerializers:
    async def test_pickle_serializer_is_opt_in(self, url: Store | str) -> None:
        """With PickleSerializer, values JSON cannot hold go through the store."""
        serializer = PickleSerializer()
        async with open_durable_queue(
            store=url, workers=1, lease=1, serializer=serializer
        ) as queue:
            handle = await queue.submit(echo, {1, 2}, (3, 4))
            assert await handle.result() == {"args": [{1, 2}, (3, 4)], "kwargs": {}}

    async def test_a_serializer_returning_text_fails_only_that_task(self, url: Store | str) -> None:
        """A result `dumps` turns into something other than bytes fails its own task."""

        class TextForStrings(JSONSerializer):
            def dumps(self, value: Any) -> bytes:
                encoded = super().dumps(value)
                return encoded.decode() if value == "text" else encoded  # type: ignore[return-value]

        async with open_durable_queue(
            store=url, workers=2, lease=1, serializer=TextForStrings()
        ) as queue:
            bad = await queue.submit(record, "text")
            good = await queue.submit(record, "fine")
            with pytest.raises(StoredError, match="dumps\\(\\) returned str, not bytes"):
                await bad.result()
            assert await good.result() == "fine"
            info = await queue.get_info(bad.id)
            assert (info.status, info.attempts) == (TaskStatus.FAILED, 1)

    def test_json_round_trip(self) -> None:
        """JSON keeps JSON values; tuples come back as lists."""
        json = JSONSerializer()
        value = {"a": [1, 2.5, None, True, "é"], "b": (1, 2)}
        assert json.loads(json.dumps(value)) == {"a": [1, 2.5, None, True, "é"], "b": [1, 2]}
        assert json.dumps({"x": 1}) == b'{"x":1}'
        shared = [1]
        assert json.loads(json.dumps([shared, shared])) == [[1], [1]]
        circular: list[Any] = []
        circular.append(circular)
        with pytest.raises(ValueError, match="Circular reference"):
            json.dumps(circular)
        assert repr(json) == "JSONSerializer()"

    def test_pickle_serializer_checks(self) -> None:
        """PickleSerializer validates its protocol and reports what cannot be pickled."""
        pickle = PickleSerializer(protocol=2)
        assert pickle.loads(pickle.dumps({1, 2})) == {1, 2}
        assert repr(pickle) == "PickleSerializer(protocol=2)"
        with pytest.raises(TypeError, match="cannot pickle"):
            pickle.dumps(lambda: None)
        with pytest.raises(ValueError, match="protocol must be between 0 and"):
            PickleSerializer(protocol=99)
        with pytest.raises(TypeError, match="protocol must be an int"):
            PickleSerializer(protocol="2")  # type: ignore[arg-type]

    def test_error_text(self) -> None:
        """Errors are stored as a summary line, then the traceback when there is one."""
        assert error_text(ValueError("bare")) == "ValueError: bare"
        try:
            raise KeyError("inner")
        except KeyError as exc:
            text = error_text(exc)
        summary, rest = text.split("\n\n", 1)
        assert summary == "KeyError: 'inner'"
        assert rest.startswith("Traceback (most recent call last)")
        stored = StoredError(text)
        assert str(stored) == summary
        assert repr(stored) == f"StoredError({summary!r})"
        assert error_text(ValueError("first line\nsecond line")) == "ValueError: first line"
        assert error_text(trio_workq.TaskTimeout("late")) == "trio_workq.TaskTimeout: late"
        assert error_text(KeyError()) == "KeyError"

        class Unprintable(Exception):
            def __str__(self) -> str:
                raise RuntimeError("no")

        assert error_text(Unprintable()).endswith("Unprintable: <str() of the exception failed>")
