# SPDX-License-Identifier: MIT
"""The web dashboard of a durable store (``trio-workq dashboard``, ``worker --dashboard``).

A real Hypercorn server on 127.0.0.1, port 0, over a real SQLite store, or
the app in-process; each test is bounded by ``trio.fail_after``. The
throughput chart runs in virtual time, on `trio_workq.testing.MemoryStore`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import durable_helper as helper
import httpx
import pytest
import trio
import trio.testing

import trio_workq
from trio_workq._durable.queue import open_durable_queue
from trio_workq.testing import MemoryStore
from trio_workq.web import create_app, serve_dashboard
from trio_workq.web._source import QueueSource

TESTS = Path(__file__).parent


async def started(events: trio_workq.EventStream) -> None:
    """Wait for the next task to start (as its worker's queue announces it)."""
    async for event in events:
        if event.kind is trio_workq.EventKind.STARTED:
            return


@trio_workq.task(name="dashboard.fails")
async def fails(message: str) -> None:
    await trio.lowlevel.checkpoint()
    raise ValueError(message)


@trio_workq.task(name="dashboard.ok")
async def ok(value: int) -> int:
    await trio.lowlevel.checkpoint()
    return value


@trio_workq.task(name="dashboard.block")
async def block() -> None:
    await trio.sleep_forever()


@trio_workq.task(name="dashboard.keywords")
async def keywords(a: int, *, b: str) -> None:
    await trio.lowlevel.checkpoint()


async def test_dashboard_over_a_store(tmp_path: Path) -> None:
    """The REST API lists, shows, cancels and retries the store's tasks."""
    url = f"sqlite:///{tmp_path}/tasks.db"
    with trio.fail_after(20):
        async with open_durable_queue(store=url, workers=1, lease=1) as worker:
            failed = await worker.submit(fails, "broken")
            with pytest.raises(trio_workq.StoredError):
                await failed.result()
            done = await worker.submit(ok, 5)
            await done.result()
        async with (
            open_durable_queue(store=url, workers=0) as queue,
            trio.open_nursery() as nursery,
        ):
            waiting = await queue.submit(ok, 6)
            base: str = await nursery.start(partial(serve_dashboard, queue, port=0))
            async with httpx.AsyncClient(base_url=base) as client:
                stats = (await client.get("/api/stats")).json()
                assert stats["counts"]["completed"] == 1
                assert stats["counts"]["failed"] == 1
                assert stats["counts"]["queued"] == 1
                # No workers in this process: the page says so instead of an empty panel.
                assert stats["workers"] == stats["busy_workers"] == 0
                assert stats["utilization"] is None
                assert stats["workers_scope"] == "none"
                assert stats["retained"] is None
                assert stats["closed"] is False

                listing = (await client.get("/api/tasks")).json()
                assert [task["id"] for task in listing["tasks"]] == [waiting.id, done.id, failed.id]
                assert listing["tasks"][2]["error"] == "ValueError: broken"

                detail = (await client.get(f"/api/tasks/{failed.id}")).json()
                assert detail["errors"][0]["summary"] == "ValueError: broken"
                assert "Traceback" in detail["errors"][0]["traceback"]
                assert detail["args"] == "('broken',)"  # as an in-memory task's

                response = await client.post(f"/api/tasks/{waiting.id}/cancel")
                assert response.status_code == 200
                assert response.json()["status"] == "cancelled"
                response = await client.post(f"/api/tasks/{waiting.id}/cancel")
                assert response.status_code == 409  # already finished

                response = await client.post(f"/api/tasks/{failed.id}/retry")
                assert response.status_code == 200
                assert response.json()["status"] == "queued"
                response = await client.post(f"/api/tasks/{done.id}/retry")
                assert response.status_code == 409

                assert (await client.get("/api/tasks/999999")).status_code == 404
                chart = (await client.get("/api/throughput")).json()
                assert len(chart["completed"]) == 300
            nursery.cancel_scope.cancel()


async def test_workers_of_this_process(tmp_path: Path) -> None:
    """A durable queue with workers here reports them, as this process's (scope "process")."""
    url = f"sqlite:///{tmp_path}/tasks.db"
    with trio.fail_after(20):
        async with open_durable_queue(store=url, workers=2, poll_interval=0.05) as queue:
            transport = httpx.ASGITransport(app=create_app(queue))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                stats = (await client.get("/api/stats")).json()
                assert (stats["workers"], stats["busy_workers"]) == (2, 0)
                assert stats["utilization"] == 0.0
                assert stats["workers_scope"] == "process"
                async with queue.subscribe() as events:
                    running = await queue.submit(block)
                    await started(events)
                stats = (await client.get("/api/stats")).json()
                assert (stats["workers"], stats["busy_workers"]) == (2, 1)
                assert stats["utilization"] == 0.5
                assert stats["counts"]["running"] == 1
                response = await client.post(f"/api/tasks/{running.id}/cancel")
                assert response.status_code == 200
                assert (await running.info()).status is not trio_workq.TaskStatus.COMPLETED
                with pytest.raises(trio_workq.TaskCancelled):
                    await running.result()
                stats = (await client.get("/api/stats")).json()
                assert stats["busy_workers"] == 0
                assert stats["counts"]["cancelled"] == 1


async def test_health_follows_the_shutdown(tmp_path: Path) -> None:
    """/healthz and /api/stats say closing once a durable queue's shutdown begins."""
    url = f"sqlite:///{tmp_path}/tasks.db"
    with trio.fail_after(20):
        async with open_durable_queue(store=url, workers=1, poll_interval=0.05) as queue:
            transport = httpx.ASGITransport(app=create_app(queue))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert (await client.get("/healthz")).status_code == 200
                async with queue.subscribe() as events:
                    running = await queue.submit(block)
                    await started(events)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(queue.shutdown)
                    await trio.testing.wait_all_tasks_blocked()  # the shutdown has begun
                    response = await client.get("/healthz")
                    assert (response.status_code, response.json()) == (503, {"status": "closing"})
                    assert (await client.get("/api/stats")).json()["closed"] is True
                    await queue.cancel(running.id)  # lets the shutdown finish


async def test_arguments_with_keywords(tmp_path: Path) -> None:
    """Stored keyword arguments follow the positional ones; unreadable bytes show as a size."""
    url = f"sqlite:///{tmp_path}/t.db"
    with trio.fail_after(20):
        async with open_durable_queue(store=url, workers=0) as queue:
            handle = await queue.submit(partial(keywords, b="x"), 1)
            bare = await queue.submit(block)
            source = QueueSource(queue)
            assert (await source.get(handle.id)).args == "(1,) {'b': 'x'}"
            assert (await source.get(bare.id)).args == "()"
        # A dashboard told the wrong serializer still shows the task.
        pickle = trio_workq.PickleSerializer()
        async with open_durable_queue(store=url, workers=0, serializer=pickle) as queue:
            detail = await QueueSource(queue).get(handle.id)
            assert detail.args is not None
            assert detail.args.endswith("bytes the serializer cannot read>")


async def test_throughput_spreads_the_store_counts_between_polls(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The chart adds the growth of the store's finished counts, spread between two polls."""
    async with open_durable_queue(store=MemoryStore(), workers=4, poll_interval=0.5) as queue:
        source = QueueSource(queue)

        async def run(count: int, *, failing: int = 0) -> None:
            for value in range(count):
                await (await queue.submit(ok, value)).wait()
            for _ in range(failing):
                await (await queue.submit(fails, "no")).wait()

        first = await source.throughput()
        assert sum(first.completed) == sum(first.failed) == 0
        assert len(first.completed) == len(first.failed) == 300
        start = trio.current_time()
        await run(3, failing=1)
        await trio.sleep_until(start + 1)
        series = await source.throughput()
        # A poll a second after the previous one: all in the current second.
        assert series.completed[-1] == 3
        assert series.failed[-1] == 1
        assert sum(series.completed) == 3
        second = int(trio.current_time())
        assert series.end == queue.wall_time(second + 1)

        # Ten seconds between polls: ten tasks, one per second.
        await run(10)
        await trio.sleep_until(start + 11)
        series = await source.throughput()
        assert series.completed[-10:] == (1,) * 10
        assert series.completed[-11] == 3
        assert sum(series.completed) == 13

        # Six tasks over 600 seconds: half the gap is older than the window.
        await run(6)
        await trio.sleep_until(start + 611)
        series = await source.throughput()
        assert sum(series.completed) == 3
        assert sum(series.failed) == 0
        assert isinstance(series.end, datetime)
        source.close()


async def test_overlapping_polls_count_each_task_once(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two tabs polling at once: a slow reading answered after a newer one adds nothing twice."""
    store = MemoryStore()
    async with open_durable_queue(store=store, workers=2, poll_interval=0.5) as queue:
        source = QueueSource(queue)
        await source.throughput()  # the first reading: nothing yet
        for value in range(4):
            await (await queue.submit(ok, value)).wait()
        real_counts = store.counts
        late = [2.0]  # the first reading below answers two seconds late

        async def counts() -> Any:
            reading = await real_counts()
            await trio.sleep(late.pop() if late else 0)
            return reading

        monkeypatch.setattr(store, "counts", counts)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(source.throughput)  # reads 4 finished, answers late
            await trio.sleep(0.5)
            for value in range(2):
                await (await queue.submit(ok, value)).wait()
            nursery.start_soon(source.throughput)  # would read 6 and answer first
        await trio.sleep(1)
        series = await source.throughput()
        assert sum(series.completed) == 6
        source.close()


async def test_detail_of_a_task_purged_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task purged between the detail's two reads of the store is not found (a 404)."""
    url = f"sqlite:///{tmp_path}/tasks.db"
    with trio.fail_after(20):
        async with open_durable_queue(store=url, workers=0) as queue:
            handle = await queue.submit(ok, 1)
            store = queue.store
            real_get = store.get
            reads: list[str] = []

            async def purged_after_first_read(task_id: str) -> Any:
                reads.append(task_id)
                row = await real_get(task_id)
                return row if len(reads) == 1 else None

            monkeypatch.setattr(store, "get", purged_after_first_read)
            with pytest.raises(trio_workq.TaskNotFound, match="unknown, or purged"):
                await QueueSource(queue).get(handle.id)
            assert reads == [handle.id, handle.id]


def test_dashboard_command(tmp_path: Path) -> None:
    """``trio-workq dashboard --store`` serves until SIGINT; bad stores exit 1."""
    db = tmp_path / "tasks.db"

    async def prepare() -> None:
        async with open_durable_queue(store=f"sqlite:///{db}", workers=0) as queue:
            await queue.submit(ok, 1)

    trio.run(prepare)
    command = [sys.executable, "-m", "trio_workq", "dashboard", "--store", f"sqlite:///{db}"]
    with subprocess.Popen([*command, "--port", "0"], stderr=subprocess.PIPE, text=True) as process:
        try:
            assert process.stderr is not None
            line = process.stderr.readline()
            assert "dashboard for sqlite:///" in line
            base = line.split(" at ", 1)[1].split(" ", 1)[0]
            stats = httpx.get(base + "api/stats", timeout=10).json()
            assert stats["counts"]["queued"] == 1
            assert (stats["workers"], stats["workers_scope"]) == (0, "none")
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=20) == 0
        finally:
            process.kill()
    missing: Any = subprocess.run(
        [sys.executable, "-m", "trio_workq", "dashboard", "--store", f"sqlite:///{tmp_path}/x.db"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1
    assert "no SQLite store at" in missing.stderr
    public = subprocess.run(
        [*command, "--host", "0.0.0.0", "--port", "0"], capture_output=True, text=True, timeout=60
    )
    assert public.returncode == 1
    assert "without a token" in public.stderr


def test_worker_command_serves_the_dashboard(tmp_path: Path) -> None:
    """``trio-workq worker --dashboard`` serves the store's tasks and this worker's workers."""
    url = f"sqlite:///{tmp_path}/tasks.db"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    env[helper.LOG_ENV] = str(tmp_path / "runs.log")
    command = [sys.executable, "-m", "trio_workq", "worker", "durable_helper", "--store", url]
    options = ["--workers", "3", "--poll-interval", "0.05", "--shutdown-timeout", "0"]
    with subprocess.Popen(
        [*command, *options, "--dashboard", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as process:
        try:
            assert process.stderr is not None
            assert "serving sqlite:///" in process.stderr.readline()
            line = process.stderr.readline()
            assert line.startswith("trio-workq: dashboard at http://127.0.0.1:"), line
            base = line.rsplit(" ", 1)[1].strip()

            async def submit_and_watch() -> dict[str, Any]:
                async with open_durable_queue(store=url, workers=0) as queue:
                    handle = await queue.submit(helper.block, 1)
                    with trio.fail_after(20):
                        async with httpx.AsyncClient(base_url=base) as client:
                            while True:
                                stats: dict[str, Any] = (await client.get("api/stats")).json()
                                if stats["busy_workers"]:
                                    break
                                await trio.sleep(0.05)
                            await client.post(f"api/tasks/{handle.id}/cancel")
                    return stats

            stats = trio.run(submit_and_watch)
            assert (stats["workers"], stats["busy_workers"]) == (3, 1)
            assert stats["workers_scope"] == "process"
            assert stats["counts"]["running"] == 1
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=20) == 0
        finally:
            process.kill()
    refused = subprocess.run(
        [*command, "--dashboard", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert refused.returncode == 1
    assert "without a token" in refused.stderr
    assert "serving" not in refused.stderr  # refused before the worker started
