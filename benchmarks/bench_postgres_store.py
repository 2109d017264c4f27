# SPDX-License-Identifier: MIT
"""Microbenchmark of `PostgresStore`: add / claim / complete throughput and NOTIFY latency.

Usage::

    python benchmarks/bench_postgres_store.py [--url URL] [-n N] [--samples S] [--quick]

Each measurement runs in a fresh schema (dropped afterwards) of the database
at ``--url`` (default ``$TRIO_WORKQ_TEST_PG_URL`` or the local test server).

* ``add``: N tasks, one task per call, from 1 and 4 concurrent trio callers
  (overlapping adds share a statement), and in calls of 100 tasks.
* ``claim``: N queued tasks claimed one per call by 1 and 4 callers, and 32 per call.
* ``complete``: N running tasks completed by 1 and 4 callers, and by 64
  callers at once (what a pool of busy workers does).
* ``cycle``: claimed-and-completed tasks per second for one process running
  64 worker slots (claim up to the idle slots, complete concurrently), then
  with 2 such processes on the same schema.
* ``notify``: a trio task waiting in ``wait_for_work`` on one store; median
  and p99 from just before another store's ``add`` of one task until the
  waiter wakes (so the add's commit, a WAL flush, is included), and from a
  bare ``NOTIFY`` sent on a plain connection (the listener's own latency).

Commits wait for a WAL flush, so the numbers depend on the disk. To see the
cost without it, add ``?options=-c%20synchronous_commit%3Doff`` to the URL.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

import psycopg
import trio
from psycopg import sql

from trio_workq._core.status import TaskStatus
from trio_workq._stores.postgres import PostgresStore
from trio_workq._stores.protocol import NewTask

DEFAULT_URL = os.environ.get("TRIO_WORKQ_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def task(name: str = "noop") -> NewTask:
    return NewTask(name, b"[]", 0, time.time(), 1, None, TaskStatus.QUEUED)


def drop_schema(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


async def fresh_store(url: str, *, prefill: int = 0, claimed: int = 0) -> PostgresStore:
    store = PostgresStore(url, schema=f"bench_{uuid.uuid4().hex[:10]}")
    await store.open()
    for start in range(0, prefill, 5000):
        await store.add([task() for _ in range(min(5000, prefill - start))])
    while claimed > 0:
        claimed -= len((await store.claim("bench", min(claimed, 1000), 600.0)).tasks)
    return store


async def close(store: PostgresStore, url: str) -> None:
    await store.aclose()
    await trio.to_thread.run_sync(drop_schema, url, store.schema)


async def timed(callers: int, total: int, call: Callable[[int], Awaitable[None]]) -> float:
    """Run *call(i)* for i in range(total) spread over *callers* tasks; return calls per second."""
    per_caller = total // callers

    async def caller(offset: int) -> None:
        for i in range(offset, offset + per_caller):
            await call(i)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for k in range(callers):
            nursery.start_soon(caller, k * per_caller)
    return per_caller * callers / (time.perf_counter() - start)


async def bench_add(url: str, n: int) -> dict[str, float]:
    results: dict[str, float] = {}
    for callers in (1, 4):
        store = await fresh_store(url)
        try:

            async def add_one(_: int, store: PostgresStore = store) -> None:
                await store.add([task()])

            results[f"add 1/call, {callers} caller(s)"] = await timed(callers, n, add_one)
        finally:
            await close(store, url)
    store = await fresh_store(url)
    try:
        batch = [task() for _ in range(100)]

        async def add_batch(_: int) -> None:
            await store.add(batch)

        results["add 100/call, 1 caller"] = 100 * await timed(1, max(1, n // 100), add_batch)
    finally:
        await close(store, url)
    return results


async def bench_claim(url: str, n: int) -> dict[str, float]:
    results: dict[str, float] = {}
    for callers, limit in ((1, 1), (4, 1), (1, 32)):
        store = await fresh_store(url, prefill=n)
        try:

            async def claim(_: int, store: PostgresStore = store, limit: int = limit) -> None:
                await store.claim("bench", limit, 600.0)

            rate = await timed(callers, n // limit, claim) * limit
            results[f"claim {limit}/call, {callers} caller(s)"] = rate
            assert (await store.counts())[
                TaskStatus.RUNNING
            ] == n // limit // callers * callers * limit
        finally:
            await close(store, url)
    return results


async def all_ids(store: PostgresStore) -> list[str]:
    """Every task's id, a page at a time (a page holds at most 1,000)."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        page = await store.page(status=None, name=None, limit=1000, cursor=cursor)
        ids += [task.id for task in page.tasks]
        cursor = page.next_cursor
        if cursor is None:
            return ids


async def bench_complete(url: str, n: int) -> dict[str, float]:
    results: dict[str, float] = {}
    for callers in (1, 4, 64):
        store = await fresh_store(url, prefill=n, claimed=n)
        try:
            ids = await all_ids(store)

            async def complete(i: int, store: PostgresStore = store, ids: list[str] = ids) -> None:
                assert await store.complete("bench", ids[i], 1, b"null")

            results[f"complete, {callers} caller(s)"] = await timed(callers, n, complete)
        finally:
            await close(store, url)
    return results


async def cycle(store: PostgresStore, slots: int) -> int:
    """Claim and complete until the store has nothing due; return how many this process did."""
    idle = trio.Semaphore(slots)
    done = 0
    owner = f"bench-{os.getpid()}"

    async def run(task_id: str) -> None:
        nonlocal done
        try:
            assert await store.complete(owner, task_id, 1, b"null")
            done += 1
        finally:
            idle.release()

    async with trio.open_nursery() as nursery:
        while True:
            await idle.acquire()
            free = 1
            while idle.value:  # take every idle slot
                await idle.acquire()
                free += 1
            claimed = await store.claim(owner, free, 600.0)
            for _ in range(free - len(claimed.tasks)):
                idle.release()
            if not claimed.tasks:
                break
            for claimed_task in claimed.tasks:
                nursery.start_soon(run, claimed_task.id)
    return done


async def cycle_child(url: str, schema: str, slots: int) -> None:
    store = PostgresStore(url, schema=schema)
    await store.open()
    try:
        print("ready", flush=True)
        await trio.to_thread.run_sync(sys.stdin.readline)
        print(json.dumps(await cycle(store, slots)), flush=True)
    finally:
        await store.aclose()


async def bench_cycle(url: str, n: int) -> dict[str, float]:
    results: dict[str, float] = {}
    store = await fresh_store(url, prefill=n)
    try:
        start = time.perf_counter()
        assert await cycle(store, 64) == n
        results["claim+complete, 1 process x 64 slots"] = n / (time.perf_counter() - start)
    finally:
        await close(store, url)
    store = await fresh_store(url, prefill=n)
    try:
        command = [sys.executable, __file__, "--child", url, store.schema, "64"]

        def spawn() -> subprocess.Popen[str]:
            return subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )

        children = [await trio.to_thread.run_sync(spawn) for _ in range(2)]
        for child in children:
            assert child.stdout is not None
            assert (await trio.to_thread.run_sync(child.stdout.readline)).strip() == "ready"
        start = time.perf_counter()
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [await trio.to_thread.run_sync(child.communicate) for child in children]
        elapsed = time.perf_counter() - start
        assert sum(int(out) for out, _ in outputs) == n, outputs
        results["claim+complete, 2 processes x 64 slots"] = n / elapsed
    finally:
        await close(store, url)
    return results


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def wake_latencies(
    waiter: PostgresStore, samples: int, send: Callable[[], Awaitable[None]]
) -> list[float]:
    """Seconds from just before each ``send()`` until ``waiter`` wakes."""
    await waiter.wait_for_work(0.05)
    latencies: list[float] = []

    async def send_soon(sent: list[float]) -> None:
        await trio.sleep(0.002)
        sent.append(time.perf_counter())
        await send()

    for _ in range(samples):
        sent: list[float] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_soon, sent)
            await waiter.wait_for_work(5.0)
            latencies.append(time.perf_counter() - sent[0])
    return latencies


async def bench_notify(url: str, samples: int) -> dict[str, float]:
    waiter = await fresh_store(url)
    adder = PostgresStore(url, schema=waiter.schema)
    await adder.open()
    plain = await trio.to_thread.run_sync(lambda: psycopg.connect(url, autocommit=True))
    results: dict[str, float] = {}
    try:

        async def add() -> None:
            await adder.add([task()])

        def bare_notify() -> None:
            plain.execute("SELECT pg_notify(%s, '')", (waiter.schema,))

        async def notify() -> None:
            await trio.to_thread.run_sync(bare_notify)

        for label, send in (("add -> wake", add), ("bare NOTIFY -> wake", notify)):
            latencies = await wake_latencies(waiter, samples, send)
            results[f"{label}, median (ms)"] = 1000 * statistics.median(latencies)
            results[f"{label}, p99 (ms)"] = 1000 * percentile(latencies, 0.99)
    finally:
        plain.close()
        await adder.aclose()
        await close(waiter, url)
    return results


async def run_all(url: str, n: int, samples: int) -> None:
    print(f"psycopg {psycopg.__version__}, trio {trio.__version__}, N={n}")
    for bench in (bench_add, bench_claim, bench_complete, bench_cycle):
        for label, value in (await bench(url, n)).items():
            print(f"  {label:45} {value:>10,.0f}/s", flush=True)
    for label, value in (await bench_notify(url, samples)).items():
        print(f"  {label:45} {value:>10.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Microbenchmark of PostgresStore.")
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("-n", type=int, default=10_000, help="tasks per measurement")
    parser.add_argument("--samples", type=int, default=500, help="notify latency samples")
    parser.add_argument("--quick", action="store_true", help="N=1000, 100 samples")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, schema, slots = args.child
        trio.run(cycle_child, url, schema, int(slots))
        return
    n, samples = (1000, 100) if args.quick else (args.n, args.samples)
    trio.run(run_all, args.url, n, samples)


if __name__ == "__main__":
    main()
