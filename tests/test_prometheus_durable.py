# SPDX-License-Identifier: MIT
"""Prometheus metrics of a durable queue, on SQLite and on PostgreSQL.

Mid-workload (tasks queued, scheduled and running), the exposition is parsed
and its gauges compared with the store's counts; after the tasks end, its
counters. Each test is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import psycopg
import pytest
import trio
from _ci import unavailable
from _pg import require_postgres
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

import trio_workq
from trio_workq._core.status import TaskStatus
from trio_workq._durable.queue import open_durable_queue
from trio_workq.prometheus import instrument
from trio_workq.web import serve_dashboard

_release = trio.Event()
_started = trio.Event()


@trio_workq.task(name="metrics.blocks")
async def blocks(value: int) -> int:
    _started.set()
    await _release.wait()
    return value


@pytest.fixture
def release() -> Iterator[None]:
    global _release, _started
    _release = trio.Event()
    _started = trio.Event()
    yield
    _release.set()


@pytest.fixture
def pg_schema() -> Iterator[str]:
    url = require_postgres()
    name = f"twq_test_{uuid.uuid4().hex[:12]}"
    yield f"{url}?schema={name}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, by (name, sorted labels)."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def gauge(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return found[(f"trio_workq_{name}", (("queue", "default"),))]


def counter(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return found.get(
        (f"trio_workq_{name}_total", (("queue", "default"), ("task", "metrics.blocks"))), 0.0
    )


def promtool_check(text: bytes) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        unavailable("promtool is not installed (Debian package 'prometheus')")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, timeout=30, check=False
    )
    # promtool prints lint findings (and exits 1) for problems; clean means no output.
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert not checked.stdout.strip(), checked.stdout


async def check_mid_workload_and_after(url: str) -> None:
    registry = CollectorRegistry(auto_describe=True)
    with trio.fail_after(30):
        async with open_durable_queue(store=url, workers=1, poll_interval=0.05) as queue:
            instrumentation = instrument(queue, registry=registry, gauge_interval=0.2)
            first = await queue.submit(blocks, 1)
            waiting = [await queue.submit(blocks, value) for value in (2, 3)]
            later = await queue.schedule(blocks, 4, delay=3600)
            await _started.wait()  # the first task runs (one worker): the others wait

            await trio.sleep(0.05)  # the waiting tasks age a little
            await instrumentation.refresh_gauges()
            counts = await queue.store.counts()
            age = await queue.store.oldest_due_age()
            found = samples(generate_latest(registry))
            # The two queued tasks are due: the oldest has waited since it was submitted.
            assert age is not None
            assert 0.05 <= gauge(found, "oldest_due_task_age_seconds") <= age
            assert gauge(found, "tasks_scheduled") == counts[TaskStatus.SCHEDULED] == 1
            assert gauge(found, "tasks_queued") == counts[TaskStatus.QUEUED]
            assert gauge(found, "tasks_running") == counts[TaskStatus.RUNNING] >= 1
            assert gauge(found, "tasks_queued") + gauge(found, "tasks_running") == 3
            assert gauge(found, "tasks_retrying") == counts[TaskStatus.RETRYING] == 0
            assert gauge(found, "workers") == 1
            assert gauge(found, "workers_busy") == 1
            assert counter(found, "tasks_submitted") == 4
            assert counter(found, "tasks_completed") == 0

            _release.set()
            assert [await handle.result() for handle in (first, *waiting)] == [1, 2, 3]
            assert await later.cancel()
            # The background refresh catches up on its own within gauge_interval.
            with trio.fail_after(5):
                while True:
                    await trio.sleep(0.05)
                    found = samples(generate_latest(registry))
                    if gauge(found, "tasks_scheduled") == 0:
                        break
            assert gauge(found, "tasks_queued") == gauge(found, "tasks_running") == 0
            assert gauge(found, "oldest_due_task_age_seconds") == 0  # nothing is due
            assert counter(found, "tasks_submitted") == 4
            assert counter(found, "tasks_completed") == 3
            assert counter(found, "tasks_cancelled") == 1
            assert (
                found[
                    (
                        "trio_workq_task_run_duration_seconds_count",
                        (("queue", "default"), ("task", "metrics.blocks")),
                    )
                ]
                == 3
            )
            promtool_check(generate_latest(registry))
            instrumentation.uninstrument()
            # Uninstrumented: the gauges go, the counters stay.
            found = samples(generate_latest(registry))
            assert ("trio_workq_tasks_queued", (("queue", "default"),)) not in found
            assert counter(found, "tasks_completed") == 3


@pytest.mark.usefixtures("release")
async def test_sqlite_queue_metrics(tmp_path: Path) -> None:
    await check_mid_workload_and_after(f"sqlite:///{tmp_path}/tasks.db")


@pytest.mark.usefixtures("release")
async def test_postgres_queue_metrics(pg_schema: str) -> None:
    await check_mid_workload_and_after(pg_schema)


@pytest.mark.usefixtures("release")
async def test_durable_dashboard_serves_metrics(tmp_path: Path) -> None:
    """``/metrics`` of a durable dashboard answers with the store's counts from the first scrape."""
    url = f"sqlite:///{tmp_path}/tasks.db"
    with trio.fail_after(20):
        async with (
            open_durable_queue(store=url, workers=0) as queue,
            trio.open_nursery() as nursery,
        ):
            await queue.submit(blocks, 1)
            await queue.schedule(blocks, 2, delay=3600)
            base: str = await nursery.start(partial(serve_dashboard, queue, port=0))
            async with httpx.AsyncClient(base_url=base) as client:
                response = await client.get("/metrics")
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/plain")
                found = samples(response.content)
                assert gauge(found, "tasks_queued") == 1
                assert gauge(found, "tasks_scheduled") == 1
                assert gauge(found, "workers") == 0
                assert gauge(found, "oldest_due_task_age_seconds") > 0
                promtool_check(response.content)
            nursery.cancel_scope.cancel()


async def test_gauge_interval_is_checked(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_durable_queue(store=f"sqlite:///{tmp_path}/t.db", workers=0) as queue:
            registry = CollectorRegistry(auto_describe=True)
            with pytest.raises(ValueError, match="gauge_interval must be positive"):
                instrument(queue, registry=registry, gauge_interval=0)
            with pytest.raises(TypeError, match="gauge_interval must be a number"):
                instrument(queue, registry=registry, gauge_interval="2")  # type: ignore[arg-type]


async def test_scrape_from_another_thread_reads_the_cache(tmp_path: Path) -> None:
    """A scrape from a thread (start_http_server's) gets the last reading, with no store call."""
    with trio.fail_after(20):
        async with open_durable_queue(store=f"sqlite:///{tmp_path}/t.db", workers=0) as queue:
            registry = CollectorRegistry(auto_describe=True)
            instrumentation = instrument(queue, registry=registry, gauge_interval=3600)
            await queue.submit(blocks, 1)
            await instrumentation.refresh_gauges()
            await queue.submit(blocks, 2)  # not read yet: the next reading is an hour away
            text = await trio.to_thread.run_sync(generate_latest, registry)
            assert gauge(samples(text), "tasks_queued") == 1
            instrumentation.uninstrument()
