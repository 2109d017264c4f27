# SPDX-License-Identifier: MIT
"""Fair workers: how long a backlog of tasks that never await holds trio's run loop.

Usage: ``python -m benchmarks.fair_workers [--tasks N] [--reps R] [--before REF]``

Compares the code at git *REF* (default ``main``, extracted with ``git
archive``) with this working tree, alternated within every repetition, each
measurement a fresh process pinned with ``taskset -c 1`` when available:

* **wait**: N no-op tasks that never await are queued (``submit_nowait``,
  unbounded buffer, 10 workers); another trio task runs ``await
  trio.sleep(0)`` in a loop until they are done. Reported: the longest and
  the 99th-percentile time between two of its wakes (wall clock), the
  longest in this thread's CPU time (steadier on a shared machine: time
  other processes held the CPU is left out), the most tasks run between two
  wakes, and the µs per task of the whole drain (wall and CPU).
* **throughput**: the suite's no-op benchmark (comparison 2):
  ``submit_nowait`` into a buffer of 1,000 (``await submit`` when full),
  10 workers, 200,000 tasks; µs per task until ``shutdown()`` returns
  (wall and CPU).
* **submit**: the same through ``await queue.submit`` (comparison 1).

Prints medians over the repetitions and paired ratios (after / before, from
the same repetition).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from time import perf_counter, thread_time
from typing import Any

from ._core import Column, Comparison, Metrics, Target, Variant, check_tally

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 10


def _observe(tasks: int, queue_backlog: Callable[[Callable[[], Awaitable[None]]], Any]) -> Metrics:
    """Queue *tasks* no-await tasks with *queue_backlog*, then time ``await trio.sleep(0)``.

    *queue_backlog(job)* is an async context manager that queues the tasks
    and lets them run while its block runs.
    """
    import trio

    from ._core import percentile

    tally = itertools.count()
    tick = tally.__next__

    async def no_await() -> None:
        tick()

    def ran() -> int:
        return int(repr(tally)[6:-1])  # "count(N)": read without ticking

    async def main() -> Metrics:
        async with queue_backlog(no_await):
            waits: list[float] = []
            cpu_waits: list[float] = []
            most = seen = 0
            start = last = perf_counter()
            start_cpu = last_cpu = thread_time()
            while seen < tasks:
                await trio.sleep(0)  # noqa: ASYNC115 - the call a web handler would make
                now, now_cpu, done = perf_counter(), thread_time(), ran()
                waits.append(now - last)
                cpu_waits.append(now_cpu - last_cpu)
                most = max(most, done - seen)
                last, last_cpu, seen = now, now_cpu, done
            elapsed = perf_counter() - start
            elapsed_cpu = thread_time() - start_cpu
        waits.sort()
        return {
            "max_wait_ms": waits[-1] * 1e3,
            "p99_wait_ms": percentile(waits, 0.99) * 1e3,
            "max_wait_cpu_ms": max(cpu_waits) * 1e3,
            "max_tasks_between_wakes": most,
            "wakes": len(waits),
            "drain_us_per_task": elapsed / tasks * 1e6,
            "drain_cpu_us_per_task": elapsed_cpu / tasks * 1e6,
        }

    metrics = trio.run(main)
    check_tally(tally, tasks, "no-await backlog")
    return metrics


def _wait_child(tasks: int) -> Metrics:
    import trio_workq

    @asynccontextmanager
    async def backlog(job: Callable[[], Awaitable[None]]) -> AsyncGenerator[None, None]:
        async with trio_workq.open_work_queue(workers=WORKERS, max_buffer_size=math.inf) as queue:
            for _ in range(tasks):
                queue.submit_nowait(job)
            yield

    return _observe(tasks, backlog)


def _raw_wait_child(tasks: int) -> Metrics:
    import trio

    from ._throughput import nowait_worker  # the floor: no schedule point while work is ready

    @asynccontextmanager
    async def backlog(job: Callable[[], Awaitable[None]]) -> AsyncGenerator[None, None]:
        send, receive = trio.open_memory_channel[Callable[[], Awaitable[None]]](math.inf)
        async with trio.open_nursery() as nursery:
            for _ in range(WORKERS):
                nursery.start_soon(nowait_worker, receive)
            async with send:
                for _ in range(tasks):
                    send.send_nowait(job)
                yield

    return _observe(tasks, backlog)


def _throughput_child(tasks: int, *, nowait: bool) -> Metrics:
    from ._throughput import workq

    metrics = workq(tasks, nowait=nowait)
    return {key: metrics[key] for key in ("us_per_task", "cpu_us_per_task")}


def _child(measure: str, tasks: int) -> None:
    import trio_workq

    if measure == "wait":
        metrics = _wait_child(tasks)
    else:
        metrics = _throughput_child(tasks, nowait=measure == "throughput")
    metrics["code"] = trio_workq.__file__  # type: ignore[assignment]
    print(json.dumps(metrics))


def _run(code: Path, measure: str, tasks: int, workdir: str) -> dict[str, float]:
    env = dict(os.environ)
    # The code under test first; this tree for the benchmarks package.
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([str(code), str(ROOT)]))
    cmd = [sys.executable, "-m", "benchmarks.fair_workers", "--child", measure]
    cmd += ["--tasks", str(tasks)]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "1", *cmd]
    out = subprocess.run(cmd, env=env, cwd=workdir, check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--tasks", type=int, default=300_000, help="tasks for the wait measure")
    parser.add_argument("--throughput-tasks", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--before", default="main", help="git ref of the 'before' code")
    parser.add_argument("--child", choices=("wait", "throughput", "submit"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.tasks)
        return

    with tempfile.TemporaryDirectory() as workdir:
        before = Path(workdir) / "before"
        before.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.before, "trio_workq"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
        codes = {"before": before, "after": ROOT}
        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        for rep in range(args.reps):
            for measure, tasks in (
                ("wait", args.tasks),
                ("throughput", args.throughput_tasks),
                ("submit", args.throughput_tasks),
            ):
                for name, code in codes.items():
                    metrics = _run(code, measure, tasks, workdir)
                    assert str(metrics.pop("code")).startswith(str(code)), "wrong code imported"
                    results.setdefault((measure, name), []).append(metrics)
                    print(f"rep {rep + 1} {measure:10} {name:6} {metrics}", file=sys.stderr)

    print(f"\nbefore = {args.before}, after = working tree; {args.reps} repetitions, medians")
    for measure, metric in (
        ("wait", "max_wait_ms"),
        ("wait", "p99_wait_ms"),
        ("wait", "max_wait_cpu_ms"),
        ("wait", "max_tasks_between_wakes"),
        ("wait", "wakes"),
        ("wait", "drain_us_per_task"),
        ("wait", "drain_cpu_us_per_task"),
        ("throughput", "us_per_task"),
        ("throughput", "cpu_us_per_task"),
        ("submit", "us_per_task"),
        ("submit", "cpu_us_per_task"),
    ):
        before_values = [m[metric] for m in results[(measure, "before")]]
        after_values = [m[metric] for m in results[(measure, "after")]]
        ratios = [a / b for a, b in zip(after_values, before_values, strict=True) if b]
        ratio = statistics.median(ratios) if ratios else math.nan
        print(
            f"{measure:10} {metric:18} before {statistics.median(before_values):10.3f}"
            f"  after {statistics.median(after_values):10.3f}  after/before {ratio:.3f}"
            f"  (before {min(before_values):.3f}-{max(before_values):.3f},"
            f" after {min(after_values):.3f}-{max(after_values):.3f})"
        )


def _backlog_size(quick: bool) -> int:
    return 3_000 if quick else 300_000


COMPARISON = Comparison(
    title="9. Fair workers: another task behind a backlog of no-await tasks",
    about=(
        "300,000 no-op tasks that never await are queued at once (unbounded buffer, 10 "
        "workers); another trio task runs `await trio.sleep(0)` in a loop until they are done. "
        "Longest time between two of its wakes: wall clock, and this thread's CPU time (which "
        "leaves out other processes on a shared machine); the most tasks run between two "
        "wakes; µs per task of the drain. Raw trio workers on a memory channel, taking work "
        "with `receive_nowait`, show what a worker loop without yields does. "
        "`python -m benchmarks.fair_workers` compares with the code at git `main`."
    ),
    variants=(
        Variant(
            "workq", "trio_workq: `submit_nowait` backlog", lambda q: _wait_child(_backlog_size(q))
        ),
        Variant(
            "trio_raw_nowait",
            "raw trio nowait workers (never yield while work is ready)",
            lambda q: _raw_wait_child(_backlog_size(q)),
        ),
    ),
    columns=(
        Column("max_wait_cpu_ms", "longest wait, CPU ms"),
        Column("max_wait_ms", "longest wait, wall ms"),
        Column("max_tasks_between_wakes", "most tasks between wakes", 0),
        Column("drain_cpu_us_per_task", "drain CPU µs/task"),
    ),
    reference="trio_raw_nowait",
    ratio_metric="max_wait_cpu_ms",
    targets=(
        Target(
            "longest wait behind a no-await backlog (CPU ms)",
            "workq",
            "max_wait_cpu_ms",
            limit=2.0,
            unit="ms; the issue asks for about 1",
        ),
    ),
)


if __name__ == "__main__":
    main()
