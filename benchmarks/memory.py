# SPDX-License-Identifier: MIT
"""5. Memory: bytes per queued task at 1,000,000 queued, and per retained finished record."""

from __future__ import annotations

import gc
import math
import os
import tracemalloc
from collections.abc import Callable
from time import perf_counter

import trio
import trio.testing

import trio_workq

from ._core import Column, Comparison, Metrics, Target, Variant, check

WARMUP = 1_000


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _traced_bytes() -> int:
    return tracemalloc.get_traced_memory()[0]


async def noop() -> None:
    pass


def _measure(quick: bool, method: str) -> Metrics:
    """One queue, one worker held busy; *tasks* no-op tasks queued behind it, then run.

    Queued = memory after the submissions - before; retained = memory once all
    have finished (records kept: ``max_retained=inf``) - the same baseline.
    The benchmark keeps no handle but the last, so what was allocated is the
    queue's: handles (the records), its id index, its ready set, its
    finished-records deque.
    """
    tasks = 5_000 if quick else 1_000_000
    measure: Callable[[], int] = _traced_bytes if method == "tracemalloc" else _rss_bytes

    async def main() -> Metrics:
        async with trio_workq.open_work_queue(
            workers=1, max_buffer_size=math.inf, max_retained=math.inf, retention=None
        ) as queue:
            # Warm up the code paths and the allocator's arenas.
            for _ in range(WARMUP - 1):
                queue.submit_nowait(noop)
            await queue.submit_nowait(noop).wait()
            gate = trio.Event()
            await queue.submit(gate.wait)
            await trio.testing.wait_all_tasks_blocked()  # the only worker waits on the gate
            check(queue.statistics_nowait().running == 1, "the worker is not held by the gate task")

            if method == "tracemalloc":
                tracemalloc.start()
            gc.collect()
            before = measure()
            submit_nowait = queue.submit_nowait
            start = perf_counter()
            for _ in range(tasks - 1):
                submit_nowait(noop)
            last = submit_nowait(noop)
            elapsed = perf_counter() - start
            queued = measure() - before
            stats = queue.statistics_nowait()
            check(stats.queued == tasks, f"{stats.queued} of {tasks} tasks queued")

            gate.set()
            await last.wait()  # one worker, FIFO: every task before it has finished too
            gc.collect()
            retained = measure() - before
            if method == "tracemalloc":
                tracemalloc.stop()
            stats = queue.statistics_nowait()
            total = tasks + WARMUP + 1
            check(
                (stats.completed, stats.retained, stats.queued) == (total, total, 0),
                f"not all tasks completed and retained: {stats}",
            )
        return {
            "tasks": tasks,
            "queued_bytes_per_task": queued / tasks,
            "retained_bytes_per_task": retained / tasks,
            "submit_nowait_us_per_task": elapsed / tasks * 1e6,
        }

    return trio.run(main)


def _tracemalloc(quick: bool) -> Metrics:
    return _measure(quick, "tracemalloc")


def _rss(quick: bool) -> Metrics:
    return _measure(quick, "rss")


COMPARISON = Comparison(
    title="5. Memory per task",
    about=(
        "1,000,000 no-op tasks queued behind a busy single worker (`max_buffer_size=inf`), "
        "then run to completion with every record retained (`max_retained=inf`, "
        "`retention=None`). Bytes per task against a baseline taken just before the "
        "submissions: by tracemalloc (live Python allocations, the honest number; "
        "its submit µs include tracemalloc's overhead) and by resident set size (includes "
        "memory freed but not returned to the OS). One repetition: allocation counts do not "
        "vary between runs."
    ),
    variants=(
        Variant("tracemalloc", "trio_workq, measured by tracemalloc", _tracemalloc),
        Variant("rss", "trio_workq, measured by RSS", _rss),
    ),
    columns=(
        Column("queued_bytes_per_task", "bytes per queued task", 1),
        Column("retained_bytes_per_task", "bytes per retained finished record", 1),
        Column("submit_nowait_us_per_task", "submit_nowait µs/task", 2),
    ),
    targets=(
        Target(
            "queued task (tracemalloc)",
            "tracemalloc",
            "queued_bytes_per_task",
            limit=300,
            unit="bytes",
        ),
        Target(
            "retained finished record (tracemalloc)",
            "tracemalloc",
            "retained_bytes_per_task",
            limit=400,
            unit="bytes",
        ),
        Target("queued task (RSS)", "rss", "queued_bytes_per_task", unit="bytes"),
        Target("retained finished record (RSS)", "rss", "retained_bytes_per_task", unit="bytes"),
    ),
    # Allocation counts do not depend on the machine's load: one repetition is exact
    # (and the 1,000,000-task runs are the suite's longest).
    max_reps=1,
)
