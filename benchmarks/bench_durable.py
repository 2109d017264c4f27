# SPDX-License-Identifier: MIT
# White-box: reads SQLiteStore's private operation and commit counters (ops per commit).
# pyright: reportPrivateUsage=false
"""End-to-end throughput of the durable queue on SQLite: submit → complete.

Usage: ``python benchmarks/bench_durable.py [--tasks N] [--workers W] [--sync NORMAL,FULL]
[--submit concurrent,batch] [--dir DIR]``

Each measurement opens a fresh database file (in *DIR*, default a temporary
directory: put it on the disk you want to measure), opens a durable queue
with W workers on it, submits N no-op tasks and waits until every one has
completed in the store. The time runs from the first submit to the last
completion; the queue runs the tasks while they are being submitted.

Submit modes:

* ``concurrent``: 100 producer tasks each ``await queue.submit(noop)`` in a
  loop (the store group-commits their concurrent adds);
* ``batch``: one producer, ``await queue.submit_many(noop, ...)`` with 1,000
  tasks per call.

At the end the store is checked: N tasks, all ``completed``, each with one
attempt (the script exits non-zero otherwise).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import trio

import trio_workq
from trio_workq._durable.queue import open_durable_queue
from trio_workq._stores.sqlite import SQLiteStore

PRODUCERS = 100
BATCH = 1000


@trio_workq.task(name="bench.noop")
async def noop() -> None:
    """The benchmark's task: nothing at all."""


def _remove_database(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


async def _measure(path: str, sync: str, mode: str, tasks: int, workers: int) -> dict[str, float]:
    _remove_database(path)
    store = SQLiteStore(path, synchronous=sync)
    completed = 0
    all_done = trio.Event()

    def count(event: trio_workq.TaskEvent) -> None:
        nonlocal completed
        if event.kind is trio_workq.EventKind.COMPLETED:
            completed += 1
            if completed == tasks:
                all_done.set()

    async with open_durable_queue(store=store, workers=workers, lease=60) as queue:
        queue.add_listener(count)
        cpu_start = time.process_time()
        start = time.perf_counter()
        if mode == "concurrent":

            async def produce(share: int) -> None:
                for _ in range(share):
                    await queue.submit(noop)

            async with trio.open_nursery() as nursery:
                for index in range(PRODUCERS):
                    nursery.start_soon(produce, tasks // PRODUCERS + (index < tasks % PRODUCERS))
        else:
            for first in range(0, tasks, BATCH):
                await queue.submit_many(noop, [()] * min(BATCH, tasks - first))
        submitted = time.perf_counter()
        await all_done.wait()
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        counts = await store.counts()
    if counts[trio_workq.TaskStatus.COMPLETED] != tasks or sum(counts.values()) != tasks:
        raise SystemExit(f"check failed: expected {tasks} completed tasks, store has {counts}")
    return {
        "tasks_per_s": tasks / elapsed,
        "submit_s": submitted - start,
        "elapsed_s": elapsed,
        "cpu_us_per_task": cpu / tasks * 1e6,
        "ops_per_commit": store._ops / max(store._commits, 1),
    }


def main(argv: list[str] | None = None) -> None:
    """Run each (synchronous, submit mode) measurement and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=200_000, help="tasks per measurement")
    parser.add_argument("--workers", type=int, default=10, help="workers of the queue")
    parser.add_argument("--sync", default="NORMAL,FULL", help="synchronous settings to measure")
    parser.add_argument("--submit", default="concurrent,batch", help="submit modes to measure")
    parser.add_argument("--dir", default=None, help="directory for the database files")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        path = os.path.join(directory, "durable.db")
        print(f"{args.tasks:,} no-op tasks, {args.workers} workers, database in {directory}")
        header = (
            f"{'sync':6} {'submit':10} {'tasks/s':>9} {'elapsed s':>9} {'submit s':>8}"
            f" {'CPU us/task':>11} {'ops/commit':>10}"
        )
        print(header)
        for sync in args.sync.split(","):
            for mode in args.submit.split(","):
                if mode not in ("concurrent", "batch"):
                    raise SystemExit(f"unknown submit mode {mode!r}")
                result = trio.run(_measure, path, sync, mode, args.tasks, args.workers)
                print(
                    f"{sync:6} {mode:10} {result['tasks_per_s']:9,.0f}"
                    f" {result['elapsed_s']:9.2f} {result['submit_s']:8.2f}"
                    f" {result['cpu_us_per_task']:11.1f} {result['ops_per_commit']:10.1f}"
                )
                sys.stdout.flush()


if __name__ == "__main__":
    main()
