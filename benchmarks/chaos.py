# SPDX-License-Identifier: MIT
"""The chaos harness: durable worker processes under kills, restarts and poison.

Usage (from the repository root; ``nox -s chaos`` runs it in a fresh venv)::

    python -m benchmarks.chaos [--quick] [--no-poison] [--backends sqlite,postgres]
        [--tasks N] [--seed S]

For each backend, SQLite (a file in a temporary directory) and PostgreSQL (a
throwaway server of its own, from ``tests/_pg_cluster.py``; never the
machine's server), it:

1. starts 3 worker processes (``trio-workq worker benchmarks._chaos_tasks``,
   10 tasks at once each, lease 2 s, shutdown timeout 10 s);
2. submits N ordinary tasks (2,000 with ``--quick``, else 10,000) in
   batches, from a producer-only queue in this process; each sleeps a
   random 0-0.3 s (0-0.2 s in full runs) and writes ``start`` and ``end``
   lines to a ledger file (`benchmarks._chaos_tasks`);
3. mixes poison tasks in (unless ``--no-poison``): a result and an error
   holding a lone surrogate, an error holding a NUL character, a task whose
   child's ``finally`` raises OSError when the task's timeout cancels it,
   and corrupt rows (SQLite: ``priority = 'high'``, ``errors = 'garbage'``;
   PostgreSQL: a payload that is not JSON, a name no worker knows);
4. meanwhile, at random points of the run (seeded): SIGKILLs a random
   worker, SIGTERMs one (a drain: it finishes its tasks and exits 0), each
   time starting a replacement; on PostgreSQL also restarts the server once
   and ``pg_terminate_backend``\\ s every connection of the queue twice;
5. once every task is finished, SIGTERMs the workers and checks.

The checks (any failure makes the exit status 1):

* **lost** = 0: every submitted task has a row, and every ordinary
  ``completed`` task has an ``end`` line in the ledger;
* **stuck** = 0: no row is still queued, scheduled, retrying or running
  after the drain;
* **failed (not poison)** = 0: every ordinary task completed;
* **double runs unexplained** = 0: a task that ran more than once (several
  ``start`` lines) ran every time but the last in a worker that was
  SIGKILLed, or its row records as many expired leases (a claim or
  completion cut off by the server restart or a dropped connection) as it
  has such extra runs;
* **poison failed alone**: every poison task ended ``failed``, and nothing
  else did;
* **worker exits**: each worker ended by our SIGKILL, or with status 0
  after our SIGTERM; none exited on its own (a run stops after 12 such
  crashes: a poison task may crash every worker that claims it).

It prints a table of these figures per backend, with the seed (to replay a
run with ``--seed``), and leaves the ledgers and the workers' logs in a
temporary directory it names when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Generator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import trio

from trio_workq import DurableTaskHandle, DurableWorkQueue, open_durable_queue
from trio_workq._durable.queue import LEASE_EXPIRED_ERROR

from . import _chaos_tasks as tasks

if TYPE_CHECKING:
    from typing_extensions import LiteralString

ROOT = Path(__file__).resolve().parent.parent
TERMINAL = ("completed", "failed", "cancelled")
SCHEMA = "chaos"
#: Worker crashes after which a run stops (a poison task may crash every worker that claims it).
MAX_CRASHES = 12
#: The poison tasks every backend gets (next to its own kinds of corrupt rows).
POISON_TASKS = ("surrogate result", "surrogate error", "NUL error", "raising cleanup")


@dataclass(frozen=True)
class Config:
    tasks: int
    mean_seconds: float
    poison_each: int
    events: int
    seed: int
    #: Seconds to wait for every task to finish.
    deadline: float
    processes: int = 3
    workers: int = 10


# ------------------------------------------------------------------ backends


class Backend(Protocol):
    name: str
    url: str

    def rows(self) -> dict[str, tuple[str, int, list[str]]]:
        """Every task's ``id: (status, attempts, errors)``. Blocks."""
        ...

    def finished(self) -> int:
        """How many tasks are in a terminal status. Blocks."""
        ...

    def corrupt(self, task_id: str, kind: str) -> None:
        """Spoil a task's row in the way *kind* names. Blocks."""
        ...

    #: The corruption kinds `corrupt` knows.
    corruptions: tuple[str, ...]


class SQLiteBackend:
    name = "SQLite"
    corruptions: tuple[str, ...] = ("corrupt priority", "corrupt errors")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"

    def _query(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            with conn:
                return conn.execute(query, params).fetchall()
        finally:
            conn.close()

    def rows(self) -> dict[str, tuple[str, int, list[str]]]:
        found: dict[str, tuple[str, int, list[str]]] = {}
        for id_, status, attempts, errors in self._query(
            "SELECT id, status, attempts, errors FROM tasks"
        ):
            try:
                parsed = [str(error) for error in json.loads(errors)]
            except (TypeError, ValueError):
                parsed = [str(errors)]
            found[str(id_)] = (status, attempts, parsed)
        return found

    def finished(self) -> int:
        ((count,),) = self._query(
            "SELECT count(*) FROM tasks WHERE status IN ('completed', 'failed', 'cancelled')"
        )
        return int(count)

    def corrupt(self, task_id: str, kind: str) -> None:
        # SQLite stores what it is given: an INTEGER column takes a word, a JSON column any text.
        column = {"corrupt priority": "priority = 'high'", "corrupt errors": "errors = 'garbage'"}
        self._query(f"UPDATE tasks SET {column[kind]} WHERE id = ?", (int(task_id),))


class PostgresBackend:
    name = "PostgreSQL"
    corruptions: tuple[str, ...] = ("corrupt payload", "unknown name")

    def __init__(self, server: str) -> None:
        self.server = server
        self.url = f"{server}?schema={SCHEMA}"

    def _query(
        self, query: LiteralString, params: dict[str, Any] | None = None, **parts: LiteralString
    ) -> list[tuple[Any, ...]]:
        """Run *query*, ``{tasks}`` naming the table and *parts* filling the other fields."""
        import psycopg  # only the PostgreSQL run needs it
        from psycopg import sql

        statement = sql.SQL(query).format(
            tasks=sql.Identifier(SCHEMA, "tasks"),
            **{key: sql.SQL(value) for key, value in parts.items()},
        )
        with psycopg.connect(self.server, autocommit=True, connect_timeout=10) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def rows(self) -> dict[str, tuple[str, int, list[str]]]:
        return {
            str(id_): (status, attempts, list(errors))
            for id_, status, attempts, errors in self._query(
                "SELECT id, status, attempts, errors FROM {tasks}"
            )
        }

    def finished(self) -> int:
        ((count,),) = self._query(
            "SELECT count(*) FROM {tasks} WHERE status IN ('completed', 'failed', 'cancelled')"
        )
        return int(count)

    def corrupt(self, task_id: str, kind: str) -> None:
        column: dict[str, LiteralString] = {
            # Not JSON, not even UTF-8: the arguments cannot be loaded.
            "corrupt payload": "payload = '\\xfffe00'::bytea",
            "unknown name": "name = 'chaos.no_such_task'",
        }
        update: LiteralString = "UPDATE {tasks} SET {change} WHERE id = %(id)s"
        self._query(update, {"id": int(task_id)}, change=column[kind])

    def terminate_connections(self) -> int:
        """``pg_terminate_backend`` every connection of the queue (workers and producer)."""
        done = self._query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %(name)s AND pid <> pg_backend_pid()",
            {"name": f"trio_workq {SCHEMA}"},
        )
        return len(done)


# ------------------------------------------------------------------ one run


@dataclass
class Report:
    backend: str
    seconds: float = 0.0
    submitted: int = 0
    completed: int = 0
    poison: int = 0
    poison_failed: int = 0
    failed_not_poison: int = 0
    lost: int = 0
    stuck: int = 0
    double_runs: int = 0
    explained_by_kill: int = 0
    explained_by_lease: int = 0
    unexplained: int = 0
    #: Of those, how many ran in a worker that crashed (exited without our signal).
    unexplained_crash: int = 0
    events: Counter[str] = field(default_factory=Counter[str])
    exits: Counter[str] = field(default_factory=Counter[str])
    unexpected_exits: int = 0
    timed_out: bool = False
    problems: list[str] = field(default_factory=list[str])

    @property
    def poison_alone(self) -> bool:
        return (
            self.poison_failed == self.poison
            and self.failed_not_poison == 0
            and self.unexpected_exits == 0
        )

    def check(self) -> list[str]:
        """The failed checks, as sentences."""
        failures = list(self.problems)
        if self.timed_out:
            failures.append("not every task finished before the deadline")
        for what, count in (
            ("lost", self.lost),
            ("stuck", self.stuck),
            ("failed though not poison", self.failed_not_poison),
            ("double runs not explained by a kill or an expired lease", self.unexplained),
            (
                "workers crashed (exited without our signal, or not 0 after a SIGTERM)",
                self.unexpected_exits,
            ),
        ):
            if count:
                failures.append(f"{count} {what}")
        if self.poison_failed != self.poison:
            failures.append(f"{self.poison - self.poison_failed} poison tasks did not fail")
        return [f"{self.backend}: {failure}" for failure in failures]


class Workers:
    """The worker processes of one run, and how each of them ended."""

    def __init__(self, backend: Backend, config: Config, directory: Path, report: Report) -> None:
        self.backend = backend
        self.config = config
        self.ledger = directory / f"{backend.name}.ledger"
        #: One log per worker process: its output shows when it is ready.
        self.logs = directory / f"{backend.name}-workers"
        self.logs.mkdir()
        self.log_of: dict[int, Path] = {}
        self.report = report
        self.live: list[trio.Process] = []
        self.all: list[trio.Process] = []
        self.killed: set[int] = set()
        self.drained: set[int] = set()
        self.crashed: set[int] = set()
        self.stopping = False
        #: Cancelled when workers keep crashing: the run stops waiting for its tasks.
        self.give_up = trio.CancelScope()

    async def start(self, nursery: trio.Nursery) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env[tasks.LEDGER_ENV] = str(self.ledger)
        command = [
            sys.executable, "-m", "trio_workq", "worker", "benchmarks._chaos_tasks",
            "--store", self.backend.url, "-v",
            "--workers", str(self.config.workers), "--lease", "2", "--poll-interval", "0.1",
            "--shutdown-timeout", "10",
        ]  # fmt: skip
        log = self.logs / f"{len(self.all)}.log"
        output = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            process = await trio.lowlevel.open_process(
                command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
            )
        finally:
            os.close(output)  # the child has its own copy
        self.log_of[process.pid] = log
        self.live.append(process)
        self.all.append(process)
        nursery.start_soon(self._watch, process, nursery)

    async def _watch(self, process: trio.Process, nursery: trio.Nursery) -> None:
        code = await process.wait()
        self.live.remove(process)
        if process.pid in self.killed and code == -signal.SIGKILL:
            self.report.exits["SIGKILL (ours)"] += 1
        elif process.pid in self.drained and code == 0:
            self.report.exits["exit 0 after SIGTERM"] += 1
        else:
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
            cause = "after our SIGTERM" if process.pid in self.drained else "on its own"
            self.report.exits[f"{how} ({cause})"] += 1
            self.report.unexpected_exits += 1
            self.crashed.add(process.pid)
            if self.report.unexpected_exits >= MAX_CRASHES:
                if not self.give_up.cancel_called:
                    self.report.problems.append(f"gave up after {MAX_CRASHES} worker crashes")
                self.give_up.cancel()
            elif not self.stopping:  # keep the run going, to see what else breaks
                await self.start(nursery)

    def ready(self, process: trio.Process) -> bool:
        """Whether *process* serves: it handles SIGTERM from then on (before, it just dies)."""
        return b" serving " in self.log_of[process.pid].read_bytes()

    async def victim(self, rng: random.Random) -> trio.Process:
        """A random ready worker that we have not signalled yet (waits for one). Checkpoints."""
        while True:  # replacements get ready in their own time: poll
            candidates = [
                p for p in self.live if p.pid not in self.drained | self.killed and self.ready(p)
            ]
            if candidates:
                return rng.choice(candidates)
            await trio.sleep(0.05)

    async def send(self, signum: int, rng: random.Random, nursery: trio.Nursery) -> None:
        """SIGKILL or SIGTERM a random worker and start a replacement. Checkpoints."""
        victim = await self.victim(rng)
        (self.killed if signum == signal.SIGKILL else self.drained).add(victim.pid)
        victim.send_signal(signum)
        await self.start(nursery)

    async def drain_all(self) -> None:
        """SIGTERM every worker once it is ready, and wait until all have exited. Checkpoints."""
        self.stopping = True
        with trio.move_on_after(30):
            while True:  # _watch() notes each exit: poll
                for process in self.live:
                    if process.pid not in self.drained and self.ready(process):
                        self.drained.add(process.pid)
                        process.send_signal(signal.SIGTERM)
                if not self.live:
                    break
                await trio.sleep(0.05)
        if self.live:
            self.report.problems.append(f"{len(self.live)} workers did not stop within 30 s")

    async def aclose(self) -> None:
        """Kill what still runs (after a failure) and reap it."""
        self.stopping = True
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            for process in self.all:
                if process.returncode is None:
                    process.kill()
                await process.wait()


def plan_events(backend: Backend, config: Config, rng: random.Random) -> list[tuple[float, str]]:
    """``(fraction of tasks finished, action)`` pairs, in order."""
    actions = ["kill", "drain"]
    if isinstance(backend, PostgresBackend):
        actions += ["restart", "terminate", "terminate"]
    while len(actions) < config.events:
        actions.append(rng.choice(["kill", "kill", "drain"]))
    rng.shuffle(actions)
    fractions = sorted(rng.uniform(0.05, 0.85) for _ in actions)
    return list(zip(fractions, actions, strict=True))


async def submit_all(
    producer: DurableWorkQueue,
    backend: Backend,
    config: Config,
    rng: random.Random,
    poison: dict[str, str],
    server_lock: trio.Lock,
) -> list[str]:
    """Submit the ordinary tasks in batches with the poison mixed in; their ids. Checkpoints.

    Each batch holds *server_lock*: an add cut off by a server restart or a
    dropped connection fails (the producer cannot know whether it was
    stored, so it does not retry), and the harness must know every task.
    """
    ids: list[str] = []
    batches = 20
    per_batch = -(-config.tasks // batches)
    kinds: list[str] = []
    if config.poison_each:
        kinds = [*POISON_TASKS, *backend.corruptions]
    pending = [kind for kind in kinds for _ in range(config.poison_each)]
    rng.shuffle(pending)
    poison_per_batch = -(-len(pending) // batches) if pending else 0
    for start in range(0, config.tasks, per_batch):
        count = min(per_batch, config.tasks - start)
        calls = [(rng.uniform(0, 2 * config.mean_seconds),) for _ in range(count)]
        async with server_lock:
            ids += [handle.id for handle in await producer.submit_many(tasks.work, calls)]
            for kind in pending[:poison_per_batch]:
                poison[await submit_poison(producer, backend, kind)] = kind
        del pending[:poison_per_batch]
        await trio.sleep(rng.uniform(0.05, 0.3))
    return ids


async def submit_poison(producer: DurableWorkQueue, backend: Backend, kind: str) -> str:
    """Submit one poison task of *kind*; its id. Checkpoints."""
    handle: DurableTaskHandle[Any]
    if kind == "surrogate result":
        handle = await producer.submit(tasks.surrogate_result)
    elif kind == "surrogate error":
        handle = await producer.submit(tasks.surrogate_error)
    elif kind == "NUL error":
        handle = await producer.submit(tasks.nul_error)
    elif kind == "raising cleanup":
        handle = await producer.submit(tasks.raising_cleanup, timeout=0.2)
    else:
        # Scheduled, so that no worker claims it before it is spoilt.
        handle = await producer.schedule(tasks.work, 0.01, delay=1.0)
        await trio.to_thread.run_sync(backend.corrupt, handle.id, kind)
    return handle.id


async def wait_for_finished(backend: Backend, count: float) -> None:
    """Wait until at least *count* tasks are finished. Checkpoints."""
    while True:  # other processes finish them: poll
        if await trio.to_thread.run_sync(backend.finished) >= count:
            return
        await trio.sleep(0.1)


async def run_backend(
    backend: Backend,
    config: Config,
    directory: Path,
    restart: Callable[[], None] | None = None,
) -> Report:
    """One chaos run on *backend*; *restart* restarts its server (PostgreSQL). Checkpoints."""
    report = Report(backend.name)
    rng = random.Random(f"{config.seed}-{backend.name}")
    workers = Workers(backend, config, directory, report)
    poison: dict[str, str] = {}
    ids: list[str] = []
    started = time.monotonic()
    try:
        async with (
            open_durable_queue(store=backend.url, workers=0) as producer,
            trio.open_nursery() as nursery,
        ):
            for _ in range(config.processes):
                await workers.start(nursery)

            submitted = trio.Event()
            server_lock = trio.Lock()  # submitting, or restarting / dropping connections

            async def submit() -> None:
                ids.extend(await submit_all(producer, backend, config, rng, poison, server_lock))
                submitted.set()

            nursery.start_soon(submit)
            poison_kinds = len(POISON_TASKS) + len(backend.corruptions)
            total = config.tasks + poison_kinds * config.poison_each
            with workers.give_up, trio.move_on_after(config.deadline) as deadline:
                for fraction, action in plan_events(backend, config, rng):
                    await wait_for_finished(backend, fraction * total)
                    report.events[action] += 1
                    if action == "kill":
                        await workers.send(signal.SIGKILL, rng, nursery)
                    elif action == "drain":
                        await workers.send(signal.SIGTERM, rng, nursery)
                    elif action == "restart":
                        assert restart is not None
                        async with server_lock:
                            await trio.to_thread.run_sync(restart)
                    else:
                        assert isinstance(backend, PostgresBackend)
                        async with server_lock:
                            await trio.to_thread.run_sync(backend.terminate_connections)
                await submitted.wait()
                await wait_for_finished(backend, len(ids) + len(poison))
            report.timed_out = deadline.cancelled_caught
            await workers.drain_all()
            nursery.cancel_scope.cancel()
    finally:
        await workers.aclose()
    report.seconds = time.monotonic() - started
    rows = await trio.to_thread.run_sync(backend.rows)
    ledger = tasks.read_ledger(str(workers.ledger))
    tally(report, ids, poison, rows, ledger, workers.killed, workers.crashed)
    return report


def tally(
    report: Report,
    ids: list[str],
    poison: dict[str, str],
    rows: dict[str, tuple[str, int, list[str]]],
    ledger: list[tuple[str, str, int, int]],
    killed: set[int],
    crashed: set[int],
) -> None:
    """Fill *report*'s figures from the rows and the ledger."""
    runs: dict[str, list[int]] = {}  # task id: the pid of each run, in order
    ended: set[str] = set()
    for event, task_id, _, pid in ledger:
        if event == "start":
            runs.setdefault(task_id, []).append(pid)
        elif event == "end":
            ended.add(task_id)
    report.submitted = len(ids) + len(poison)
    report.poison = len(poison)
    for task_id in [*ids, *poison]:
        if task_id not in rows:
            report.lost += 1
            continue
        status, _, errors = rows[task_id]
        if status not in TERMINAL:
            report.stuck += 1
        if task_id in poison:
            report.poison_failed += status == "failed"
        elif status == "completed":
            report.completed += 1
            report.lost += task_id not in ended  # completed without ever finishing a run
        elif status in TERMINAL:
            report.failed_not_poison += 1
        pids = runs.get(task_id, [])
        if len(pids) > 1:
            report.double_runs += 1
            earlier = pids[:-1]
            if all(pid in killed for pid in earlier):
                report.explained_by_kill += 1
            elif sum(pid not in killed for pid in earlier) <= errors.count(LEASE_EXPIRED_ERROR):
                report.explained_by_lease += 1
            else:
                report.unexplained += 1
                report.unexplained_crash += any(pid in crashed for pid in earlier)


# ------------------------------------------------------------------ output


def table(reports: list[Report]) -> str:
    figures: list[tuple[str, Callable[[Report], object]]] = [
        ("run time (s)", lambda r: f"{r.seconds:.1f}"),
        ("tasks submitted", lambda r: r.submitted),
        ("completed", lambda r: r.completed),
        ("failed: poison (expected)", lambda r: f"{r.poison_failed} of {r.poison}"),
        ("failed: not poison", lambda r: r.failed_not_poison),
        ("lost (no row, or no finished run)", lambda r: r.lost),
        ("stuck (non-terminal after drain)", lambda r: r.stuck),
        ("double runs", lambda r: r.double_runs),
        ("  explained by a SIGKILL", lambda r: r.explained_by_kill),
        ("  explained by an expired lease", lambda r: r.explained_by_lease),
        ("  unexplained", lambda r: r.unexplained),
        ("    (in a worker that crashed)", lambda r: r.unexplained_crash),
        ("poison failed alone", lambda r: ("yes" if r.poison_alone else "no") if r.poison else "-"),
        ("chaos events", lambda r: ", ".join(f"{k} {n}" for k, n in sorted(r.events.items()))),
        ("worker exits", lambda r: ", ".join(f"{k}: {n}" for k, n in sorted(r.exits.items()))),
    ]
    header = ["", *(r.backend for r in reports)]
    lines = [header, *([label, *(str(get(r)) or "-" for r in reports)] for label, get in figures)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

    def render(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([render(lines[0]), rule, *(render(line) for line in lines[1:])])


@contextmanager
def postgres_server() -> Generator[tuple[str, Callable[[], None]], None, None]:
    """A throwaway server (``tests/_pg_cluster.py``): its URL and its restart. Blocks."""
    sys.path.insert(0, str(ROOT / "tests"))
    from _pg_cluster import throwaway_cluster  # it lives with the tests

    with throwaway_cluster() as cluster:
        yield cluster.url, cluster.restart


async def main_async(config: Config, backends: list[str], directory: Path) -> list[Report]:
    reports: list[Report] = []
    if "sqlite" in backends:
        sqlite = SQLiteBackend(directory / "chaos.db")
        reports.append(await run_backend(sqlite, config, directory))
    if "postgres" in backends:
        with postgres_server() as (server, restart):
            reports.append(await run_backend(PostgresBackend(server), config, directory, restart))
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="CI's short run (2,000 tasks)")
    parser.add_argument("--no-poison", action="store_true", help="leave the poison tasks out")
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated")
    parser.add_argument("--tasks", type=int, help="ordinary tasks per backend")
    parser.add_argument("--seed", type=int, default=random.SystemRandom().randrange(10**6))
    args = parser.parse_args(argv)
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    if unknown := set(backends) - {"sqlite", "postgres"}:
        parser.error(f"unknown backends: {sorted(unknown)}")
    config = Config(
        tasks=args.tasks or (2000 if args.quick else 10_000),
        mean_seconds=0.15 if args.quick else 0.1,
        poison_each=0 if args.no_poison else (3 if args.quick else 10),
        events=8 if args.quick else 24,
        seed=args.seed,
        deadline=120 if args.quick else 600,
    )
    directory = Path(tempfile.mkdtemp(prefix="trio-workq-chaos-"))
    print(f"chaos: seed {config.seed}, {config.tasks} tasks per backend, logs in {directory}")
    reports = trio.run(main_async, config, backends, directory)
    print(table(reports))
    failures = [failure for report in reports for failure in report.check()]
    for failure in failures:
        print(f"FAILED: {failure}")
    if failures:
        print(f"ledgers and worker logs: {directory}")
        return 1
    shutil.rmtree(directory, ignore_errors=True)
    print("all checks passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
