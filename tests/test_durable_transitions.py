# SPDX-License-Identifier: MIT
"""Durable transitions decided by the runtime (`decide`) and applied by each store.

Lease recovery goes through the task's retry policy, backoff included: each
such test leaves a task ``running`` under a dead owner with a short lease,
then opens a queue whose reaper recovers it. A task failing while being
cancelled ends ``failed``, as in memory. On `MemoryStore`, SQLite and
PostgreSQL, in real time (no autojump clock: the stores' I/O runs in
threads), bounded by `trio.fail_after`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import trio
from _pg import require_postgres
from psycopg import sql

from trio_workq import RetryPolicy, TaskStatus, fixed
from trio_workq._core.registry import task
from trio_workq._durable.queue import LEASE_EXPIRED_ERROR, StoredError, open_durable_queue
from trio_workq._stores.memory import MemoryStore
from trio_workq._stores.protocol import NewTask, Store, StoredTask
from trio_workq._stores.urls import store_from_url

BACKOFF = 600.0  # far longer than any test runs: a recovered task must wait for it


@task(name="tests.recovery.slow_backoff", retry=RetryPolicy(max_attempts=3, backoff=fixed(BACKOFF)))
async def slow_backoff() -> str:
    return "ran"


swallowed = trio.Event()


@task(name="tests.transitions.raises_when_cancelled", retry=RetryPolicy(max_attempts=3))
async def raises_when_cancelled() -> None:
    try:
        swallowed.set()
        await trio.sleep_forever()
    except trio.Cancelled:
        raise RuntimeError("cleanup failed") from None


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store | str]:
    """The store of a test: one `MemoryStore` (each queue reopens it), or a URL."""
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tasks.db'}"
        return
    server = require_postgres()
    schema = f"twq_recovery_{uuid.uuid4().hex[:12]}"
    yield f"{server}?schema={schema}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


async def _left_running(url: Store | str, name: str, max_attempts: int) -> str:
    """Add a task and claim it for an owner that dies at once (its lease: 0.2 s)."""
    store = store_from_url(url) if isinstance(url, str) else url
    await store.open()
    try:
        payload = b'{"args":[]}'
        new = NewTask(name, payload, 0, time.time(), max_attempts, None, TaskStatus.QUEUED)
        (task_id,) = await store.add([new])
        claimed = await store.claim("dead-host:1:x", 1, 0.2)
        assert [t.id for t in claimed.tasks] == [task_id]
    finally:
        await store.aclose()
    return task_id


async def _recovered(
    url: Store | str, task_id: str, *, retry: RetryPolicy | None = None
) -> StoredTask:
    """Open a queue until its reaper has recovered *task_id*; the row right after."""
    with trio.fail_after(15):
        async with open_durable_queue(
            store=url, workers=1, lease=0.5, poll_interval=0.05, retry=retry
        ) as queue:
            while True:
                row = await queue.store.get(task_id)
                assert row is not None
                if row.status is not TaskStatus.RUNNING:
                    return row
                await trio.sleep(0.05)


async def test_recovered_task_waits_for_its_backoff(url: Store | str) -> None:
    """A task lost with its worker is retried after its policy's backoff, not at once."""
    task_id = await _left_running(url, "tests.recovery.slow_backoff", max_attempts=3)
    row = await _recovered(url, task_id)
    assert row.status is TaskStatus.RETRYING
    assert row.attempts == 1  # the lost attempt counts
    assert row.errors == (LEASE_EXPIRED_ERROR,)
    assert row.due_at is not None
    assert row.due_at > time.time() + BACKOFF - 60


async def test_unknown_name_uses_the_queue_default_policy(url: Store | str) -> None:
    """A task this process does not know is recovered with the queue's default policy."""
    task_id = await _left_running(url, "tests.recovery.nobody_registered_this", max_attempts=3)
    row = await _recovered(url, task_id, retry=RetryPolicy(max_attempts=3, backoff=fixed(BACKOFF)))
    assert row.status is TaskStatus.RETRYING
    assert row.due_at is not None
    assert row.due_at > time.time() + BACKOFF - 60


async def test_stored_max_attempts_wins(url: Store | str) -> None:
    """The stored bound wins over the policy's: a task with no attempts left fails."""
    task_id = await _left_running(url, "tests.recovery.slow_backoff", max_attempts=1)
    row = await _recovered(url, task_id)
    assert row.status is TaskStatus.FAILED
    assert row.errors == (LEASE_EXPIRED_ERROR,)


async def test_broken_backoff_fails_the_recovered_task(url: Store | str) -> None:
    """A backoff that raises fails the task with that error (the policy-error rule)."""

    def broken(attempt: int, exc: BaseException) -> float:
        raise ZeroDivisionError("broken backoff")

    task_id = await _left_running(url, "tests.recovery.nobody_registered_this", max_attempts=3)
    row = await _recovered(url, task_id, retry=RetryPolicy(max_attempts=3, backoff=broken))
    assert row.status is TaskStatus.FAILED
    assert len(row.errors) == 1
    assert row.errors[0].startswith("ZeroDivisionError: broken backoff")


async def test_task_that_swallows_cancel_and_raises_ends_failed(url: Store | str) -> None:
    """Raising another exception while being cancelled: ``failed`` with it, as in memory.

    The store and this process's events agree (before: the store recorded
    ``cancelled`` while the process announced ``failed``).
    """
    global swallowed
    swallowed = trio.Event()
    kinds: list[str] = []
    with trio.fail_after(10):
        async with open_durable_queue(store=url, workers=1, poll_interval=0.05) as queue:
            queue.add_listener(lambda event: kinds.append(event.kind.value))
            handle = await queue.submit(raises_when_cancelled)
            await swallowed.wait()
            assert await handle.cancel() is True
            with pytest.raises(StoredError, match="RuntimeError: cleanup failed"):
                await handle.result()
            info = await handle.info()
    assert info.status is TaskStatus.FAILED
    assert info.attempts == 1  # not retried
    assert kinds == ["submitted", "started", "failed"]
