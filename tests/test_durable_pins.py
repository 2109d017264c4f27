# SPDX-License-Identifier: MIT
"""Durable-queue behaviours that a mutation run showed no other test pins down.

Each test here fails when a one-line break of the behaviour it names is
applied (the breaks are listed in the docstrings). Every test runs on
SQLite and on PostgreSQL (its own schema, dropped afterwards; without a
server the PostgreSQL half skips locally and fails when ``CI`` is set).

They use real time, with small intervals and tight ``trio.fail_after``
bounds, not ``autojump_clock``: both stores work in threads, and while a
store call runs (opening the store, before any timer of the queue exists)
the mock clock jumps straight to the next deadline, which is the test's
own limit.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import outcome
import psycopg
import pytest
import trio
from _pg import require_postgres
from psycopg import sql

import trio_workq
from trio_workq import RetryPolicy, TaskCancelled, TaskNotFound, TaskStatus, _durable, fixed
from trio_workq._durable import StoredError, open_durable_queue
from trio_workq._registry import task

# ---------------------------------------------------------------- the tasks

gate = trio.Event()  # replaced by each test that uses it
started: list[int] = []


@task
async def quick(key: int) -> int:
    await trio.lowlevel.checkpoint()
    return key


@task
async def noted(key: int) -> int:
    """Returns *key*, noting its run in `started`."""
    started.append(key)
    await trio.lowlevel.checkpoint()
    return key


@task
async def always_fails() -> None:
    """Fails every attempt; registered without a policy, so the queue's default applies."""
    await trio.lowlevel.checkpoint()
    raise OSError(f"attempt {trio_workq.current_task().attempts} failed")


@task(retry=None)
async def gated(key: int, how: str) -> int:
    """Waits for `gate`, then returns *key* or (``how == "fail"``) raises."""
    started.append(key)
    await gate.wait()
    if how == "fail":
        raise ValueError(f"task {key} failed")
    return key


# -------------------------------------------------------------- fixtures


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """A fresh store: an SQLite file, or a PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/tasks.db"
        return
    pg_url = require_postgres()
    schema = f"twq_pins_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in pg_url else "?"
    yield f"{pg_url}{separator}schema={schema}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(autouse=True)
def _fresh_gate() -> None:
    global gate
    gate = trio.Event()
    started.clear()


async def wait_until_started(count: int, *, within: float = 5.0) -> None:
    with trio.fail_after(within):
        while True:  # the tasks run in this process, but a claim goes through the store
            if len(started) >= count:
                return
            await trio.sleep(0.005)


# ------------------------------------------------------------------ tests


class TestRetention:
    @pytest.fixture(autouse=True)
    def _short_purge_interval(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # Real time (see the module docstring), so the reaper must purge often.
        monkeypatch.setattr(_durable, "PURGE_INTERVAL", 0.1)

    async def test_maintenance_purges_tasks_past_their_retention(self, url: str) -> None:
        """The queue's own maintenance purges finished tasks; unfinished ones stay.

        Pins the reaper's call of ``purge_finished`` (the store's purge alone
        is tested elsewhere). Breaks caught: the reaper never purges; it
        purges only once, at start.
        """
        async with open_durable_queue(store=url, workers=1, lease=0.4, retention=0) as queue:
            # Not result(): a purge with retention=0 may well come before its read.
            done = await queue.submit(noted, 1)
            await wait_until_started(1)
            waiting = await queue.schedule(quick, 2, delay=3600)
            with trio.fail_after(3):
                while True:
                    try:
                        await done.info()
                    except TaskNotFound:
                        break
                    await trio.sleep(0.02)
            assert (await waiting.info()).status is TaskStatus.SCHEDULED

    async def test_finished_tasks_are_kept_for_their_retention(self, url: str) -> None:
        """A finished task younger than the retention, or with ``retention=None``, stays."""
        for retention in (3600, None):
            async with open_durable_queue(
                store=url, workers=1, lease=0.4, retention=retention
            ) as queue:
                done = await queue.submit(quick, 1)
                assert await done.result() == 1
                await trio.sleep(0.5)  # several maintenance passes
                assert (await done.info()).status is TaskStatus.COMPLETED


class TestStoredMaxAttempts:
    @pytest.mark.parametrize(("at_submit", "at_run"), [(3, 1), (2, 5)])
    async def test_the_bound_stored_at_submit_wins(
        self, url: str, at_submit: int, at_run: int
    ) -> None:
        """A task runs as many attempts as its stored ``max_attempts``, not the worker's policy.

        The submitting process and the worker process have different default
        policies (a deploy changed it in between): the one in force at
        submit is stored and honoured. Breaks caught: the worker checks, or
        backs off with, its own policy's ``max_attempts``.
        """
        submit_policy = RetryPolicy(max_attempts=at_submit, backoff=fixed(0))
        async with open_durable_queue(store=url, workers=0, retry=submit_policy) as producer:
            handle = await producer.submit(always_fails)
            task_id = handle.id
        run_policy = RetryPolicy(max_attempts=at_run, backoff=fixed(0))
        async with open_durable_queue(
            store=url, workers=1, lease=1, poll_interval=0.05, retry=run_policy
        ) as queue:
            with trio.fail_after(5), pytest.raises(StoredError) as failed:
                await queue.get_handle(task_id).result()
            info = await queue.get_info(task_id)
        assert str(failed.value) == f"OSError: attempt {at_submit} failed"
        assert info.status is TaskStatus.FAILED
        assert info.attempts == at_submit
        assert info.max_attempts == at_submit
        assert len(info.errors) == at_submit


class TestPromptWait:
    @pytest.mark.parametrize("how", ["complete", "fail", "cancel"])
    async def test_wait_returns_when_this_process_finishes_the_task(
        self, url: str, how: str
    ) -> None:
        """`wait`/`result` wake as soon as this process finishes the task, not at the next poll.

        Real time: with ``poll_interval=5``, each waiter must return within
        2 s of the task's end. Breaks caught: the finish event is not set
        on completion, failure or cancellation; `_wait_finished` ignores the
        event and only polls.
        """
        async with open_durable_queue(store=url, workers=2, poll_interval=5) as queue:
            handle = await queue.submit(gated, 7, how)
            outcomes: list[outcome.Outcome[int]] = []
            both_returned = trio.Event()

            async def wait() -> None:
                outcomes.append(await handle.wait())
                if len(outcomes) == 2:
                    both_returned.set()

            async def result() -> None:
                outcomes.append(await outcome.acapture(handle.result))
                if len(outcomes) == 2:
                    both_returned.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait)
                nursery.start_soon(result)
                await wait_until_started(1)
                await trio.sleep(0.3)  # both waiters have read the store and now wait
                assert not outcomes
                with trio.fail_after(2):
                    if how == "cancel":
                        assert await handle.cancel() is True
                    else:
                        gate.set()
                    await both_returned.wait()
            for got in outcomes:
                if how == "complete":
                    assert got.unwrap() == 7
                elif how == "fail":
                    with pytest.raises(StoredError, match=r"^ValueError: task 7 failed$"):
                        got.unwrap()
                else:
                    with pytest.raises(TaskCancelled):
                        got.unwrap()


class TestRecorder:
    async def test_every_result_of_a_batch_is_written(self, url: str) -> None:
        """Results that returned together are all written: none stays ``running``.

        Twenty tasks return in the same tick, so the recorder writes them in
        batches of several. Real time, bounded: a result dropped from a batch
        shows as a task left ``running`` (its lease renewed for ever), not as
        a hang. Breaks caught: the recorder drops one entry, or every entry
        past the first few, of the batch it takes.
        """
        count = 20
        async with open_durable_queue(store=url, workers=count, poll_interval=5) as queue:
            handles = await queue.submit_many(gated, [(key, "complete") for key in range(count)])
            await wait_until_started(count)
            gate.set()
            with trio.move_on_after(5):
                while True:
                    if (await queue.statistics()).completed >= count:
                        break
                    await trio.sleep(0.01)
            statistics = await queue.statistics()
            unwritten = [
                handle.id
                for handle in handles
                if (await handle.info()).status is not TaskStatus.COMPLETED
            ]
            assert unwritten == [], f"results never written for tasks {unwritten}"
            assert (statistics.completed, statistics.running, statistics.held) == (count, 0, 0)
            with trio.fail_after(2):
                assert [await handle.result() for handle in handles] == list(range(count))
