# SPDX-License-Identifier: MIT
"""Throughput drivers shared by the no-op, one-checkpoint and Prometheus comparisons.

Every driver pushes *tasks* jobs through 10 workers and a buffer of 1,000 and
times (wall and CPU time, see `Stopwatch`) from just before the first submit
until the last job has completed and the workers are gone. Every job ticks a counter,
and the driver checks that all of them ran.

asyncio, aiojobs, uvloop and prometheus_client are imported inside the
drivers that use them, so a trio-only run does not carry their modules
(their objects would lengthen every garbage collection).
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Literal

import trio
import trio.testing

import trio_workq

from ._core import Column, Elapsed, Metrics, Stopwatch, check, check_tally

WORKERS = 10
BUFFER = 1000

#: The table columns of a throughput comparison.
THROUGHPUT_COLUMNS = (
    Column("us_per_task", "µs/task"),
    Column("cpu_us_per_task", "CPU µs/task"),
    Column("tasks_per_s", "tasks/s", 0),
)

JobKind = Literal["noop", "checkpoint"]
Loop = Literal["default", "uvloop"]
Job = Callable[[], Awaitable[None]]


def task_count(quick: bool) -> int:
    return 2_000 if quick else 200_000


def throughput(tasks: int, elapsed: Elapsed) -> Metrics:
    return {
        "tasks": tasks,
        "elapsed_s": elapsed.wall,
        "us_per_task": elapsed.wall / tasks * 1e6,
        "tasks_per_s": tasks / elapsed.wall,
        "cpu_us_per_task": elapsed.cpu / tasks * 1e6,
    }


def trio_job(kind: JobKind, tick: Callable[[], int]) -> Job:
    if kind == "noop":

        async def noop() -> None:
            tick()

        return noop

    async def one_checkpoint() -> None:
        await trio.sleep(0)  # noqa: ASYNC115 - the issue's job is literally `await trio.sleep(0)`
        tick()

    return one_checkpoint


# ------------------------------------------------------------------ raw trio


async def nowait_worker(receive: trio.MemoryReceiveChannel[Job]) -> None:
    """Raw trio's cheapest worker: ``receive_nowait`` while work is ready (no schedule
    point), the awaiting ``receive`` only when it would block."""
    while True:
        try:
            fn = receive.receive_nowait()
        except trio.WouldBlock:
            try:
                fn = await receive.receive()
            except trio.EndOfChannel:
                return
        except trio.EndOfChannel:
            return
        await fn()


def trio_channel(tasks: int, *, kind: JobKind = "noop", nowait: bool = False) -> Metrics:
    """The floor: a memory channel and 10 workers ``async for fn in recv: await fn()``.

    With *nowait*, the producer uses ``send_nowait`` and the workers
    ``receive_nowait``, each falling back to the awaiting call only when it
    would block (trio's cheapest hand-off).
    """
    tally = itertools.count()
    job = trio_job(kind, tally.__next__)

    async def worker(receive: trio.MemoryReceiveChannel[Job]) -> None:
        async for fn in receive:
            await fn()

    async def main() -> Elapsed:
        send, receive = trio.open_memory_channel[Job](BUFFER)
        async with trio.open_nursery() as nursery:
            for _ in range(WORKERS):
                nursery.start_soon(nowait_worker if nowait else worker, receive)
            await trio.testing.wait_all_tasks_blocked()  # every worker parked, as in the queue
            watch = Stopwatch()
            async with send:
                if nowait:
                    for _ in range(tasks):
                        try:
                            send.send_nowait(job)
                        except trio.WouldBlock:
                            await send.send(job)
                else:
                    for _ in range(tasks):
                        await send.send(job)
        return watch.elapsed()

    elapsed = trio.run(main)
    check_tally(tally, tasks, "raw trio")
    return throughput(tasks, elapsed)


# --------------------------------------------------------------- trio_workq


def workq(
    tasks: int, *, kind: JobKind = "noop", nowait: bool = False, prometheus: bool | None = None
) -> Metrics:
    """``await queue.submit(job)`` (or ``submit_nowait``) into a queue with the defaults but
    10 workers and a buffer of 1,000; the clock stops when ``await queue.shutdown()`` returns.

    *prometheus*: None leaves prometheus_client out; False imports it and makes
    a registry but does not instrument (the fair "plain" side of comparison 7);
    True instruments the queue with a fresh registry.
    """
    tally = itertools.count()
    job = trio_job(kind, tally.__next__)
    registry: Any = None
    if prometheus is not None:
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry()

    async def main() -> tuple[Elapsed, trio_workq.QueueStatistics]:
        async with trio_workq.open_work_queue(workers=WORKERS, max_buffer_size=BUFFER) as queue:
            if prometheus:
                from trio_workq.prometheus import instrument

                instrument(queue, registry=registry)
            submit = queue.submit
            watch = Stopwatch()
            if nowait:
                submit_nowait = queue.submit_nowait
                for _ in range(tasks):
                    try:
                        submit_nowait(job)
                    except trio.WouldBlock:
                        await submit(job)
            else:
                for _ in range(tasks):
                    await submit(job)
            await queue.shutdown()
            elapsed = watch.elapsed()
            return elapsed, queue.statistics_nowait()

    elapsed, stats = trio.run(main)
    check_tally(tally, tasks, "trio_workq")
    check(
        (stats.submitted, stats.completed, stats.failed, stats.cancelled) == (tasks, tasks, 0, 0),
        f"queue statistics disagree: {stats}",
    )
    if prometheus:
        completed = sum(
            sample.value
            for metric in registry.collect()
            for sample in metric.samples
            if sample.name == "trio_workq_tasks_completed_total"
        )
        check(completed == tasks, f"Prometheus counted {completed} of {tasks} completions")
    return throughput(tasks, elapsed)


# ------------------------------------------------------------------- asyncio


def _run_asyncio(main: Coroutine[Any, Any, Elapsed], loop: Loop) -> Elapsed:
    if loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    import asyncio

    return asyncio.run(main)


def asyncio_queue(tasks: int, *, loop: Loop) -> Metrics:
    """``asyncio.Queue(1000)`` and 10 worker tasks; a ``None`` per worker stops them."""
    import asyncio

    tally = itertools.count()
    tick = tally.__next__

    async def noop() -> None:
        tick()

    async def worker(queue: asyncio.Queue[Job | None]) -> None:
        while (fn := await queue.get()) is not None:
            await fn()

    async def main() -> Elapsed:
        queue: asyncio.Queue[Job | None] = asyncio.Queue(BUFFER)
        workers = [asyncio.create_task(worker(queue)) for _ in range(WORKERS)]
        await asyncio.sleep(0)  # every worker parked on get()
        watch = Stopwatch()
        for _ in range(tasks):
            await queue.put(noop)
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
        return watch.elapsed()

    elapsed = _run_asyncio(main(), loop)
    check_tally(tally, tasks, f"asyncio.Queue ({loop} loop)")
    return throughput(tasks, elapsed)


def aiojobs_scheduler(tasks: int, *, loop: Loop) -> Metrics:
    """``aiojobs.Scheduler(limit=10, pending_limit=1000)``: ``await spawn(job())`` per job
    (one asyncio Task each), then ``wait_and_close()``."""
    import asyncio

    import aiojobs

    tally = itertools.count()
    tick = tally.__next__

    async def noop() -> None:
        tick()

    async def main() -> Elapsed:
        scheduler = aiojobs.Scheduler(limit=WORKERS, pending_limit=BUFFER, wait_timeout=None)
        await asyncio.sleep(0)
        watch = Stopwatch()
        for _ in range(tasks):
            await scheduler.spawn(noop())
        await scheduler.wait_and_close()
        return watch.elapsed()

    elapsed = _run_asyncio(main(), loop)
    check_tally(tally, tasks, f"aiojobs ({loop} loop)")
    return throughput(tasks, elapsed)
