# SPDX-License-Identifier: MIT
"""The web dashboard over a durable store (what ``trio-workq dashboard --store`` serves).

A real Hypercorn server on 127.0.0.1, port 0, over a real SQLite store; each
test is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

import trio_workq
from trio_workq._durable.queue import open_durable_queue
from trio_workq.web import serve_dashboard
from trio_workq.web._durable_source import DurableSource


@trio_workq.task(name="dashboard.fails")
async def fails(message: str) -> None:
    await trio.lowlevel.checkpoint()
    raise ValueError(message)


@trio_workq.task(name="dashboard.ok")
async def ok(value: int) -> int:
    await trio.lowlevel.checkpoint()
    return value


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
                assert stats["workers"] is None

                listing = (await client.get("/api/tasks")).json()
                assert [task["id"] for task in listing["tasks"]] == [waiting.id, done.id, failed.id]
                assert listing["tasks"][2]["error"] == "ValueError: broken"

                detail = (await client.get(f"/api/tasks/{failed.id}")).json()
                assert detail["errors"][0]["summary"] == "ValueError: broken"
                assert "Traceback" in detail["errors"][0]["traceback"]
                assert "broken" in detail["args"]

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


async def test_throughput_counts_finished_tasks_between_polls(tmp_path: Path) -> None:
    """The chart attributes tasks finished since the previous poll to the current second."""
    url = f"sqlite:///{tmp_path}/tasks.db"
    with trio.fail_after(20):
        async with open_durable_queue(store=url, workers=1, lease=1) as queue:
            source = DurableSource(queue)
            first = await source.throughput()
            assert sum(first.completed) == 0
            for value in range(3):
                await (await queue.submit(ok, value)).result()
            second = await source.throughput()
            assert sum(second.completed) == 3
            assert second.completed[-1] == 3 or second.completed[-2] == 3
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
                await DurableSource(queue).get(handle.id)
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
            response = httpx.get(base + "api/stats", timeout=10)
            assert response.json()["counts"]["queued"] == 1
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
