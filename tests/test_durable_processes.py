# SPDX-License-Identifier: MIT
"""Durable queues across processes: restarts, crashes, sharing one SQLite file, cancel.

Worker processes run ``python -m trio_workq worker durable_helper`` (the real
command line); their tasks append ``EVENT KEY PID`` lines to a log file, which
tells exactly how often each task ran and where. The store itself is read
with plain ``sqlite3`` to check rows.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import _readonly_store
import durable_helper as helper
import pytest
import trio
from _worker_processes import TESTS, WorkerProcesses

import trio_workq
from trio_workq import TaskStatus
from trio_workq._cli import main as cli_main
from trio_workq._durable.queue import DurableWorkQueue, open_durable_queue


class Env(WorkerProcesses):
    """One test's database and log file, and the worker processes it starts."""

    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "tasks.db"
        super().__init__(tmp_path, f"sqlite:///{self.db}")

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute(sql, params).fetchall()

    async def wait_for_completed(self, count: int, *, within: float = 60) -> None:
        with trio.fail_after(within):
            while True:
                done = self.rows("SELECT COUNT(*) FROM tasks WHERE status = 'completed'")[0][0]
                if done >= count:
                    return
                await trio.sleep(0.05)


@pytest.fixture
async def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Env]:
    environment = Env(tmp_path)
    monkeypatch.setenv(helper.LOG_ENV, str(environment.log))  # for tasks run in this process
    try:
        yield environment
    finally:
        await environment.aclose()


@pytest.fixture
async def producer(env: Env) -> AsyncIterator[DurableWorkQueue]:
    """A queue without workers in the test process: it submits and inspects."""
    async with open_durable_queue(store=env.url, workers=0) as queue:
        yield queue


async def submit_many(queue: DurableWorkQueue, fn: Any, calls: list[tuple[Any, ...]]) -> list[str]:
    """Submit from 20 concurrent producers (their commits are grouped); return the ids in order."""
    ids: list[str] = [""] * len(calls)

    async def produce(start: int) -> None:
        for index in range(start, len(calls), 20):
            ids[index] = (await queue.submit(fn, *calls[index])).id

    async with trio.open_nursery() as nursery:
        for start in range(20):
            nursery.start_soon(produce, start)
    return ids


async def test_restart_every_task_completes_exactly_once(
    env: Env, producer: DurableWorkQueue
) -> None:
    """Stop one worker process mid-run (SIGTERM), start another: every task completes once."""
    with trio.fail_after(80):
        ids = await submit_many(producer, helper.work, [(key, 0.05) for key in range(60)])
        first = await env.start_worker(
            "--workers", "4", "--lease", "2", "--shutdown-timeout", "0.2"
        )
        await env.wait_for_log("end", 10)
        assert await env.stop(first) == 0, env.worker_output()
        assert "stopping; running tasks have 0.2 s to finish" in env.worker_output()
        # A graceful stop leaves nothing running: interrupted tasks were given back.
        assert env.rows("SELECT COUNT(*) FROM tasks WHERE status = 'running'") == [(0,)]
        ended_first = {key for event, key, _ in env.runs() if event == "end"}
        assert 10 <= len(ended_first) < 60

        second = await env.start_worker("--workers", "4", "--lease", "2")
        await env.wait_for_completed(60)
        assert await env.stop(second) == 0

    ends = Counter(key for event, key, _ in env.runs() if event == "end")
    assert ends == Counter(range(60))  # every task completed exactly once
    pids = {pid for _, _, pid in env.runs()}
    assert pids == {first.pid, second.pid}
    # Interrupted attempts were given back without counting: each task has one attempt.
    assert env.rows("SELECT DISTINCT attempts FROM tasks") == [(1,)]
    assert len(ids) == 60


async def test_crash_recovery(env: Env, producer: DurableWorkQueue) -> None:
    """SIGKILL a worker mid-run: its tasks are recovered after the lease; only they run twice."""
    with trio.fail_after(80):
        # 40 tasks of 0.3 s on 4 slots take 3 s: killed after 4 ends, the worker still
        # holds tasks even when the machine is loaded and this poll lags.
        ids = await submit_many(producer, helper.work, [(key, 0.3) for key in range(40)])
        key_of = dict(zip(ids, range(40), strict=True))
        victim = await env.start_worker("--workers", "4", "--lease", "1")
        await env.wait_for_log("end", 4)
        await env.stop(victim, signal.SIGKILL)
        held = {
            key_of[str(row[0])] for row in env.rows("SELECT id FROM tasks WHERE status = 'running'")
        }
        assert held  # the worker died holding tasks

        async with open_durable_queue(store=env.url, workers=4, lease=1, poll_interval=0.05):
            await env.wait_for_completed(40, within=30)

    runs = env.runs()
    starts = Counter(key for event, key, _ in runs if event == "start")
    ends = Counter(key for event, key, _ in runs if event == "end")
    assert set(ends) == set(range(40))  # none lost
    assert {key for key, count in starts.items() if count > 1} <= held
    assert {key for key, count in ends.items() if count > 1} <= held
    attempts = {key_of[str(id_)]: n for id_, n in env.rows("SELECT id, attempts FROM tasks")}
    # The tasks the dead worker held count one attempt more (the lost one).
    assert {key for key, n in attempts.items() if n == 2} == held
    assert {key for key, n in attempts.items() if n == 1} == set(range(40)) - held


async def test_two_processes_share_one_file(env: Env, producer: DurableWorkQueue) -> None:
    """Two worker processes on one SQLite file run 10,000 tasks; none is claimed twice."""
    with trio.fail_after(85):
        workers = [await env.start_worker("--workers", "10", "--lease", "5") for _ in range(2)]
        await submit_many(producer, helper.quick, [(key,) for key in range(10_000)])
        await env.wait_for_completed(10_000, within=70)
        for process in workers:
            assert await env.stop(process) == 0, env.worker_output()

    runs = env.runs()
    assert Counter(key for _, key, _ in runs) == Counter(range(10_000))  # each ran exactly once
    by_process = Counter(pid for _, _, pid in runs)
    assert set(by_process) == {process.pid for process in workers}  # both took part
    assert env.rows("SELECT status, attempts, COUNT(*) FROM tasks GROUP BY 1, 2") == [
        ("completed", 1, 10_000)
    ]


async def test_cross_process_cancel(env: Env, producer: DurableWorkQueue) -> None:
    """A running task is cancelled by its worker process within about a second."""
    with trio.fail_after(40):
        worker = await env.start_worker("--workers", "2")
        handle = await producer.submit(helper.block, 7)
        await env.wait_for_log("start", 1)
        start = trio.current_time()
        assert await handle.cancel() is True
        while True:
            if (await handle.info()).status is TaskStatus.CANCELLED:
                break
            await trio.sleep(0.02)
        elapsed = trio.current_time() - start
        assert elapsed <= 1.5
        with pytest.raises(trio_workq.TaskCancelled):
            await handle.result()
        assert ("stopped", 7, worker.pid) in env.runs()
        assert await env.stop(worker) == 0


async def test_second_signal_gives_tasks_back_at_once(env: Env, producer: DurableWorkQueue) -> None:
    """A second SIGTERM stops a worker at once; its running task is queued again."""
    with trio.fail_after(40):
        worker = await env.start_worker("--workers", "1", "--shutdown-timeout", "60")
        handle = await producer.submit(helper.block, 1)
        await env.wait_for_log("start", 1)
        worker.send_signal(signal.SIGTERM)
        await trio.sleep(0.3)
        assert worker.returncode is None  # waiting for the running task
        assert await env.stop(worker) == 128 + signal.SIGTERM
    info = await handle.info()
    assert (info.status, info.attempts) == (TaskStatus.QUEUED, 0)


class TestCommandLine:
    def test_worker_bad_inputs(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The worker command exits 1 with a clear message for what the user got wrong."""
        monkeypatch.setattr(sys, "path", [str(TESTS), *sys.path])
        url = f"sqlite:///{tmp_path}/tasks.db"
        cases = [
            (["no_such_module_xyz", "--store", url], "cannot import 'no_such_module_xyz'"),
            (["durable_helper", "--store", "redis://x"], "unsupported store URL 'redis://x'"),
            (
                ["durable_helper", "--store", f"sqlite:///{tmp_path}/missing/t.db"],
                "does not exist",
            ),
        ]
        for arguments, message in cases:
            assert cli_main(["worker", *arguments]) == 1
            assert message in capsys.readouterr().err
        assert cli_main(["worker", "durable_helper"]) == 2  # --store is required
        assert "--store" in capsys.readouterr().err

    def test_worker_without_registered_tasks(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A module that registers no task is reported (when none are registered at all)."""
        monkeypatch.setattr(trio_workq._core.registry, "_by_name", {})
        assert cli_main(["worker", "json", "--store", f"sqlite:///{tmp_path}/t.db"]) == 1
        assert "no tasks are registered after importing json" in capsys.readouterr().err

    def test_tasks_commands(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """tasks list|show|cancel|retry inspect and change a store from outside."""
        url = f"sqlite:///{tmp_path}/tasks.db"

        async def prepare() -> list[str]:
            async with open_durable_queue(store=url, workers=0) as queue:
                waiting = await queue.submit(helper.quick, 1)
                doomed = await queue.submit(helper.quick, 2)
                await queue.cancel(doomed.id)
                return [waiting.id, doomed.id]

        waiting, doomed = trio.run(prepare)
        capsys.readouterr()

        assert cli_main(["tasks", "list", "--store", url]) == 0
        out = capsys.readouterr().out
        assert out.splitlines()[0].split() == [
            "ID", "STATUS", "NAME", "ATTEMPTS", "CREATED", "LAST", "ERROR"
        ]  # fmt: skip
        assert re.search(rf"^{doomed} +cancelled +helper\.quick +0/1 ", out, re.MULTILINE)
        assert re.search(rf"^{waiting} +queued +helper\.quick +0/1 ", out, re.MULTILINE)

        assert cli_main(["tasks", "list", "--store", url, "--status", "queued", "--json"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 1
        assert '"status": "queued"' in lines[0]

        assert cli_main(["tasks", "show", waiting, "--store", url]) == 0
        out = capsys.readouterr().out
        assert "status:    queued" in out
        assert 'arguments: {"args": [1]}' in out

        assert cli_main(["tasks", "retry", doomed, "--store", url]) == 0
        assert "queued again" in capsys.readouterr().out
        assert cli_main(["tasks", "cancel", waiting, "--store", url]) == 0
        assert "cancelled" in capsys.readouterr().out

        # Errors: exit status 1 and one clear line.
        for arguments, message in (
            (["show", "987654"], "no task with id '987654'"),
            (["cancel", waiting], "has already finished (cancelled)"),
            (["retry", doomed], "only failed or cancelled tasks can be retried"),
        ):
            assert cli_main(["tasks", *arguments, "--store", url]) == 1
            assert message in capsys.readouterr().err
        assert cli_main(["tasks", "list", "--store", f"sqlite:///{tmp_path}/none.db"]) == 1
        assert "no SQLite store at" in capsys.readouterr().err
        assert cli_main(["tasks", "list", "--store", "mysql://x"]) == 1
        assert "unsupported store URL" in capsys.readouterr().err
        assert cli_main(["tasks", "list", "--store", url, "--limit", "5000"]) == 1
        assert "--limit must be at most 1000" in capsys.readouterr().err

    def test_tasks_show_decodes_with_the_serializer_option(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """tasks show decodes arguments with --serializer; bytes it cannot decode show as a size."""
        url = f"sqlite:///{tmp_path}/pickled.db"

        async def prepare() -> str:
            async with open_durable_queue(
                store=url, workers=0, serializer=trio_workq.PickleSerializer()
            ) as queue:
                return (await queue.submit(helper.quick, 3)).id

        task_id = trio.run(prepare)
        capsys.readouterr()
        argv = ["tasks", "show", task_id, "--store", url, "--json", "--serializer", "pickle"]
        assert cli_main(argv) == 0
        assert json.loads(capsys.readouterr().out)["arguments"] == {"args": [3]}
        assert cli_main(["tasks", "show", task_id, "--store", url]) == 0
        out = capsys.readouterr().out
        assert re.search(
            r'^arguments: "<\d+ bytes that JSONSerializer\(\) cannot show>"$', out, re.M
        )


async def test_worker_on_a_read_only_store_reports_and_stops(tmp_path: Path) -> None:
    """`trio-workq worker` logs store failures to stderr (no -v) and exits 1 after the grace."""
    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    async with open_durable_queue(store=url, workers=0) as queue:
        await queue.submit(_readonly_store.noop)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    env[_readonly_store.READ_ONLY_ENV] = "1"
    command = [sys.executable, "-m", "trio_workq", "worker", "_readonly_store", "--store", url]
    options = ["--poll-interval", "0.05", "--store-failure-grace", "1"]
    start = trio.current_time()
    with trio.fail_after(30):
        done = await trio.run_process(
            [*command, *options], env=env, capture_stdout=True, capture_stderr=True, check=False
        )
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert trio.current_time() - start >= 1
    lines = err.splitlines()
    assert any(
        line.startswith("trio-workq: warning: claiming tasks failed")
        and "attempt to write a readonly database" in line
        for line in lines
    ), err
    assert lines[-1].startswith("trio-workq: error: every store operation has failed for "), err
    assert "Traceback" not in err


def test_read_only_commands_refuse_a_missing_postgres_schema(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """tasks list, tasks show and dashboard on a schema without a store: exit 1, nothing created."""
    import psycopg  # the postgres extra: only this test needs it
    from _pg import require_postgres

    pg_url = require_postgres()
    schema = f"missing_{secrets.token_hex(6)}"
    url = f"{pg_url}?schema={schema}"
    for command in (
        ["tasks", "list"],
        ["tasks", "show", "1"],
        ["dashboard", "--port", "0"],
    ):
        assert cli_main([*command, "--store", url]) == 1, command
        err = capsys.readouterr().err
        assert f"(schema {schema}): the schema holds no trio_workq store" in err, err
    with psycopg.connect(pg_url) as conn:
        found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]).fetchone()
    assert found is None
