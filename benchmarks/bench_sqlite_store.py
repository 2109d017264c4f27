# SPDX-License-Identifier: MIT
# White-box: reads SQLiteStore's private operation and commit counters (ops per commit).
# pyright: reportPrivateUsage=false
"""Store-level microbenchmark of `SQLiteStore`'s group commit.

Usage: ``python benchmarks/bench_sqlite_store.py [--tasks N] [--sync NORMAL,FULL] [--dir DIR]``

Each measurement uses a fresh database file in *DIR* (default: a temporary
directory; put it on the disk you want to measure) and reports operations
(or tasks) per second and how many operations shared each commit:

* ``add single``: C concurrent callers, each ``add([task])`` in a loop.
* ``add batch 100``: one caller, ``add(100 tasks)`` per call.
* ``claim limit 10``: C concurrent callers ``claim(limit=10)`` until the
  prefilled store is empty (tasks/s).
* ``complete``: C concurrent callers complete claimed tasks (ops/s).
* ``get``: C concurrent readers (reads share the writer thread).
* ``pipeline``: what a durable queue does: 10 producers ``add`` one task
  at a time while one fetcher claims for 10 workers that ``complete``
  each task (tasks/s from first add to last completion).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable

import trio

from trio_workq._core.status import TaskStatus
from trio_workq._stores.protocol import NewTask
from trio_workq._stores.sqlite import SQLiteStore

OWNER = "bench"
LEASE = 300.0


def _task(due_at: float) -> NewTask:
    return NewTask("noop", b"[[], {}]", 0, due_at, 1, None, TaskStatus.QUEUED)


async def _concurrently(callers: int, count: int, op: Callable[[int], Awaitable[None]]) -> None:
    """Run *op(i)* for i in range(count) on *callers* concurrent tasks."""

    async def caller(start: int) -> None:
        for i in range(start, count, callers):
            await op(i)

    async with trio.open_nursery() as nursery:
        for start in range(callers):
            nursery.start_soon(caller, start)


async def _prefill(store: SQLiteStore, count: int) -> list[str]:
    ids: list[str] = []
    now = time.time()
    for start in range(0, count, 1000):
        ids += await store.add([_task(now) for _ in range(min(1000, count - start))])
    return ids


async def _claim_all(store: SQLiteStore, count: int) -> list[tuple[str, int]]:
    held: list[tuple[str, int]] = []
    while len(held) < count:
        claimed = await store.claim(OWNER, 1000, LEASE)
        held += [(task.id, task.attempts) for task in claimed.tasks]
    return held


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"check failed: {message}")


async def _measure(
    path: str, sync: str, name: str, tasks: int, callers: int
) -> tuple[float, float, float, int]:
    """One measurement: (per second, CPU µs per unit (both threads), ops per commit, commits)."""
    store = SQLiteStore(path, synchronous=sync)  # path: a fresh file
    await store.open()
    try:
        if name == "add single":
            now = time.time()

            async def add_one(i: int) -> None:
                await store.add([_task(now)])

            start = (time.perf_counter(), time.process_time(), store._ops, store._commits)
            await _concurrently(callers, tasks, add_one)
            done = tasks
        elif name == "add batch 100":
            now = time.time()
            batch = [_task(now) for _ in range(100)]

            async def add_batch(i: int) -> None:
                await store.add(batch)

            start = (time.perf_counter(), time.process_time(), store._ops, store._commits)
            await _concurrently(callers, tasks // 100, add_batch)
            done = tasks // 100 * 100
        elif name == "claim limit 10":
            await _prefill(store, tasks)
            claimed: list[str] = []

            async def claimer() -> None:
                while True:
                    got = await store.claim(OWNER, 10, LEASE)
                    if not got.tasks:
                        return
                    claimed.extend(task.id for task in got.tasks)

            start = (time.perf_counter(), time.process_time(), store._ops, store._commits)
            async with trio.open_nursery() as nursery:
                for _ in range(callers):
                    nursery.start_soon(claimer)
            _check(len(set(claimed)) == len(claimed) == tasks, "every task claimed once")
            done = tasks
        elif name == "complete":
            await _prefill(store, tasks)
            held = await _claim_all(store, tasks)

            async def complete(i: int) -> None:
                task_id, attempt = held[i]
                _check(await store.complete(OWNER, task_id, attempt, b"null"), "completed")

            start = (time.perf_counter(), time.process_time(), store._ops, store._commits)
            await _concurrently(callers, tasks, complete)
            done = tasks
        elif name == "get":
            ids = await _prefill(store, tasks)

            async def get(i: int) -> None:
                _check(await store.get(ids[i]) is not None, "found")

            start = (time.perf_counter(), time.process_time(), store._ops, store._commits)
            await _concurrently(callers, tasks, get)
            done = tasks
        else:
            start = (time.perf_counter(), time.process_time(), store._ops, store._commits)
            await _pipeline(store, tasks, workers=callers)
            done = tasks
        elapsed = time.perf_counter() - start[0]
        cpu = time.process_time() - start[1]
        ops = store._ops - start[2]
        commits = store._commits - start[3]
    finally:
        await store.aclose()
    return done / elapsed, cpu / done * 1e6, ops / max(commits, 1), commits


async def _pipeline(store: SQLiteStore, tasks: int, *, workers: int) -> None:
    """10 producers add one at a time; one fetcher claims for idle workers; workers complete."""
    producers = 10
    send, receive = trio.open_memory_channel[tuple[str, int]](workers)
    finished = 0
    all_done = trio.Event()

    async def produce(i: int) -> None:
        await store.add([_task(time.time())])

    async def fetcher() -> None:
        async with send:
            while True:
                claimed = await store.claim(OWNER, workers, LEASE)
                for task in claimed.tasks:
                    await send.send((task.id, task.attempts))
                if not claimed.tasks:
                    await store.wait_for_work(0.01)

    async def worker() -> None:
        nonlocal finished
        async for task_id, attempt in receive:
            _check(await store.complete(OWNER, task_id, attempt, b"null"), "completed")
            finished += 1
            if finished == tasks:
                all_done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fetcher)
        for _ in range(workers):
            nursery.start_soon(worker)
        await _concurrently(producers, tasks, produce)
        await all_done.wait()
        nursery.cancel_scope.cancel()


MEASUREMENTS: tuple[tuple[str, int], ...] = (
    # (name, concurrent callers)
    ("add single", 1),
    ("add single", 10),
    ("add single", 100),
    ("add batch 100", 1),
    ("claim limit 10", 1),
    ("claim limit 10", 10),
    ("complete", 10),
    ("complete", 100),
    ("get", 1),
    ("get", 10),
    ("pipeline", 10),
)


def measure(
    sync: str, name: str, callers: int, tasks: int, directory: str | None = None
) -> dict[str, float]:
    """One run of measurement *name* (see `MEASUREMENTS`) on a fresh file.

    The file lives in a new temporary directory inside *directory*. Returns
    ``per_second`` (operations, or tasks for claim and pipeline), ``cpu_us``
    (the process's CPU time, both threads, per operation or task) and
    ``ops_per_commit`` (NaN for the read-only ``get``): the metrics a runner
    comparison can report.
    """
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        path = os.path.join(scratch, "bench.db")
        rate, cpu, shared, commits = trio.run(_measure, path, sync, name, tasks, callers)
    return {
        "per_second": rate,
        "cpu_us": cpu,
        "ops_per_commit": shared if commits else math.nan,
    }


def main(argv: list[str] | None = None) -> None:
    """Run every measurement for each *synchronous* setting and print a table.

    Each measurement runs *repeat* times on a fresh file; the table shows the
    median and the range. ``ops/commit`` is the median number of operations
    that shared one commit (reads commit nothing); ``CPU µs`` the median CPU
    time of the whole process (trio and writer thread) per operation or task,
    which a busy machine distorts less than the rate.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=20_000, help="tasks per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement")
    parser.add_argument("--sync", default="NORMAL,FULL", help="synchronous settings to measure")
    parser.add_argument("--dir", default=None, help="directory for the database files")
    args = parser.parse_args(argv)
    print(
        f"SQLite {trio_sqlite_version()}, Python {sys.version.split()[0]},"
        f" {args.tasks:,} tasks per run, {args.repeat} runs each (median, min-max),"
        f" in {args.dir or tempfile.gettempdir()}"
    )
    print(
        f"{'sync':6} {'measurement':16} {'callers':>7} {'per second':>11} {'min-max':>17}"
        f" {'CPU µs':>7} {'ops/commit':>10}"
    )
    for sync in args.sync.split(","):
        for name, callers in MEASUREMENTS:
            rates: list[float] = []
            cpu: list[float] = []
            per_commit: list[float] = []
            for _ in range(args.repeat):
                metrics = measure(sync, name, callers, args.tasks, args.dir)
                rates.append(metrics["per_second"])
                cpu.append(metrics["cpu_us"])
                per_commit.append(metrics["ops_per_commit"])
            spread = f"{min(rates):,.0f}-{max(rates):,.0f}"
            shared = statistics.median(per_commit)
            shared_text = "-" if math.isnan(shared) else f"{shared:.1f}"
            print(
                f"{sync:6} {name:16} {callers:7d} {statistics.median(rates):11,.0f}"
                f" {spread:>17} {statistics.median(cpu):7.1f} {shared_text:>10}"
            )
            sys.stdout.flush()


def trio_sqlite_version() -> str:
    import sqlite3

    return sqlite3.sqlite_version


if __name__ == "__main__":
    main()
