# SPDX-License-Identifier: MIT
"""The CPython floor under ``schedule_nowait``: what any scheduled task with a handle costs.

Usage: ``python benchmarks/floor_schedule.py [--tasks N] [--reps R]``

Each variant does, per task, only what a delayed task with a handle cannot
avoid: create one object with the handle's 24 slots, register it in a dict by
sequence number, and push ``(due, seq, handle)`` onto a heap. No validation,
no status index, no events, no method call. Alternated with and without the
garbage collector (the handle and the heap entry are tracked objects, so a
burst of schedules triggers collections over a growing heap), and next to
``WorkQueue.schedule_nowait`` itself. Prints µs per task, median of R runs.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import statistics
import time
from typing import Any

import trio

import trio_workq

SLOTS = 24  # as many as TaskHandle has


class _Handle:
    __slots__ = tuple(f"field{i}" for i in range(SLOTS))
    field0: float
    field1: None
    field2: None
    field3: None
    field4: None
    field5: None
    field6: None
    field7: None
    field8: None
    field9: None
    field10: None
    field11: None
    field12: None
    field13: None
    field14: None
    field15: None
    field16: None
    field17: None
    field18: None
    field19: None
    field20: None
    field21: None
    field22: None
    field23: None

    def __init__(self, due: float) -> None:
        # One assignment per slot, as TaskHandle.__init__ does.
        self.field0 = due
        self.field1 = None
        self.field2 = None
        self.field3 = None
        self.field4 = None
        self.field5 = None
        self.field6 = None
        self.field7 = None
        self.field8 = None
        self.field9 = None
        self.field10 = None
        self.field11 = None
        self.field12 = None
        self.field13 = None
        self.field14 = None
        self.field15 = None
        self.field16 = None
        self.field17 = None
        self.field18 = None
        self.field19 = None
        self.field20 = None
        self.field21 = None
        self.field22 = None
        self.field23 = None


def _floor(tasks: int, collect: bool) -> float:
    heap: list[tuple[float, int, Any]] = []
    registry: dict[int, Any] = {}
    handle_class = _Handle
    push = heapq.heappush
    if not collect:
        gc.disable()
    try:
        start = time.perf_counter()
        for seq in range(tasks):
            due = 1000.0 + seq * 1e-5
            handle = handle_class(due)
            registry[seq] = handle
            push(heap, (due, seq, handle))
        return (time.perf_counter() - start) / tasks * 1e6
    finally:
        gc.enable()


async def _noop() -> None:
    pass


def _schedule_nowait(tasks: int) -> float:
    async def main() -> float:
        async with trio_workq.open_work_queue(workers=1) as queue:
            schedule_nowait = queue.schedule_nowait
            start = time.perf_counter()
            handles = [schedule_nowait(_noop, delay=1000.0 + i * 1e-5) for i in range(tasks)]
            elapsed = time.perf_counter() - start
            for handle in handles:
                handle.cancel_nowait()
            return elapsed / tasks * 1e6

    return trio.run(main)


def main(argv: list[str] | None = None) -> None:
    """Alternate the variants R times and print their medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    results: dict[str, list[float]] = {"floor, gc on": [], "floor, gc off": [], "schedule": []}
    for _ in range(args.reps):
        results["floor, gc on"].append(_floor(args.tasks, collect=True))
        results["floor, gc off"].append(_floor(args.tasks, collect=False))
        results["schedule"].append(_schedule_nowait(args.tasks))
    for name, values in results.items():
        print(f"{name:15} {statistics.median(values):6.3f} µs/task  (runs: {values})")


if __name__ == "__main__":
    main()
