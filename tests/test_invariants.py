# SPDX-License-Identifier: MIT
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
        handles: list[trio_workq.TaskHandle[int]] = []
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
                    assert queue.statistics().running <= workers
            stats = queue.statistics()

        assert peak <= workers
        assert stats.queued == stats.running == stats.scheduled == stats.retrying == 0
        assert stats.completed + stats.failed + stats.cancelled == stats.submitted == len(workload)
        for index, (spec, handle) in enumerate(zip(workload, handles, strict=True)):
            info = queue.get_info(handle.id)
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

    async def cancel_later(handle: trio_workq.TaskHandle[int], after: float) -> None:
        await trio.sleep(after)
        handle.cancel()

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
        finished: list[tuple[str, trio_workq.TaskHandle[None]]] = []
        async with trio_workq.open_work_queue(workers=1, max_retained=max_retained) as queue:
            for number, ending in enumerate(endings, 1):
                if ending == "cancel":
                    handle = await queue.schedule(trio.sleep, 1, delay=5)
                    handle.cancel()
                else:
                    handle = await queue.submit(noop if ending == "complete" else fail)
                    await handle.wait()
                finished.append((ending, handle))
                assert len(queue._retained) <= max_retained + slack
                if number % reads_every == 0:
                    check(queue, finished)
            check(queue, finished)

    def check(
        queue: trio_workq.WorkQueue, finished: list[tuple[str, trio_workq.TaskHandle[None]]]
    ) -> None:
        kept = finished[max(0, len(finished) - max_retained) :] if max_retained else []
        stats = queue.statistics()
        assert stats.retained == len(kept)
        for status, ending in [
            (TaskStatus.COMPLETED, "complete"),
            (TaskStatus.FAILED, "fail"),
            (TaskStatus.CANCELLED, "cancel"),
        ]:
            assert getattr(stats, status.value) == sum(e == ending for e, _ in finished)
            listed = [info.id for info in queue.list_tasks(status=status, limit=1000).tasks]
            assert listed == [h.id for e, h in reversed(kept) if e == ending]
        for _, handle in finished[: len(finished) - len(kept)]:
            with pytest.raises(trio_workq.TaskNotFound):
                queue.get_handle(handle.id)
        assert all(queue.get_handle(h.id) is h for _, h in kept)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def noop() -> None:
    pass
