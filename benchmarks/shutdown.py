# SPDX-License-Identifier: MIT
"""6d. ``shutdown(cancel_queued=True)`` with 10,000 tasks queued."""

from __future__ import annotations

import itertools
import math
from time import perf_counter

import trio

import trio_workq

from ._core import Column, Comparison, Metrics, Target, Variant, check, check_tally
from ._throughput import WORKERS


def _workq(quick: bool) -> Metrics:
    tasks = 1_000 if quick else 10_000
    tally = itertools.count()
    tick = tally.__next__

    async def noop() -> None:
        tick()

    async def main() -> tuple[float, trio_workq.QueueStatistics]:
        async with trio_workq.open_work_queue(workers=WORKERS, max_buffer_size=math.inf) as queue:
            for _ in range(tasks):
                queue.submit_nowait(noop)
            # No checkpoint since the submissions: all of them are still queued.
            start = perf_counter()
            await queue.shutdown(cancel_queued=True)
            return perf_counter() - start, queue.statistics_nowait()

    elapsed, stats = trio.run(main)
    check_tally(tally, 0, "tasks that should have been cancelled")
    check(
        (stats.cancelled, stats.completed, stats.queued) == (tasks, 0, 0),
        f"queue statistics disagree: {stats}",
    )
    return {"tasks": tasks, "elapsed_ms": elapsed * 1e3, "us_per_task": elapsed / tasks * 1e6}


COMPARISON = Comparison(
    title="6d. Shutdown with 10,000 queued tasks",
    about=(
        "10,000 tasks queued with `submit_nowait` (10 idle workers, no checkpoint in between), "
        "then `await queue.shutdown(cancel_queued=True)` is timed until it returns: every "
        "task ends `cancelled` and the workers exit. Raw trio has no equivalent (closing a "
        "channel just drops its items)."
    ),
    variants=(Variant("workq", "trio_workq: `shutdown(cancel_queued=True)`", _workq),),
    columns=(Column("elapsed_ms", "shutdown ms"), Column("us_per_task", "µs/task")),
    targets=(Target("shutdown, per queued task", "workq", "us_per_task", unit="µs/task"),),
)
