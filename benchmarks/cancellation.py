# SPDX-License-Identifier: MIT
"""6c. Cancellation-heavy workload: cancel every other queued task."""

from __future__ import annotations

import itertools
import math

import trio
import trio.testing

import trio_workq

from ._core import (
    Comparison,
    Elapsed,
    Metrics,
    Stopwatch,
    Target,
    Variant,
    check,
    check_tally,
)
from ._throughput import THROUGHPUT_COLUMNS, WORKERS, throughput


def _task_count(quick: bool) -> int:
    return 2_000 if quick else 100_000


def _workq(quick: bool) -> Metrics:
    tasks = _task_count(quick)
    tally = itertools.count()
    tick = tally.__next__

    async def noop() -> None:
        tick()

    async def main() -> tuple[Elapsed, int, trio_workq.QueueStatistics]:
        async with trio_workq.open_work_queue(workers=WORKERS, max_buffer_size=math.inf) as queue:
            submit_nowait = queue.submit_nowait
            watch = Stopwatch()
            # No checkpoint until shutdown(): every task is still queued when cancelled.
            handles = [submit_nowait(noop) for _ in range(tasks)]
            cancelled = sum(handle.cancel_nowait() for handle in handles[::2])
            await queue.shutdown()
            return watch.elapsed(), cancelled, queue.statistics_nowait()

    elapsed, cancelled, stats = trio.run(main)
    half = tasks // 2
    check(cancelled == half, f"cancel() returned True {cancelled} times, not {half}")
    check_tally(tally, tasks - half, "tasks left uncancelled")
    check(
        (stats.completed, stats.cancelled, stats.failed) == (tasks - half, half, 0),
        f"queue statistics disagree: {stats}",
    )
    return throughput(tasks, elapsed)


class _Job:
    """Raw trio's cancellable work item: the worker skips it once flagged."""

    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False


def _trio_raw(quick: bool) -> Metrics:
    tasks = _task_count(quick)
    tally = itertools.count()
    tick = tally.__next__

    async def noop() -> None:
        tick()

    async def worker(receive: trio.MemoryReceiveChannel[_Job]) -> None:
        async for job in receive:
            if not job.cancelled:
                await noop()

    async def main() -> Elapsed:
        send, receive = trio.open_memory_channel[_Job](math.inf)
        async with trio.open_nursery() as nursery:
            for _ in range(WORKERS):
                nursery.start_soon(worker, receive)
            await trio.testing.wait_all_tasks_blocked()
            watch = Stopwatch()
            async with send:
                jobs: list[_Job] = []
                for _ in range(tasks):
                    job = _Job()
                    send.send_nowait(job)
                    jobs.append(job)
                for job in jobs[::2]:
                    job.cancelled = True
        return watch.elapsed()

    elapsed = trio.run(main)
    check_tally(tally, tasks - tasks // 2, "jobs left uncancelled")
    return throughput(tasks, elapsed)


COMPARISON = Comparison(
    title="6c. Cancellation-heavy workload",
    about=(
        "100,000 no-op tasks queued with `submit_nowait` (unbounded buffer, 10 workers), "
        "every other one cancelled with `handle.cancel_nowait()` while still queued, then "
        "`await queue.shutdown()` runs the rest. Raw trio: work items with a cancelled flag "
        "that the workers skip. µs per submitted task."
    ),
    variants=(
        Variant("trio_raw", "raw trio: channel of flagged items", _trio_raw),
        Variant("workq", "trio_workq: `handle.cancel_nowait()` on every other queued task", _workq),
    ),
    columns=THROUGHPUT_COLUMNS,
    reference="trio_raw",
    ratio_metric="us_per_task",
    targets=(
        Target(
            "cancellation-heavy / raw trio",
            "workq",
            "us_per_task",
            "trio_raw",
            unit="ratio of µs/task",
        ),
    ),
)
