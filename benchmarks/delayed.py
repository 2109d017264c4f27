# SPDX-License-Identifier: MIT
"""4. Delayed tasks: 100,000 ``schedule_nowait`` calls due over 2 s, and how late they start."""

from __future__ import annotations

import itertools
import math
import random
from time import perf_counter

import trio

import trio_workq

from ._core import (
    CheckFailed,
    Column,
    Comparison,
    Metrics,
    Target,
    Variant,
    check,
    check_tally,
    percentile,
)

WORKERS = 10


def _workq(quick: bool) -> Metrics:
    tasks, spread, offset = (2_000, 0.2, 0.1) if quick else (100_000, 2.0, 1.0)
    rng = random.Random(12345)
    delays = [offset + rng.uniform(0.0, spread) for _ in range(tasks)]
    tally = itertools.count()
    tick = tally.__next__

    async def job() -> None:
        tick()

    async def main() -> tuple[float, list[trio_workq.TaskInfo]]:
        async with trio_workq.open_work_queue(
            workers=WORKERS, max_retained=math.inf, retention=None
        ) as queue:
            schedule_nowait = queue.schedule_nowait
            start = perf_counter()
            handles = [schedule_nowait(job, delay=delay) for delay in delays]
            elapsed = perf_counter() - start
            # Sleep past the last due time rather than wait on each handle, which
            # would wake this task once per finished task while lateness is measured.
            await trio.sleep(max(delays))
            for handle in handles:
                await handle.wait()
            return elapsed, [handle.info_nowait() for handle in handles]

    elapsed, infos = trio.run(main)
    check_tally(tally, tasks, "delayed tasks")
    lateness: list[float] = []
    for info, delay in zip(infos, delays, strict=True):
        check(info.status is trio_workq.TaskStatus.COMPLETED, f"task ended {info.status}")
        if info.started_at is None:
            raise CheckFailed(f"a completed task has no start time: {info}")
        # due = creation + delay, both read from the queue's trio clock at schedule time;
        # started_at is its trio clock at the start. The wall-clock conversion cancels out.
        lateness.append((info.started_at - info.created_at).total_seconds() - delay)
    lateness.sort()
    # datetimes have microsecond resolution; anything earlier than that started too early
    check(lateness[0] > -5e-6, f"a task started {-lateness[0] * 1e3:.3f} ms before it was due")
    return {
        "tasks": tasks,
        "schedule_us_per_task": elapsed / tasks * 1e6,
        "late_median_ms": percentile(lateness, 0.5) * 1e3,
        "late_p99_ms": percentile(lateness, 0.99) * 1e3,
        "late_max_ms": lateness[-1] * 1e3,
    }


COMPARISON = Comparison(
    title="4. Delayed tasks",
    about=(
        "100,000 `queue.schedule_nowait(job, delay=d)` calls, d uniform over 2 s starting 1 s "
        "out, 10 workers. Scheduling = the `schedule_nowait` loop; lateness = the task's "
        "start - its due time, both on trio's clock (`TaskInfo.started_at` - "
        "(`created_at` + d))."
    ),
    variants=(Variant("workq", "trio_workq: `schedule_nowait`", _workq),),
    columns=(
        Column("schedule_us_per_task", "schedule µs/task"),
        Column("late_median_ms", "late median ms"),
        Column("late_p99_ms", "late p99 ms"),
        Column("late_max_ms", "late max ms"),
    ),
    targets=(
        Target("schedule_nowait", "workq", "schedule_us_per_task", limit=1.5, unit="µs/task"),
        Target("start lateness p99", "workq", "late_p99_ms", limit=2.0, unit="ms"),
    ),
)
