# SPDX-License-Identifier: MIT
"""6b. Mixed priorities: the cost of priority order against one priority and raw trio."""

from __future__ import annotations

import itertools
import random

import trio

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
from ._throughput import BUFFER, THROUGHPUT_COLUMNS, WORKERS, throughput, trio_channel

LEVELS = 10


def _task_count(quick: bool) -> int:
    return 2_000 if quick else 100_000


def _workq(tasks: int, *, mixed: bool) -> Metrics:
    rng = random.Random(12345)
    priorities = [rng.randrange(LEVELS) if mixed else 0 for _ in range(tasks)]
    tally = itertools.count()
    tick = tally.__next__

    async def noop() -> None:
        tick()

    async def main() -> tuple[Elapsed, trio_workq.QueueStatistics]:
        async with trio_workq.open_work_queue(workers=WORKERS, max_buffer_size=BUFFER) as queue:
            submit = queue.submit
            watch = Stopwatch()
            for priority in priorities:
                await submit(noop, priority=priority)
            await queue.shutdown()
            return watch.elapsed(), queue.statistics_nowait()

    elapsed, stats = trio.run(main)
    check_tally(tally, tasks, "prioritised tasks")
    check(
        (stats.completed, stats.failed, stats.cancelled) == (tasks, 0, 0),
        f"queue statistics disagree: {stats}",
    )
    return throughput(tasks, elapsed)


def _mixed(quick: bool) -> Metrics:
    return _workq(_task_count(quick), mixed=True)


def _single(quick: bool) -> Metrics:
    return _workq(_task_count(quick), mixed=False)


def _trio_raw(quick: bool) -> Metrics:
    return trio_channel(_task_count(quick))


COMPARISON = Comparison(
    title="6b. Mixed priorities",
    about=(
        "100,000 no-op tasks through `await submit(noop, priority=p)`, 10 workers, buffer "
        "1,000, p drawn uniformly from 10 levels (seeded), against the same with one "
        "priority and against raw trio (which has no priorities: the floor)."
    ),
    variants=(
        Variant("trio_raw", "raw trio: memory channel (FIFO only)", _trio_raw),
        Variant("workq_single", "trio_workq: one priority", _single),
        Variant("workq_mixed", "trio_workq: 10 priority levels, mixed", _mixed),
    ),
    columns=THROUGHPUT_COLUMNS,
    reference="trio_raw",
    ratio_metric="us_per_task",
    targets=(
        Target(
            "mixed priorities / one priority",
            "workq_mixed",
            "us_per_task",
            "workq_single",
            unit="ratio of µs/task",
        ),
        Target(
            "mixed priorities / raw trio",
            "workq_mixed",
            "us_per_task",
            "trio_raw",
            unit="ratio of µs/task",
        ),
    ),
)
