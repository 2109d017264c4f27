# SPDX-License-Identifier: MIT
"""6a. Retry-heavy workload: every task fails twice, then succeeds."""

from __future__ import annotations

import itertools

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
from ._throughput import BUFFER, THROUGHPUT_COLUMNS, WORKERS, throughput

ATTEMPTS = 3


class Flaky(Exception):
    """Raised by the first two attempts of every task."""


def _task_count(quick: bool) -> int:
    return 1_000 if quick else 50_000


def _workq(quick: bool) -> Metrics:
    tasks = _task_count(quick)
    attempts = [0] * tasks
    tally = itertools.count()
    tick = tally.__next__

    async def flaky(index: int) -> None:
        attempts[index] += 1
        if attempts[index] < ATTEMPTS:
            raise Flaky
        tick()

    policy = trio_workq.RetryPolicy(max_attempts=ATTEMPTS, backoff=trio_workq.fixed(0))

    async def main() -> tuple[Elapsed, trio_workq.QueueStatistics]:
        async with trio_workq.open_work_queue(
            workers=WORKERS, max_buffer_size=BUFFER, retry=policy
        ) as queue:
            submit = queue.submit
            watch = Stopwatch()
            for index in range(tasks):
                await submit(flaky, index)
            await queue.shutdown()  # waits for the retries too
            return watch.elapsed(), queue.statistics_nowait()

    elapsed, stats = trio.run(main)
    check_tally(tally, tasks, "retried tasks")
    check(all(count == ATTEMPTS for count in attempts), "a task did not run exactly 3 times")
    check(
        (stats.completed, stats.failed, stats.cancelled) == (tasks, 0, 0),
        f"queue statistics disagree: {stats}",
    )
    return throughput(tasks, elapsed)


def _trio_raw(quick: bool) -> Metrics:
    """The floor: a channel and 10 workers that retry a failing call in place."""
    tasks = _task_count(quick)
    attempts = [0] * tasks
    tally = itertools.count()
    tick = tally.__next__

    async def flaky(index: int) -> None:
        attempts[index] += 1
        if attempts[index] < ATTEMPTS:
            raise Flaky
        tick()

    async def worker(receive: trio.MemoryReceiveChannel[int]) -> None:
        async for index in receive:
            for _ in range(ATTEMPTS):
                try:
                    await flaky(index)
                except Flaky:
                    continue
                break

    async def main() -> Elapsed:
        send, receive = trio.open_memory_channel[int](BUFFER)
        async with trio.open_nursery() as nursery:
            for _ in range(WORKERS):
                nursery.start_soon(worker, receive)
            await trio.testing.wait_all_tasks_blocked()
            watch = Stopwatch()
            async with send:
                for index in range(tasks):
                    await send.send(index)
        return watch.elapsed()

    elapsed = trio.run(main)
    check_tally(tally, tasks, "retried jobs")
    check(all(count == ATTEMPTS for count in attempts), "a job did not run exactly 3 times")
    return throughput(tasks, elapsed)


COMPARISON = Comparison(
    title="6a. Retry-heavy workload",
    about=(
        "50,000 tasks through `await submit`, 10 workers, buffer 1,000; every task raises "
        "twice, then succeeds, under `RetryPolicy(max_attempts=3, backoff=fixed(0))` "
        "(retries go back through the queue's timers). Raw trio: the worker retries the "
        "call in place. µs per task (three attempts each)."
    ),
    variants=(
        Variant("trio_raw", "raw trio: channel, retry in the worker", _trio_raw),
        Variant("workq", "trio_workq: `RetryPolicy(max_attempts=3, backoff=fixed(0))`", _workq),
    ),
    columns=THROUGHPUT_COLUMNS,
    reference="trio_raw",
    ratio_metric="us_per_task",
    targets=(
        Target(
            "retry-heavy / raw trio", "workq", "us_per_task", "trio_raw", unit="ratio of µs/task"
        ),
    ),
)
