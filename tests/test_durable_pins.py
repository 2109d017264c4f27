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

import logging
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
from trio_workq import RetryPolicy, TaskCancelled, TaskNotFound, TaskStatus, fixed
from trio_workq._core.registry import task
from trio_workq._durable import maintenance as _maintenance
from trio_workq._durable.queue import StoredError, open_durable_queue
from trio_workq._stores.protocol import Claimed

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


@task(retry=RetryPolicy(max_attempts=3, backoff=fixed(0)))
async def fails_when_cancelled(key: int) -> None:
    """Turns its cancellation into another exception (a cleanup that fails), or fails at `gate`."""
    started.append(key)
    try:
        await gate.wait()
    except trio.Cancelled:
        raise ValueError(f"cleanup of task {key} failed") from None
    raise OSError(f"task {key} failed by itself")


@task(retry=RetryPolicy(max_attempts=3, backoff=fixed(0)))
async def attempt_number() -> int:
    await trio.lowlevel.checkpoint()
    return trio_workq.current_task().attempts


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
        monkeypatch.setattr(_maintenance, "PURGE_INTERVAL", 0.1)

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
                await (await queue.get_handle(task_id)).result()
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


class TestPromptness:
    async def test_a_scheduled_task_runs_when_due_not_at_the_next_poll(self, url: str) -> None:
        """The fetcher sleeps until the earliest due time the claim reported, not the poll.

        Real time, ``poll_interval=5``: a task due in 0.3 s starts within 2 s.
        Break caught: the fetcher ignores ``next_due`` and waits for a hint or the poll.
        """
        async with open_durable_queue(store=url, workers=1, poll_interval=5) as queue:
            submitted = trio.current_time()
            await queue.schedule(noted, 1, delay=0.3)
            await wait_until_started(1, within=2)
            assert trio.current_time() - submitted >= 0.3

    async def test_cancel_reaches_a_task_running_here_at_once(
        self, url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`cancel` stops a task running in this process directly, not at the next renewal.

        Real time; lease renewals are made 10 s apart, so only the direct
        path can end the task within 2 s. Break caught: `cancel` leaves a
        local running task to the heartbeat's relay.
        """
        monkeypatch.setattr(_maintenance, "MAX_RENEW_INTERVAL", 30.0)
        async with open_durable_queue(store=url, workers=1, lease=30, poll_interval=5) as queue:
            handle = await queue.submit(gated, 1, "complete")
            await wait_until_started(1)
            with trio.fail_after(2):
                assert await handle.cancel() is True
                with pytest.raises(TaskCancelled):
                    await handle.result()


class TestClaimedNotStarted:
    async def test_a_claimed_task_cancelled_before_it_starts_never_runs(
        self, url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A task this queue has claimed but not started, cancelled then, never runs.

        The window between claim and start is held open by a store whose `add`
        confirms 0.5 s after its commit: the fetcher claims the task at once
        but starts it only once its submitted event is out. Break caught: a
        claimed attempt ignores the cancel request it got before it started.
        """
        async with open_durable_queue(store=url, workers=1, poll_interval=0.05) as queue:
            store = queue.store
            add = store.add

            async def slow_to_confirm(tasks: Any) -> Any:
                ids = await add(tasks)
                await trio.sleep(0.5)
                return ids

            monkeypatch.setattr(store, "add", slow_to_confirm)
            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(queue.submit, noted, 1)
                    while True:  # until claimed and held here, not started
                        if queue._held:  # pyright: ignore[reportPrivateUsage] - white-box
                            break
                        await trio.sleep(0.005)
                    (task_id,) = queue._held  # pyright: ignore[reportPrivateUsage]
                    assert await queue.cancel(task_id) is True
                with pytest.raises(TaskCancelled):
                    await (await queue.get_handle(task_id)).result()
        assert started == []


class TestCancelWins:
    async def test_a_cancelled_running_task_ends_cancelled_with_no_error(self, url: str) -> None:
        """A running task cancelled here ends ``cancelled``: no error recorded, a CANCELLED event.

        Break caught: the worker records the cancelled attempt as a timeout
        failure (the store still ends it ``cancelled``, so only the stored
        error and the events show it).
        """
        async with open_durable_queue(store=url, workers=1, poll_interval=5) as queue:
            kinds: list[str] = []
            queue.add_listener(lambda event: kinds.append(event.kind.value))
            handle = await queue.submit(gated, 1, "complete")
            await wait_until_started(1)
            assert await handle.cancel() is True
            with trio.fail_after(2), pytest.raises(TaskCancelled):
                await handle.result()
            info = await handle.info()
        assert info.status is TaskStatus.CANCELLED
        assert (info.attempts, info.errors, info.last_error) == (1, (), None)
        assert kinds == ["submitted", "started", "cancelled"]

    async def test_a_task_failing_while_cancelled_is_not_retried(self, url: str) -> None:
        """A task that raises another exception while being cancelled is not retried.

        Its registration allows 3 attempts, yet it runs once and its waiters
        wake at once (``poll_interval=5``, bound 2 s). Break caught: the
        worker records the failure as retryable.
        """
        async with open_durable_queue(store=url, workers=1, poll_interval=5) as queue:
            handle = await queue.submit(fails_when_cancelled, 1)
            await wait_until_started(1)
            assert await handle.cancel() is True
            with trio.fail_after(2), pytest.raises((TaskCancelled, StoredError)):
                await handle.result()
            await trio.sleep(0.2)  # a retry would have been claimed by now
            info = await handle.info()
        assert info.status.is_terminal
        assert info.attempts == 1
        assert started == [1]

    async def test_a_cancel_written_elsewhere_wins_over_a_retry(
        self, url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A task that fails after another process asked to cancel it ends ``cancelled``.

        The cancellation is written by a second queue and has not reached
        the worker (renewals 10 s apart) when the attempt fails with retries
        left: the store's cancel wins over the retry. Break caught: the
        store's ``fail`` ignores ``cancel_requested``.
        """
        monkeypatch.setattr(_maintenance, "MAX_RENEW_INTERVAL", 30.0)
        async with (
            open_durable_queue(store=url, workers=1, lease=30, poll_interval=0.05) as worker,
            open_durable_queue(store=url, workers=0) as other,
        ):
            handle = await worker.submit(fails_when_cancelled, 1)
            await wait_until_started(1)
            assert await other.cancel(handle.id) is True
            gate.set()  # the attempt fails by itself, its worker unaware of the cancel
            with trio.fail_after(5), pytest.raises(TaskCancelled):
                await (await other.get_handle(handle.id)).result()
            await trio.sleep(0.2)  # a retry would have been claimed by now
            info = await handle.info()
        assert info.status is TaskStatus.CANCELLED
        assert info.attempts == 1
        assert started == [1]
        assert [str(error) for error in info.errors] == ["OSError: task 1 failed by itself"]

    async def test_a_task_given_back_after_a_cancel_request_ends_cancelled(
        self, url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Shutdown gives back a running task; if another process asked to cancel it, it ends.

        The worker has not heard of the cancel (renewals 10 s apart) when a
        zero shutdown deadline interrupts the task: the release ends it
        ``cancelled`` instead of queueing it again. Break caught: the
        store's ``release`` ignores ``cancel_requested``.
        """
        monkeypatch.setattr(_maintenance, "MAX_RENEW_INTERVAL", 30.0)
        async with open_durable_queue(store=url, workers=0) as other:
            async with open_durable_queue(store=url, workers=1, lease=30) as worker:
                handle = await worker.submit(gated, 1, "complete")
                await wait_until_started(1)
                assert await other.cancel(handle.id) is True
                with trio.fail_after(5):
                    await worker.shutdown(timeout=0)
            info = await other.get_info(handle.id)
        assert info.status is TaskStatus.CANCELLED
        assert info.attempts == 0  # a release does not count the interrupted attempt
        assert started == [1]


class TestShutdown:
    async def test_a_task_failing_because_shutdown_interrupted_it_is_given_back(
        self, url: str
    ) -> None:
        """An attempt that raises another exception when shutdown cancels it goes back ``queued``.

        Its failure is the interruption's doing: nothing is recorded, the
        attempt is not counted, and the next process runs it. Break caught:
        the worker records such a failure (as a retry, attempt counted).
        """
        async with open_durable_queue(store=url, workers=1, lease=30) as queue:
            handle = await queue.submit(fails_when_cancelled, 1)
            await wait_until_started(1)
            with trio.fail_after(5):
                await queue.shutdown(timeout=0)
            info = await queue.get_info(handle.id)
        assert info.status is TaskStatus.QUEUED
        assert (info.attempts, info.errors) == (0, ())


class TestRefusedWrites:
    async def test_a_result_refused_after_another_attempt_completed_is_not_reported(
        self, url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Attempt 1's write is refused once attempt 2 (another queue) completed the task.

        The refusal is checked against the store: the row is completed, but
        by attempt 2, so attempt 1 reports no completion here (its lease was
        lost). Break caught: any completed row counts as this attempt's own.
        """
        caplog.set_level(logging.INFO, logger="trio_workq")
        async with open_durable_queue(store=url, workers=1, lease=1) as first:
            store = first.store
            claim, complete_many, renew = store.claim, store.complete_many, store.renew
            may_write, written, first_claimed = trio.Event(), trio.Event(), trio.Event()
            claimed_once = False
            task_ids: list[str] = []

            async def claim_once(owner: str, limit: int, lease: float) -> Claimed:
                nonlocal claimed_once
                if claimed_once:  # attempt 2 must run in the second queue
                    await trio.lowlevel.checkpoint()
                    return Claimed((), None)
                claimed = await claim(owner, limit, lease)
                claimed_once = bool(claimed.tasks)
                if claimed_once:
                    first_claimed.set()
                return claimed

            async def slow_complete_many(owner: str, items: Any) -> list[bool]:
                await may_write.wait()
                try:
                    return await complete_many(owner, items)
                finally:
                    written.set()

            async def renew_others(owner: str, ids: Any, lease: float) -> Any:
                return await renew(owner, [i for i in ids if i not in task_ids], lease)

            monkeypatch.setattr(store, "claim", claim_once)
            monkeypatch.setattr(store, "complete_many", slow_complete_many)
            monkeypatch.setattr(store, "renew", renew_others)
            kinds: list[str] = []
            first.add_listener(lambda event: kinds.append(event.kind.value))
            handle = await first.submit(attempt_number)
            task_ids.append(handle.id)
            with trio.fail_after(5):  # attempt 1 is this queue's: the second opens after
                await first_claimed.wait()
            async with open_durable_queue(
                store=url, workers=1, lease=5, poll_interval=0.05
            ) as second:
                with trio.fail_after(10):  # attempt 1's lease expires, the second queue runs it
                    assert await (await second.get_handle(handle.id)).result() >= 2
            may_write.set()
            with trio.fail_after(5):
                await written.wait()
                while True:  # the refusal is checked with one more read
                    if "lease lost" in caplog.text:
                        break
                    await trio.sleep(0.01)
        assert "completed" not in kinds
