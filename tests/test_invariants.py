# SPDX-License-Identifier: MIT
# White-box: checks that the retained records stay bounded.
# pyright: reportPrivateUsage=false
"""Random workloads (Hypothesis) against the queue's invariants."""

from __future__ import annotations

import attrs
import outcome
import pytest
import trio
import trio.testing
from hypothesis import example, given, settings
from hypothesis import strategies as st

import trio_workq
from trio_workq import TaskStatus


@attrs.frozen
class Spec:
    duration: float
    fails: int  # how many first attempts raise
    priority: int
    cancel_after: float | None
    timeout: float | None
    delay: float | None
    max_attempts: int


specs = st.builds(
    Spec,
    duration=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
    fails=st.integers(0, 3),
    priority=st.integers(-2, 2),
    cancel_after=st.one_of(st.none(), st.sampled_from([0.0, 0.7, 2.0, 6.0])),
    timeout=st.one_of(st.none(), st.sampled_from([0.8, 2.5])),
    delay=st.one_of(st.none(), st.sampled_from([0.0, 1.5, 4.0])),
    max_attempts=st.integers(1, 3),
)


@settings(max_examples=150, deadline=None)
@given(
    workload=st.lists(specs, max_size=25),
    workers=st.integers(1, 4),
    buffer=st.integers(0, 5),
    shutdown_timeout=st.one_of(st.none(), st.sampled_from([1.0, 5.0])),
)
def test_random_workloads_keep_invariants(
    workload: list[Spec], workers: int, buffer: int, shutdown_timeout: float | None
) -> None:
    """Each task ends in one terminal state, runs at most its attempts, never over `workers`."""
    runs: dict[int, int] = {}
    running = 0
    peak = 0

    async def job(index: int, spec: Spec) -> int:
        nonlocal running, peak
        runs[index] = runs.get(index, 0) + 1
        running += 1
        peak = max(peak, running)
        try:
            await trio.sleep(spec.duration)
            if runs[index] <= spec.fails:
                raise OSError(f"attempt {runs[index]} of task {index} fails")
            return index
        finally:
            running -= 1

    async def main() -> None:
        handles: list[trio_workq.MemoryTaskHandle[int]] = []
        async with trio.open_nursery() as nursery:
            async with trio_workq.open_work_queue(
                nursery, workers=workers, max_buffer_size=buffer, shutdown_timeout=shutdown_timeout
            ) as queue:
                for index, spec in enumerate(workload):
                    policy = trio_workq.RetryPolicy(
                        max_attempts=spec.max_attempts, backoff=trio_workq.fixed(0.5)
                    )
                    options = {"priority": spec.priority, "timeout": spec.timeout, "retry": policy}
                    if spec.delay is None:
                        handle = await queue.submit(job, index, spec, **options)  # type: ignore[arg-type]
                    else:
                        handle = await queue.schedule(job, index, spec, delay=spec.delay, **options)  # type: ignore[arg-type]
                    handles.append(handle)
                    if spec.cancel_after is not None:
                        nursery.start_soon(cancel_later, handle, spec.cancel_after)
                    assert queue.statistics_nowait().running <= workers
            stats = queue.statistics_nowait()

        assert peak <= workers
        assert stats.queued == stats.running == stats.scheduled == stats.retrying == 0
        assert stats.completed + stats.failed + stats.cancelled == stats.submitted == len(workload)
        for index, (spec, handle) in enumerate(zip(workload, handles, strict=True)):
            info = queue.get_info_nowait(handle.id)
            assert handle.done
            assert info.status is handle.status
            assert info.status.is_terminal
            assert info.attempts == runs.get(index, 0)
            assert info.attempts <= spec.max_attempts
            outcome_ = await handle.wait()
            if info.status is TaskStatus.COMPLETED:
                assert outcome_.unwrap() == index
                assert info.attempts == spec.fails + 1
            elif info.status is TaskStatus.FAILED:
                assert info.last_error is not None
                assert isinstance(info.last_error, (OSError, trio_workq.TaskTimeout))
                assert len(info.errors) == info.attempts
            else:
                assert isinstance(outcome_, outcome.Error)
                assert isinstance(outcome_.error, trio_workq.TaskCancelled)

    async def cancel_later(handle: trio_workq.MemoryTaskHandle[int], after: float) -> None:
        await trio.sleep(after)
        handle.cancel_nowait()

    async def bounded() -> None:
        # Virtual time: a deadlock shows up as TooSlowError (and Hypothesis shrinks it).
        with trio.fail_after(100_000):
            await main()

    trio.run(bounded, clock=trio.testing.MockClock(autojump_threshold=0))


@settings(max_examples=60, deadline=None)
@example(endings=["complete", "fail"] * 150, max_retained=100, reads_every=1000)
@given(
    endings=st.lists(st.sampled_from(["complete", "fail", "cancel"]), max_size=300),
    max_retained=st.sampled_from([0, 3, 16, 40, 100]),
    reads_every=st.sampled_from([1, 7, 1000]),
)
def test_retained_records_match_a_model(
    endings: list[str], max_retained: int, reads_every: int
) -> None:
    """Lookups, listings and counts see exactly the newest *max_retained* records,
    however the queue batches its forgetting; memory never holds more than 1/16 extra."""
    slack = 0 if max_retained < 16 else max_retained // 16

    async def fail() -> None:
        raise OSError("no")

    async def main() -> None:
        finished: list[tuple[str, trio_workq.MemoryTaskHandle[None]]] = []
        async with trio_workq.open_work_queue(workers=1, max_retained=max_retained) as queue:
            for number, ending in enumerate(endings, 1):
                if ending == "cancel":
                    handle = await queue.schedule(trio.sleep, 1, delay=5)
                    handle.cancel_nowait()
                else:
                    handle = await queue.submit(noop if ending == "complete" else fail)
                    await handle.wait()
                finished.append((ending, handle))
                assert len(queue._retained) <= max_retained + slack
                if number % reads_every == 0:
                    check(queue, finished)
            check(queue, finished)

    def check(
        queue: trio_workq.WorkQueue, finished: list[tuple[str, trio_workq.MemoryTaskHandle[None]]]
    ) -> None:
        kept = finished[max(0, len(finished) - max_retained) :] if max_retained else []
        stats = queue.statistics_nowait()
        assert stats.retained == len(kept)
        for status, ending in [
            (TaskStatus.COMPLETED, "complete"),
            (TaskStatus.FAILED, "fail"),
            (TaskStatus.CANCELLED, "cancel"),
        ]:
            assert getattr(stats, status.value) == sum(e == ending for e, _ in kept)
            listed = [info.id for info in queue.list_tasks_nowait(status=status, limit=1000).tasks]
            assert listed == [h.id for e, h in reversed(kept) if e == ending]
        for _, handle in finished[: len(finished) - len(kept)]:
            with pytest.raises(trio_workq.TaskNotFound):
                queue.get_handle_nowait(handle.id)
        assert all(queue.get_handle_nowait(h.id) is h for _, h in kept)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def noop() -> None:
    pass


ACTIONS = ["cancel", "retry", "submit", "schedule", "cancel_other", "retry_other"]

rules = st.lists(st.tuples(st.sampled_from(list(trio_workq.EventKind)), st.sampled_from(ACTIONS)))


@settings(max_examples=200, deadline=None)
@given(
    workload=st.lists(
        st.tuples(
            st.sampled_from([0.0, 1.0]), st.integers(0, 2), st.sampled_from([None, 0.0, 2.0])
        ),
        max_size=8,
    ),
    rules=rules,
    workers=st.integers(1, 3),
    buffer=st.integers(0, 2),
    backoff=st.sampled_from([0.0, 1.0]),
    cancel_queued=st.booleans(),
    shutdown_timeout=st.sampled_from([None, 0.0, 0.5]),
)
def test_listeners_acting_on_the_queue_keep_invariants(
    workload: list[tuple[float, int, float | None]],
    rules: list[tuple[trio_workq.EventKind, str]],
    workers: int,
    buffer: int,
    backoff: float,
    cancel_queued: bool,
    shutdown_timeout: float | None,
) -> None:
    """Listeners that cancel, retry, submit or schedule on any event never break the
    bookkeeping: every task is counted once, statistics match the listings, the buffer
    is never overfilled, attempts match runs, and every task ends exactly once."""
    runs: dict[str, int] = {}
    unexpected: list[BaseException] = []
    expected_errors = (
        trio_workq.TaskStateError,
        trio_workq.QueueClosed,
        trio_workq.TaskNotFound,
        trio.WouldBlock,
    )
    policy = trio_workq.RetryPolicy(max_attempts=3, backoff=trio_workq.fixed(backoff))

    async def job(duration: float, fails: int) -> None:
        me = trio_workq.current_task().id
        runs[me] = runs.get(me, 0) + 1
        await trio.sleep(duration)
        if runs[me] <= fails:
            raise OSError("fails")

    def check(queue: trio_workq.WorkQueue) -> None:
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
        assert sum(counts.values()) == stats.submitted
        for status, count in counts.items():
            listed = queue.list_tasks_nowait(status=status, limit=1000).tasks
            assert len(listed) == count, status
            assert all(info.status is status for info in listed)
        listed_all = queue.list_tasks_nowait(limit=1000).tasks
        assert len({info.id for info in listed_all}) == len(listed_all) == stats.submitted
        assert stats.queued <= buffer + workers - stats.busy_workers

    async def main() -> None:
        handles: list[trio_workq.MemoryTaskHandle[None]] = []
        budget = [25]  # listener actions in all: listeners reacting to their own tasks stop
        async with trio_workq.open_work_queue(
            workers=workers, max_buffer_size=buffer, retry=policy
        ) as queue:

            def listener(event: trio_workq.TaskEvent) -> None:
                try:
                    check(queue)
                    for kind, action in rules:
                        if kind is not event.kind or budget[0] <= 0:
                            continue
                        budget[0] -= 1
                        try:
                            if action == "cancel":
                                queue.cancel_nowait(event.task_id)
                            elif action == "retry":
                                queue.retry_nowait(event.task_id)
                            elif action == "submit":
                                handles.append(queue.submit_nowait(job, 0.0, 1))
                            elif action == "schedule":
                                handles.append(queue.schedule_nowait(job, 0.0, 0, delay=0.5))
                            elif action == "cancel_other" and handles:
                                handles[budget[0] % len(handles)].cancel_nowait()
                            elif handles:
                                queue.retry_nowait(handles[budget[0] % len(handles)].id)
                        except expected_errors:
                            pass
                        check(queue)
                except BaseException as exc:
                    unexpected.append(exc)
                    raise

            queue.add_listener(listener)
            for duration, fails, delay in workload:
                if delay is None:
                    handles.append(await queue.submit(job, duration, fails))
                else:
                    handles.append(await queue.schedule(job, duration, fails, delay=delay))
                check(queue)
            await trio.sleep(1.5)
            check(queue)
            await queue.shutdown(shutdown_timeout, cancel_queued=cancel_queued)
            check(queue)

        assert not unexpected
        stats = queue.statistics_nowait()
        assert stats.queued == stats.running == stats.scheduled == stats.retrying == 0
        assert stats.completed + stats.failed + stats.cancelled == stats.submitted == len(handles)
        assert stats.producers_waiting == stats.schedulers_waiting == 0
        for handle in handles:
            info = queue.get_info_nowait(handle.id)
            assert info.status.is_terminal
            assert handle.done
            assert info.attempts == runs.get(handle.id, 0)
            await handle.wait()

    async def bounded() -> None:
        with trio.fail_after(100_000):
            await main()

    trio.run(bounded, clock=trio.testing.MockClock(autojump_threshold=0))
