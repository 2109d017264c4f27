# SPDX-License-Identifier: MIT
"""Durable queue on PostgreSQL, end to end: throughput and wake-up latency, next to procrastinate.

Usage (from the repository root)::

    python -m benchmarks.bench_durable_postgres [--url URL]
        [--processes 1,2,4] [--workers 50] [--tasks N] [--batch 1000] [--reps 3]
        [--samples 200] [--systems trio_workq,procrastinate] [--analyze-interval 1]
        [--procrastinate-pool 4] [--timeout 900] [--json PATH] [--quick]

procrastinate (3.x, with its psycopg connector) is the reference peer: it
runs on the same server, in the same run, in the same way. At the start the
script copies ``benchmarks/`` and ``trio_workq/`` to a temporary directory;
every worker process runs from that copy, so edits to the work tree during a
run do not mix versions.

Throughput (no-op tasks, submit → complete), for each number P of worker
processes in ``--processes``: ``--reps`` repetitions, each running
trio_workq then procrastinate (A, B, A, B, ...). Every measurement uses a
fresh schema of the database at ``--url`` (``bench_dpg_*``, dropped
afterwards, also when the measurement fails), and goes:

1. Create the schema and the system's tables in it.
2. Start P worker processes, each running W (``--workers``, default 50)
   tasks at once, and wait until each is ready, then 0.5 s more:

   * trio_workq: ``python -m trio_workq worker benchmarks._pg_tasks --store
     postgresql://...?schema=S --workers W``, the real ``trio-workq worker``
     command with its defaults (lease 30 s, poll interval 1 s): a pool of 4
     connections plus one for LISTEN; claims up to the idle workers per
     round trip; group-commits completions. Ready: it printed "serving".
   * procrastinate: ``python -m procrastinate --app
     benchmarks._pg_tasks.procrastinate_app --log-level warning worker
     --concurrency W``, the real ``procrastinate worker`` command with its
     defaults (listen/notify on, jobs kept after completion): a
     ``PsycopgConnector`` pool of 4 connections (psycopg_pool's default)
     plus one for LISTEN, the schema put first on ``search_path``; fetches
     one job per round trip. Ready: its row is in ``procrastinate_workers``.
     ``--log-level warning`` because its default, INFO, logs two lines per
     job to stderr, which trio_workq's worker does not do by default.

3. From this process, submit N (``--tasks``, default 20,000) no-op tasks
   in calls of 1,000 (``--batch``): trio_workq with
   ``DurableWorkQueue.submit_many`` on a producer-only queue
   (``open_work_queue(store=URL, workers=0)``); procrastinate with
   ``batch_defer_async`` of its task (the app opened with the same pool).
   One caller, one call at a time, each call one transaction.
4. Wait until the store has all N tasks finished: after the last submit,
   count the finished rows every 20 ms with one plain SQL query on a
   connection of its own (``status = 'completed'`` in trio_workq's table,
   ``status = 'succeeded'`` in ``procrastinate_jobs``; the same query for
   both). The time runs from just before the first submit until that count
   reaches N (so it includes up to ~20 ms of polling granularity).
   Meanwhile, another connection runs ``ANALYZE`` on the jobs table every
   second (``--analyze-interval``), for both systems: see below.
5. Check: N rows, all finished successfully, each with exactly one attempt
   (else the script stops with an error). Then SIGTERM the workers (SIGKILL
   after 10 s) and drop the schema.

Why ANALYZE: each measurement starts on new, empty tables, which autovacuum
analyzes only after a while (its naptime is a minute). Until then the
planner knows nothing of a backlog of N queued rows, and procrastinate,
which fetches one job per query (``ORDER BY priority DESC, id LIMIT 1 FOR
UPDATE SKIP LOCKED`` in ``procrastinate_fetch_job_v2``), gets a plan that
reads and sorts the whole backlog on every fetch (a bitmap scan and a sort:
~20 ms per fetch at 20,000 queued jobs, against ~0.1 ms with an index scan
once the table is analyzed), so its throughput would depend on when
autovacuum happens to run. Analyzing every second stands for a server whose
statistics keep up; ``--analyze-interval 0`` measures without it.

The table shows tasks/s (median over repetitions, and each), the submit
time, and CPU per task of the worker processes and of every ``postgres``
process on the machine (from ``/proc``, between ready and done; the server
part is approximate: it is the whole server). The ratio trio_workq /
procrastinate is paired: one per repetition, then their median.

Wake-up latency (submit → start on an idle worker in another process): one
worker process as above (P = 1, W workers, idle), a fresh schema per system.
This process submits one ``bench.wake`` task at a time (``submit`` /
``defer_async``), after an idle pause of 20-50 ms; the task prints
``time.time()`` as it starts, which this process reads from the worker's
standard output. Latency = that time minus ``time.time()`` just before the
submit call (so it includes the submit's commit and its NOTIFY).
``--samples`` (default 200) samples after 3 unrecorded warm-up ones; median,
p99 and max.

``--quick`` (N = 1,000, 1 repetition, 20 samples) is a smoke test. ``--json
PATH`` writes every measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import random
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Generator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import psycopg
import trio
from procrastinate.schema import SchemaManager
from procrastinate.types import JSONDict
from psycopg import sql
from psycopg.conninfo import make_conninfo

import trio_workq
from benchmarks import _pg_tasks
from benchmarks._runner import load_note, machine, snapshot

DEFAULT_URL = os.environ.get("TRIO_WORKQ_TEST_PG_URL", _pg_tasks.DEFAULT_URL)
TRIO_WORKQ = "trio_workq"
PROCRASTINATE = "procrastinate"
SYSTEMS = (TRIO_WORKQ, PROCRASTINATE)
#: Seconds between two counts of finished tasks.
POLL_INTERVAL = 0.02
#: Seconds to wait after every worker process is ready.
SETTLE = 0.5
#: Bounds on the waits, in seconds.
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
SAMPLE_TIMEOUT = 10.0
#: The idle pause before each wake-up sample, in seconds (uniform).
IDLE_GAP = (0.02, 0.05)
WARMUP_SAMPLES = 3
# Settings that would change what a worker process measures.
UNSET_IN_CHILDREN = ("PYTHONDEVMODE", "PYTHONASYNCIODEBUG", "PYTHONTRACEMALLOC", "PYTHONMALLOC")


# ------------------------------------------------------------------ processes


class Worker:
    """One worker process: standard output read line by line, standard error to a log file."""

    def __init__(self, command: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._log_file: IO[str] = log.open("w")
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            text=True,
            bufsize=1,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        for line in stdout:
            self._lines.put(line)

    def next_line(self, timeout: float) -> str:
        """The next line the process printed; `TimeoutError` after *timeout* seconds."""
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(
                f"worker {self.process.pid} printed nothing for {timeout} s"
            ) from None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def check_running(self) -> None:
        status = self.process.poll()
        if status is not None:
            raise RuntimeError(f"worker {self.process.pid} exited with status {status}")

    def cpu_seconds(self) -> float:
        return _cpu_seconds(self.process.pid)

    def close(self) -> None:
        """Wait for the process to end (after `stop_all` signalled it); close the log."""
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(
                f"warning: worker {self.process.pid} ignored SIGTERM; killing it", file=sys.stderr
            )
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)
        else:
            if self.process.returncode != 0:
                print(
                    f"warning: worker {self.process.pid} exited with status "
                    f"{self.process.returncode} after SIGTERM (log: {self.log})",
                    file=sys.stderr,
                )
        finally:
            self._reader.join(1.0)
            if self.process.stdout is not None:
                self.process.stdout.close()
            self._log_file.close()


def stop_all(workers: list[Worker]) -> None:
    """SIGTERM every worker process, then wait for each (SIGKILL after `STOP_TIMEOUT`)."""
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    for worker in workers:
        worker.close()


def show_logs(workers: list[Worker]) -> None:
    """Print the end of each worker's log to stderr (after a failure)."""
    for worker in workers:
        tail = "\n".join(worker.log_text().splitlines()[-30:])
        print(f"--- log of worker {worker.process.pid} ({worker.log}):\n{tail}", file=sys.stderr)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process *pid* (0 if it is gone or /proc is missing)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_seconds() -> float:
    """CPU time of every process named ``postgres`` on this machine (the database server)."""
    total = 0.0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0.0
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as comm:
                if comm.read().strip() != "postgres":
                    continue
        except OSError:
            continue
        total += _cpu_seconds(int(entry))
    return total


# ------------------------------------------------------------------ schemas


@dataclass(frozen=True)
class Setup:
    """What every measurement of a run shares."""

    url: str
    workers: int
    procrastinate_pool: int
    analyze_interval: float
    workdir: Path
    logs: Path
    timeout: float


def new_schema(system: str) -> str:
    return f"bench_dpg_{'tw' if system == TRIO_WORKQ else 'pc'}_{uuid.uuid4().hex[:8]}"


def store_url(url: str, schema: str) -> str:
    """*url* with trio_workq's ``schema`` query parameter."""
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


def jobs_table(system: str, schema: str) -> sql.Identifier:
    return sql.Identifier(schema, "tasks" if system == TRIO_WORKQ else "procrastinate_jobs")


def finished_status(system: str) -> str:
    return "completed" if system == TRIO_WORKQ else "succeeded"


async def _open_and_close(url: str) -> None:
    async with trio_workq.open_work_queue(store=url, workers=0):
        pass


def create_schema(system: str, url: str, schema: str) -> None:
    """Create *schema* with the system's tables in it."""
    if system == TRIO_WORKQ:
        trio.run(_open_and_close, store_url(url, schema))
        return
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    conninfo = make_conninfo(url, options=f"-c search_path={schema}")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(SchemaManager.get_schema())


def drop_schema(url: str, schema: str) -> None:
    """Drop *schema*; a failure is reported, not raised (this runs in ``finally`` blocks)."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    except psycopg.Error as exc:
        print(f"warning: could not drop schema {schema}: {exc}", file=sys.stderr)


class Counter:
    """Counts a system's finished tasks with one plain query, on a connection of its own."""

    def __init__(self, system: str, url: str, schema: str) -> None:
        self._conn = psycopg.connect(url, autocommit=True)
        self._query = sql.SQL("SELECT count(*) FROM {} WHERE status = {}").format(
            jobs_table(system, schema), sql.Literal(finished_status(system))
        )

    def count(self) -> int:
        row = self._conn.execute(self._query).fetchone()
        assert row is not None
        return int(row[0])

    def close(self) -> None:
        self._conn.close()


class Analyzer:
    """Runs ``ANALYZE`` on a system's jobs table every *interval* seconds, in a thread.

    What a busy server's autovacuum does at best, so that the planner knows
    about a backlog while it is there. Nothing if *interval* is 0.
    """

    def __init__(self, system: str, url: str, schema: str, interval: float) -> None:
        self.runs = 0
        self._interval = interval
        self._query = sql.SQL("ANALYZE {}").format(jobs_table(system, schema))
        self._conn = psycopg.connect(url, autocommit=True) if interval > 0 else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        if self._conn is not None:
            self._thread.start()

    def _run(self) -> None:
        assert self._conn is not None
        while not self._stop.wait(self._interval):
            self._conn.execute(self._query)
            self.runs += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT)
        if self._conn is not None:
            self._conn.close()


def check_store(system: str, url: str, schema: str, tasks: int) -> None:
    """Fail unless the store holds *tasks* tasks, all finished successfully after one attempt."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            sql.SQL("SELECT status::text, attempts, count(*) FROM {} GROUP BY 1, 2").format(
                jobs_table(system, schema)
            )
        ).fetchall()
    expected = [(finished_status(system), 1, tasks)]
    if [tuple(row) for row in rows] != expected:
        raise SystemExit(
            f"check failed for {system}: expected (status, attempts, count) {expected}, "
            f"the store has {rows}"
        )


# ------------------------------------------------------------------ workers


def start_workers(system: str, setup: Setup, schema: str, processes: int) -> list[Worker]:
    """Start *processes* worker processes of *system* on *schema*."""
    if system == TRIO_WORKQ:
        command = [
            sys.executable,
            "-m",
            "trio_workq",
            "worker",
            "benchmarks._pg_tasks",
            "--store",
            store_url(setup.url, schema),
            "--workers",
            str(setup.workers),
        ]
    else:
        command = [
            sys.executable,
            "-m",
            "procrastinate",
            "--app",
            "benchmarks._pg_tasks.procrastinate_app",
            "--log-level",
            "warning",
            "worker",
            "--concurrency",
            str(setup.workers),
        ]
    env = {key: value for key, value in os.environ.items() if key not in UNSET_IN_CHILDREN}
    env[_pg_tasks.URL_ENV] = setup.url
    env[_pg_tasks.SCHEMA_ENV] = schema
    env[_pg_tasks.POOL_ENV] = str(setup.procrastinate_pool)
    workers: list[Worker] = []
    try:
        for index in range(processes):
            log = setup.logs / f"{schema}-{index}.log"
            workers.append(Worker(command, cwd=setup.workdir, env=env, log=log))
    except BaseException:
        stop_all(workers)
        raise
    return workers


def wait_ready(system: str, url: str, schema: str, workers: list[Worker]) -> None:
    """Wait until every worker process serves the schema, then `SETTLE` seconds more."""
    deadline = time.monotonic() + READY_TIMEOUT
    with psycopg.connect(url, autocommit=True) as conn:
        registered = sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier(schema, "procrastinate_workers")
        )
        while True:
            for worker in workers:
                worker.check_running()
            if system == TRIO_WORKQ:
                ready = all("serving" in worker.log_text() for worker in workers)
            else:
                row = conn.execute(registered).fetchone()
                ready = row is not None and row[0] >= len(workers)
            if ready:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the {system} workers were not ready after {READY_TIMEOUT} s")
            time.sleep(0.05)
    time.sleep(SETTLE)


# ------------------------------------------------------------------ throughput


@dataclass
class Throughput:
    """One throughput measurement."""

    system: str
    processes: int
    rep: int
    tasks: int
    tasks_per_s: float
    elapsed_s: float
    submit_s: float
    worker_cpu_us_per_task: float
    server_cpu_us_per_task: float
    producer_cpu_us_per_task: float
    analyze_runs: int


async def _trio_workq_throughput(
    url: str, counter: Counter, tasks: int, batch: int, time_limit: float
) -> tuple[float, float]:
    """Submit and wait; return (submit seconds, elapsed seconds)."""
    async with trio_workq.open_work_queue(store=url, workers=0) as queue:
        with trio.fail_after(time_limit):
            start = time.perf_counter()
            for first in range(0, tasks, batch):
                await queue.submit_many(_pg_tasks.noop, [()] * min(batch, tasks - first))
            submitted = time.perf_counter()
            # Polling the store is the method (the same for both systems).
            while await trio.to_thread.run_sync(counter.count) < tasks:  # noqa: ASYNC110
                await trio.sleep(POLL_INTERVAL)
            return submitted - start, time.perf_counter() - start


async def _procrastinate_throughput(
    setup: Setup, schema: str, counter: Counter, tasks: int, batch: int
) -> tuple[float, float]:
    """Defer and wait; return (submit seconds, elapsed seconds)."""
    app = _pg_tasks.make_procrastinate_app(setup.url, schema, setup.procrastinate_pool)
    async with app.open_async():
        deferrer = app.configure_task("bench.noop")

        async def run() -> tuple[float, float]:
            start = time.perf_counter()
            for first in range(0, tasks, batch):
                calls: list[JSONDict] = [{} for _ in range(min(batch, tasks - first))]
                await deferrer.batch_defer_async(*calls)
            submitted = time.perf_counter()
            while await asyncio.to_thread(counter.count) < tasks:  # noqa: ASYNC110
                await asyncio.sleep(POLL_INTERVAL)
            return submitted - start, time.perf_counter() - start

        return await asyncio.wait_for(run(), setup.timeout)


@contextlib.contextmanager
def fresh_schema(
    system: str, setup: Setup, label: str
) -> Generator[tuple[str, list[Worker]], None, None]:
    """A new schema and a list for the worker processes started in it.

    If the block fails, the workers' logs are shown; either way the workers
    are stopped and the schema is dropped.
    """
    schema = new_schema(system)
    workers: list[Worker] = []
    try:
        create_schema(system, setup.url, schema)
        yield schema, workers
    except BaseException:
        print(f"{label}: failed", file=sys.stderr)
        show_logs(workers)
        raise
    finally:
        stop_all(workers)
        drop_schema(setup.url, schema)


def measure_throughput(
    system: str, setup: Setup, processes: int, rep: int, tasks: int, batch: int
) -> Throughput:
    """One measurement, in a fresh schema that is dropped afterwards."""
    label = f"{system}, {processes} process(es), repetition {rep}"
    with fresh_schema(system, setup, label) as (schema, workers):
        workers += start_workers(system, setup, schema, processes)
        wait_ready(system, setup.url, schema, workers)
        counter = Counter(system, setup.url, schema)
        analyzer = Analyzer(system, setup.url, schema, setup.analyze_interval)
        try:
            worker_cpu = sum(worker.cpu_seconds() for worker in workers)
            server_cpu = server_cpu_seconds()
            producer_cpu = time.process_time()
            analyzer.start()
            if system == TRIO_WORKQ:
                submit_s, elapsed_s = trio.run(
                    _trio_workq_throughput,
                    store_url(setup.url, schema),
                    counter,
                    tasks,
                    batch,
                    setup.timeout,
                )
            else:
                submit_s, elapsed_s = asyncio.run(
                    _procrastinate_throughput(setup, schema, counter, tasks, batch)
                )
            producer_cpu = time.process_time() - producer_cpu
            server_cpu = server_cpu_seconds() - server_cpu
            worker_cpu = sum(worker.cpu_seconds() for worker in workers) - worker_cpu
        finally:
            analyzer.stop()
            counter.close()
        check_store(system, setup.url, schema, tasks)
        for worker in workers:
            worker.check_running()
    return Throughput(
        system=system,
        processes=processes,
        rep=rep,
        tasks=tasks,
        tasks_per_s=tasks / elapsed_s,
        elapsed_s=elapsed_s,
        submit_s=submit_s,
        worker_cpu_us_per_task=worker_cpu / tasks * 1e6,
        server_cpu_us_per_task=server_cpu / tasks * 1e6,
        producer_cpu_us_per_task=producer_cpu / tasks * 1e6,
        analyze_runs=analyzer.runs,
    )


# ------------------------------------------------------------------ wake-up latency


@dataclass
class Latency:
    """The wake-up samples of one system, in milliseconds."""

    system: str
    samples: int
    median_ms: float
    p99_ms: float
    max_ms: float
    submit_median_ms: float
    latencies_ms: list[float]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _started_at(line: str, sample: int) -> float:
    number, _, started = line.partition(" ")
    if int(number) != sample:
        raise RuntimeError(f"expected wake-up sample {sample}, the worker started {line!r}")
    return float(started)


async def _trio_workq_wakeups(
    url: str, worker: Worker, samples: int, seed: int
) -> list[tuple[float, float]]:
    """(latency, submit time) in seconds for each sample."""
    rng = random.Random(seed)
    measured: list[tuple[float, float]] = []
    async with trio_workq.open_work_queue(store=url, workers=0) as queue:
        for sample in range(-WARMUP_SAMPLES, samples):
            await trio.sleep(rng.uniform(*IDLE_GAP))
            before = time.time()
            await queue.submit(_pg_tasks.wake, sample)
            submitted = time.time()
            line = await trio.to_thread.run_sync(worker.next_line, SAMPLE_TIMEOUT)
            if sample >= 0:
                measured.append((_started_at(line, sample) - before, submitted - before))
    return measured


async def _procrastinate_wakeups(
    setup: Setup, schema: str, worker: Worker, samples: int, seed: int
) -> list[tuple[float, float]]:
    """(latency, submit time) in seconds for each sample."""
    rng = random.Random(seed)
    measured: list[tuple[float, float]] = []
    app = _pg_tasks.make_procrastinate_app(setup.url, schema, setup.procrastinate_pool)
    async with app.open_async():
        for sample in range(-WARMUP_SAMPLES, samples):
            await asyncio.sleep(rng.uniform(*IDLE_GAP))
            before = time.time()
            await app.configure_task("bench.wake").defer_async(sample=sample)
            submitted = time.time()
            line = await asyncio.to_thread(worker.next_line, SAMPLE_TIMEOUT)
            if sample >= 0:
                measured.append((_started_at(line, sample) - before, submitted - before))
    return measured


def measure_latency(system: str, setup: Setup, samples: int) -> Latency:
    """Wake-up latency on one idle worker process, in a fresh schema dropped afterwards."""
    seed = 8
    with fresh_schema(system, setup, f"{system}, wake-up latency") as (schema, workers):
        workers += start_workers(system, setup, schema, 1)
        wait_ready(system, setup.url, schema, workers)
        if system == TRIO_WORKQ:
            measured = trio.run(
                _trio_workq_wakeups, store_url(setup.url, schema), workers[0], samples, seed
            )
        else:
            measured = asyncio.run(_procrastinate_wakeups(setup, schema, workers[0], samples, seed))
        workers[0].check_running()
    latencies = [1000 * latency for latency, _ in measured]
    return Latency(
        system=system,
        samples=len(latencies),
        median_ms=statistics.median(latencies),
        p99_ms=percentile(latencies, 0.99),
        max_ms=max(latencies),
        submit_median_ms=1000 * statistics.median(submit for _, submit in measured),
        latencies_ms=[round(latency, 3) for latency in latencies],
    )


# ------------------------------------------------------------------ report


def summarize(
    results: list[Throughput], systems: list[str], processes: list[int]
) -> list[dict[str, Any]]:
    """Per P: each system's median tasks/s, and the paired ratios trio_workq / procrastinate."""
    rows: list[dict[str, Any]] = []
    for count in processes:
        row: dict[str, Any] = {"processes": count}
        by_system: dict[str, dict[int, float]] = {}
        for system in systems:
            values = {
                r.rep: r.tasks_per_s for r in results if r.system == system and r.processes == count
            }
            by_system[system] = values
            row[f"{system}_median"] = statistics.median(values.values())
            row[f"{system}_each"] = [values[rep] for rep in sorted(values)]
        if TRIO_WORKQ in by_system and PROCRASTINATE in by_system:
            ratios = [
                by_system[TRIO_WORKQ][rep] / by_system[PROCRASTINATE][rep]
                for rep in sorted(by_system[TRIO_WORKQ])
                if rep in by_system[PROCRASTINATE]
            ]
            row["ratios"] = ratios
            row["ratio_median"] = statistics.median(ratios)
        rows.append(row)
    return rows


def print_summary(summary: list[dict[str, Any]], systems: list[str]) -> None:
    print(
        "\nmedian tasks/s (each repetition); ratio = trio_workq / procrastinate, "
        "paired per repetition"
    )
    for row in summary:
        for system in systems:
            each = " ".join(f"{value:,.0f}" for value in row[f"{system}_each"])
            print(f"  P={row['processes']}  {system:14} {row[f'{system}_median']:9,.0f}   ({each})")
        if "ratios" in row:
            each = " ".join(f"{ratio:.2f}" for ratio in row["ratios"])
            print(f"  P={row['processes']}  {'ratio':14} {row['ratio_median']:9.2f}   ({each})")


def targets(summary: list[dict[str, Any]], latencies: list[Latency]) -> list[str]:
    """The issue's targets, with whether this run met them."""
    lines: list[str] = []
    two = next((row for row in summary if row["processes"] == 2), None)
    if two is not None and f"{TRIO_WORKQ}_median" in two:
        value = two[f"{TRIO_WORKQ}_median"]
        lines.append(
            f"trio_workq >= 5,000 tasks/s with 2 processes: {value:,.0f} "
            f"({'met' if value >= 5000 else 'NOT met'})"
        )
    for row in summary:
        if "ratio_median" in row:
            ahead = row["ratio_median"] > 1
            lines.append(
                f"ahead of procrastinate with {row['processes']} process(es): "
                f"x{row['ratio_median']:.2f} ({'met' if ahead else 'NOT met'})"
            )
    for latency in latencies:
        if latency.system == TRIO_WORKQ:
            lines.append(
                f"trio_workq wake-up p99 <= 10 ms: {latency.p99_ms:.2f} ms "
                f"({'met' if latency.p99_ms <= 10 else 'NOT met'})"
            )
    return lines


def versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for name in ("trio_workq", "trio", "psycopg", "procrastinate", "psycopg-pool"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def server_version(url: str) -> str:
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version'), current_setting('synchronous_commit')"
        ).fetchone()
    assert row is not None
    return f"PostgreSQL {row[0]}, synchronous_commit={row[1]}"


# ------------------------------------------------------------------ the CLI


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--url", default=DEFAULT_URL, help="the PostgreSQL database (a libpq URL)")
    parser.add_argument("--processes", default="1,2,4", help="worker process counts to measure")
    parser.add_argument("--workers", type=int, default=50, help="tasks run at once per process")
    parser.add_argument("--tasks", type=int, default=20_000, help="tasks per measurement")
    parser.add_argument("--batch", type=int, default=1000, help="tasks per submit call")
    parser.add_argument("--reps", type=int, default=3, help="repetitions")
    parser.add_argument("--samples", type=int, default=200, help="wake-up latency samples")
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help="systems to measure, in this order"
    )
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds one measurement may take"
    )
    parser.add_argument(
        "--procrastinate-pool",
        type=int,
        default=_pg_tasks.PROCRASTINATE_POOL_SIZE,
        help="connections in each procrastinate process's pool (default: %(default)s, "
        "as trio_workq's; both open one more for LISTEN)",
    )
    parser.add_argument(
        "--analyze-interval",
        type=float,
        default=1.0,
        help="seconds between two ANALYZEs of the jobs table during a throughput "
        "measurement; 0 leaves statistics to autovacuum (default: %(default)s)",
    )
    parser.add_argument("--json", type=Path, help="write every measurement to this file")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke test: N=1000, 1 repetition, 20 samples"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.reps, args.samples = 1000, 1, 20
    args.systems = args.systems.split(",")
    for system in args.systems:
        if system not in SYSTEMS:
            parser.error(f"unknown system {system!r}; known: {', '.join(SYSTEMS)}")
    args.processes = [int(count) for count in args.processes.split(",")]
    if min(*args.processes, args.workers, args.tasks, args.batch, args.procrastinate_pool) < 1:
        parser.error(
            "--processes, --workers, --tasks, --batch and --procrastinate-pool must be at least 1"
        )
    if args.reps < 1 or args.samples < 1:
        parser.error("--reps and --samples must be at least 1")
    if args.analyze_interval < 0 or args.timeout <= 0:
        parser.error("--analyze-interval must be at least 0 and --timeout more than 0")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run every measurement, print the tables, and write the JSON file if asked."""
    args = parse_args(argv)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load_start = load_note()
    with tempfile.TemporaryDirectory(prefix="bench_dpg_") as directory:
        workdir = Path(directory) / "src"
        logs = Path(directory) / "logs"
        logs.mkdir()
        digest = snapshot(workdir)
        setup = Setup(
            args.url,
            args.workers,
            args.procrastinate_pool,
            args.analyze_interval,
            workdir,
            logs,
            args.timeout,
        )
        meta = machine()
        print(
            f"{args.tasks:,} no-op tasks, {args.workers} workers per process, "
            f"{args.batch:,} tasks per submit call, {args.reps} repetition(s)"
        )
        print(f"{server_version(args.url)}; {', '.join(f'{k} {v}' for k, v in versions().items())}")
        analyze = (
            f"every {args.analyze_interval:g} s" if args.analyze_interval else "left to autovacuum"
        )
        print(f"ANALYZE of the jobs table during throughput runs: {analyze}")
        print(f"commit {meta['commit']}, sources sha256:{digest}; load: {load_start}")
        if args.quick:
            print("quick mode: a smoke test, the numbers mean little")
        print(
            f"\n{'P':>2} {'rep':>3} {'system':14} {'tasks/s':>9} {'elapsed s':>9} {'submit s':>8}"
            f" {'worker CPU':>10} {'server CPU':>10} {'producer CPU':>12}  (us per task)"
        )
        results: list[Throughput] = []
        for processes in args.processes:
            for rep in range(args.reps):
                for system in args.systems:
                    result = measure_throughput(
                        system, setup, processes, rep, args.tasks, args.batch
                    )
                    results.append(result)
                    print(
                        f"{processes:2} {rep:3} {system:14} {result.tasks_per_s:9,.0f}"
                        f" {result.elapsed_s:9.2f} {result.submit_s:8.2f}"
                        f" {result.worker_cpu_us_per_task:10.0f}"
                        f" {result.server_cpu_us_per_task:10.0f}"
                        f" {result.producer_cpu_us_per_task:12.0f}",
                        flush=True,
                    )
        summary = summarize(results, args.systems, args.processes)
        print_summary(summary, args.systems)
        print(
            f"\nwake-up latency, submit -> start on an idle worker process "
            f"({args.samples} samples, ms):"
        )
        print(f"  {'system':14} {'median':>7} {'p99':>7} {'max':>7}  {'submit call median':>18}")
        latencies: list[Latency] = []
        for system in args.systems:
            latency = measure_latency(system, setup, args.samples)
            latencies.append(latency)
            print(
                f"  {system:14} {latency.median_ms:7.2f} {latency.p99_ms:7.2f}"
                f" {latency.max_ms:7.2f}  {latency.submit_median_ms:18.2f}",
                flush=True,
            )
    print("\ntargets (issue 8):")
    for line in targets(summary, latencies):
        print(f"  {line}")
    load_end = load_note()
    print(f"load at end: {load_end}")
    if args.json is not None:
        document = {
            "started": started,
            "command": shlex.join(
                ["python", "-m", "benchmarks.bench_durable_postgres", *(argv or sys.argv[1:])]
            ),
            "settings": {
                key: value if not isinstance(value, Path) else str(value)
                for key, value in vars(args).items()
            },
            "machine": meta,
            "sources": digest,
            "versions": versions(),
            "server": server_version(args.url),
            "load_start": load_start,
            "load_end": load_end,
            "throughput": [asdict(result) for result in results],
            "summary": summary,
            "latency": [asdict(latency) for latency in latencies],
            "targets": targets(summary, latencies),
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
