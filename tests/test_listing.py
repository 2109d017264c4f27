# SPDX-License-Identifier: MIT
# White-box: aborts a queue as a failing block would.
# pyright: reportPrivateUsage=false
"""Listing tasks page by page (`WorkQueue.list_tasks`) and re-running finished ones (`retry`)."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_workq
from trio_workq import TaskStatus


async def noop() -> None:
    await trio.lowlevel.checkpoint()


async def boom() -> None:
    await trio.lowlevel.checkpoint()
    raise ValueError("boom")


async def forever() -> None:
    await trio.sleep_forever()


@pytest.fixture(autouse=True)
def _quiet_failures(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger="trio_workq")


def ids(page: trio_workq.TaskPage) -> list[str]:
    return [info.id for info in page.tasks]


def all_pages(queue: trio_workq.WorkQueue, limit: int, **filters: object) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        page = queue.list_tasks_nowait(limit=limit, cursor=cursor, **filters)  # type: ignore[arg-type]
        seen += ids(page)
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


class TestListTasks:
    async def test_newest_submitted_first_across_pages(self) -> None:
        """Without a filter, pages walk every retained task, newest submitted first."""
        async with trio_workq.open_work_queue(workers=2) as queue:
            handles = [await queue.submit(noop) for _ in range(7)]
            await handles[-1].wait()
            expected = [h.id for h in reversed(handles)]
            first = queue.list_tasks_nowait(limit=3)
            assert ids(first) == expected[:3]
            assert first.next_cursor is not None
            assert all_pages(queue, 3) == expected
            assert all_pages(queue, 7) == expected  # exact fit: no empty last page

    async def test_status_filter_latest_transition_first(self) -> None:
        """A status listing shows the tasks that entered that status most recently first."""
        async with trio_workq.open_work_queue(workers=1) as queue:
            first = await queue.submit(boom)
            await queue.submit(noop)
            last = await queue.submit(boom)
            await last.wait()
            assert ids(queue.list_tasks_nowait(status=TaskStatus.FAILED)) == [last.id, first.id]
            assert ids(queue.list_tasks_nowait(status="failed", limit=1)) == [last.id]
            assert queue.list_tasks_nowait(status="running").tasks == ()

    async def test_live_statuses_are_listed(self) -> None:
        """Running, queued and scheduled tasks appear under their status."""
        async with trio_workq.open_work_queue(workers=1) as queue:
            running = await queue.submit(forever)
            queued = await queue.submit(noop)
            later = await queue.schedule(noop, delay=60)
            await trio.testing.wait_all_tasks_blocked()
            assert ids(queue.list_tasks_nowait(status="running")) == [running.id]
            assert ids(queue.list_tasks_nowait(status="queued")) == [queued.id]
            [info] = queue.list_tasks_nowait(status="scheduled").tasks
            assert info.id == later.id
            assert info.status is TaskStatus.SCHEDULED
            running.cancel_nowait()
            queue._abort()

    async def test_queued_tasks_of_all_priorities_newest_first(self) -> None:
        """Queued tasks are listed by when they were queued, whatever their priority,
        page by page; cancelled ones are left out."""
        async with trio_workq.open_work_queue(workers=1, max_buffer_size=100) as queue:
            blocker = await queue.submit(forever)
            queued = [await queue.submit(noop, priority=p % 3) for p in range(10)]
            queued[4].cancel_nowait()
            queued[7].cancel_nowait()
            await trio.testing.wait_all_tasks_blocked()
            expected = [h.id for i, h in enumerate(reversed(queued)) if i not in (2, 5)]
            assert all_pages(queue, 3, status="queued") == expected
            assert queue.statistics_nowait().queued == 8
            blocker.cancel_nowait()
            queue._abort()

    async def test_running_tasks_newest_first_with_cursor(self) -> None:
        async with trio_workq.open_work_queue(workers=3) as queue:
            running = [await queue.submit(forever) for _ in range(3)]
            await trio.testing.wait_all_tasks_blocked()
            assert all_pages(queue, 2, status="running") == [h.id for h in reversed(running)]
            assert queue.statistics_nowait().running == queue.statistics_nowait().busy_workers == 3
            running[1].cancel_nowait()
            await trio.testing.wait_all_tasks_blocked()
            assert all_pages(queue, 1, status="running") == [running[2].id, running[0].id]
            assert queue.statistics_nowait().running == 2
            queue._abort()

    async def test_cursor_survives_tasks_moving_on(self) -> None:
        """A cursor stays valid when tasks change status between pages: nothing repeats."""
        async with trio_workq.open_work_queue(workers=1, max_buffer_size=100) as queue:
            blocker = await queue.submit(forever)
            queued = [await queue.submit(noop) for _ in range(6)]
            await trio.testing.wait_all_tasks_blocked()
            page = queue.list_tasks_nowait(status="queued", limit=3)
            assert ids(page) == [h.id for h in reversed(queued)][:3]
            blocker.cancel_nowait()
            await queued[-1].wait()  # every queued task has now moved on
            rest = queue.list_tasks_nowait(status="queued", limit=3, cursor=page.next_cursor)
            assert rest.tasks == ()
            assert rest.next_cursor is None

    async def test_name_filter(self) -> None:
        """Only tasks with the given name, still newest first and paged."""
        async with trio_workq.open_work_queue(workers=2) as queue:
            wanted: list[str] = []
            for i in range(6):
                handle = await queue.submit(noop, name="a" if i % 2 else "b")
                if i % 2:
                    wanted.append(handle.id)
            await trio.testing.wait_all_tasks_blocked()
            assert all_pages(queue, 2, name="a") == wanted[::-1]
            assert all_pages(queue, 2, status="completed", name="b") == [
                info.id for info in queue.list_tasks_nowait(status="completed", name="b").tasks
            ]
            assert queue.list_tasks_nowait(name="nobody").tasks == ()

    async def test_expired_records_leave_the_listing(self) -> None:
        """Records forgotten by max_retained are gone from every listing."""
        async with trio_workq.open_work_queue(workers=1, max_retained=2) as queue:
            handles = [await queue.submit(noop) for _ in range(5)]
            await handles[-1].wait()
            assert ids(queue.list_tasks_nowait()) == [handles[4].id, handles[3].id]
            assert ids(queue.list_tasks_nowait(status="completed")) == [
                handles[4].id,
                handles[3].id,
            ]

    async def test_sparse_name_gives_short_pages_with_a_cursor(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A call examines a bounded number of entries; the cursor resumes the walk."""
        monkeypatch.setattr("trio_workq._memory.queue._SCAN_LIMIT", 4)
        async with trio_workq.open_work_queue(workers=1, max_buffer_size=100) as queue:
            rare = await queue.submit(noop, name="rare")
            common = [await queue.submit(noop, name="common") for _ in range(9)]
            page = queue.list_tasks_nowait(name="rare")
            assert page.tasks == ()
            assert page.next_cursor == f"all:{common[-4].id}"  # stopped after four ids
            page = queue.list_tasks_nowait(name="rare", cursor=page.next_cursor)
            assert page.tasks == ()
            page = queue.list_tasks_nowait(name="rare", cursor=page.next_cursor)
            assert ids(page) == [rare.id]
            assert page.next_cursor is None
            assert all_pages(queue, 2, name="common") == [h.id for h in reversed(common)]

    async def test_ids_with_gaps_after_expiry(self) -> None:
        """Records expire in finish order, not id order: listings skip the gaps."""
        async with trio_workq.open_work_queue(workers=2, max_retained=2) as queue:
            slow = await queue.submit(forever)  # id 1 stays live
            quick = [await queue.submit(noop) for _ in range(5)]
            await quick[-1].wait()
            assert all_pages(queue, 1) == [quick[4].id, quick[3].id, slow.id]
            slow.cancel_nowait()
            await slow.wait()
            assert all_pages(queue, 10) == [quick[4].id, slow.id]
            assert all_pages(queue, 10, status="cancelled") == [slow.id]

    async def test_many_finished_records_stay_in_order(self) -> None:
        """Expiring from the front (and compacting) keeps every status listing exact."""
        async with trio_workq.open_work_queue(workers=1, max_retained=50) as queue:
            handles: list[trio_workq.MemoryTaskHandle[None]] = []
            for i in range(400):
                handle = queue.submit_nowait(boom if i % 3 == 0 else noop)
                handles.append(handle)
                if i % 50 == 49:
                    await trio.testing.wait_all_tasks_blocked()
            await trio.testing.wait_all_tasks_blocked()
            listed = all_pages(queue, 1000)
            assert listed == [h.id for h in reversed(handles[-50:])]  # the last 50 to finish
            failed = all_pages(queue, 7, status="failed")
            completed = all_pages(queue, 7, status="completed")
            assert sorted(failed + completed, key=int, reverse=True) == listed
            failing = {h.id for i, h in enumerate(handles) if i % 3 == 0}
            assert failed == [h.id for h in reversed(handles[-50:]) if h.id in failing]

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"limit": 0}, ValueError, "between 1 and 1000"),
            ({"limit": 1001}, ValueError, "between 1 and 1000"),
            ({"limit": 2.5}, TypeError, "limit must be an int"),
            ({"limit": True}, TypeError, "limit must be an int"),
            ({"status": "nope"}, ValueError, "unknown status 'nope'"),
            ({"status": 3}, TypeError, "status must be"),
            ({"name": 3}, TypeError, "name must be"),
            ({"cursor": 5}, TypeError, "cursor must be"),
            ({"cursor": "all:x"}, ValueError, "malformed cursor"),
            ({"cursor": "all:-1"}, ValueError, "malformed cursor"),
            ({"cursor": "garbage"}, ValueError, "malformed cursor"),
            ({"cursor": "all:" + "1" * 5000}, ValueError, "malformed cursor"),  # past int()'s limit
            ({"cursor": "failed:3"}, ValueError, "another listing"),
            ({"status": "failed", "cursor": "all:3"}, ValueError, "another listing"),
        ],
    )
    async def test_bad_arguments(
        self, kwargs: dict[str, object], error: type[Exception], match: str
    ) -> None:
        async with trio_workq.open_work_queue(workers=1) as queue:
            with pytest.raises(error, match=match):
                queue.list_tasks_nowait(**kwargs)  # type: ignore[arg-type]

    @settings(max_examples=30, deadline=None)
    @given(
        outcomes=st.lists(st.sampled_from(["ok", "fail", "cancel"]), min_size=0, max_size=30),
        limit=st.integers(1, 8),
    )
    def test_pages_partition_each_status(self, outcomes: list[str], limit: int) -> None:
        """Paging any listing yields each matching task exactly once, in order."""

        async def main() -> None:
            async with trio_workq.open_work_queue(workers=3) as queue:
                handles: list[trio_workq.MemoryTaskHandle[None]] = []
                for kind in outcomes:
                    fn = boom if kind == "fail" else noop
                    handle = queue.submit_nowait(fn)
                    if kind == "cancel":
                        handle.cancel_nowait()
                    handles.append(handle)
                await trio.testing.wait_all_tasks_blocked()
                assert all_pages(queue, limit) == [h.id for h in reversed(handles)]
                for status in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED):
                    listed = all_pages(queue, limit, status=status)
                    assert sorted(listed, key=int) == [h.id for h in handles if h.status is status]
                    assert len(set(listed)) == len(listed)

        trio.run(main)


class TestRetryFinishedTask:
    async def test_failed_task_runs_again_with_same_handle(self) -> None:
        """retry() re-runs a failed task as a new attempt; its handle sees the new outcome."""
        results = iter([ValueError("first"), None])

        async def flaky() -> str:
            await trio.lowlevel.checkpoint()
            error = next(results)
            if error is not None:
                raise error
            return "ok"

        async with trio_workq.open_work_queue(workers=1) as queue:
            handle = await queue.submit(flaky)
            with pytest.raises(ValueError, match="first"):
                await handle.result()
            assert queue.retry_nowait(handle.id) is handle
            assert handle.status is TaskStatus.RETRYING
            assert not handle.done
            assert await handle.result() == "ok"
            info = handle.info_nowait()
            assert info.status is TaskStatus.COMPLETED
            assert info.attempts == 2
            assert [str(e) for e in info.errors] == ["first"]
            stats = queue.statistics_nowait()
            assert (stats.failed, stats.completed, stats.submitted) == (0, 1, 1)
            assert ids(queue.list_tasks_nowait(status="failed")) == []
            assert ids(queue.list_tasks_nowait(status="completed")) == [handle.id]

    async def test_cancelled_task_can_be_retried(self) -> None:
        async with trio_workq.open_work_queue(workers=1) as queue:
            blocker = await queue.submit(forever)
            handle = await queue.submit(noop)
            handle.cancel_nowait()
            assert handle.status is TaskStatus.CANCELLED
            queue.retry_nowait(handle.id)
            blocker.cancel_nowait()
            await handle.result()
            assert handle.info_nowait().status is TaskStatus.COMPLETED

    async def test_task_cancelled_while_queued_is_queued_once_when_retried(self) -> None:
        """Its old place in line is gone: it is listed once, behind tasks queued before
        the retry, and runs once."""
        runs: list[str] = []

        async def record(label: str) -> None:
            runs.append(label)

        async with trio_workq.open_work_queue(workers=1) as queue:
            blocker = await queue.submit(forever)
            handle = await queue.submit(record, "retried")
            behind = await queue.submit(record, "behind")
            handle.cancel_nowait()
            queue.retry_nowait(handle.id)
            await trio.testing.wait_all_tasks_blocked()
            assert ids(queue.list_tasks_nowait(status="queued")) == [handle.id, behind.id]
            assert queue.statistics_nowait().queued == 2
            blocker.cancel_nowait()
            await handle.result()
            await behind.result()
            assert runs == ["behind", "retried"]
            assert handle.info_nowait().attempts == 1

    async def test_retried_task_waits_for_room(self) -> None:
        """A re-run respects backpressure: it is queued only when the buffer has room."""
        async with trio_workq.open_work_queue(workers=1, max_buffer_size=1) as queue:
            failed = await queue.submit(boom)
            await failed.wait()
            blocker = await queue.submit(forever)
            filler = await queue.submit(noop)
            await trio.testing.wait_all_tasks_blocked()
            queue.retry_nowait(failed.id)
            await trio.testing.wait_all_tasks_blocked()
            assert failed.status is TaskStatus.RETRYING
            assert queue.statistics_nowait().queued == 1
            blocker.cancel_nowait()
            await failed.wait()
            assert filler.status is TaskStatus.COMPLETED
            assert failed.info_nowait().attempts == 2

    async def test_retried_task_can_be_cancelled_before_it_runs(self) -> None:
        async with trio_workq.open_work_queue(workers=1, max_buffer_size=0) as queue:
            failed = await queue.submit(boom)
            await failed.wait()
            blocker = await queue.submit(forever)
            queue.retry_nowait(failed.id)
            assert failed.cancel_nowait()
            assert failed.status is TaskStatus.CANCELLED
            blocker.cancel_nowait()

    async def test_policy_still_applies(self) -> None:
        """A task that used all its attempts gets exactly one more run from retry()."""
        policy = trio_workq.RetryPolicy(max_attempts=2, backoff=trio_workq.fixed(0))
        async with trio_workq.open_work_queue(workers=1, retry=policy) as queue:
            handle = await queue.submit(boom)
            await handle.wait()
            assert handle.attempts == 2
            queue.retry_nowait(handle.id)
            await handle.wait()
            assert handle.status is TaskStatus.FAILED
            assert handle.attempts == 3

    @pytest.mark.parametrize("status", ["running", "queued", "completed"])
    async def test_only_failed_or_cancelled(self, status: str) -> None:
        async with trio_workq.open_work_queue(workers=1) as queue:
            running = await queue.submit(forever)
            queued = await queue.submit(noop)
            await trio.testing.wait_all_tasks_blocked()
            handle = {"running": running, "queued": queued}.get(status)
            if handle is None:
                running.cancel_nowait()
                await queued.wait()
                handle = queued
            with pytest.raises(trio_workq.TaskStateError, match=f"is {status}"):
                queue.retry_nowait(handle.id)
            assert handle.status == status
            running.cancel_nowait()

    async def test_unknown_id_and_closed_queue(self) -> None:
        async with trio_workq.open_work_queue(workers=1) as queue:
            failed = await queue.submit(boom)
            await failed.wait()
            with pytest.raises(trio_workq.TaskNotFound):
                queue.retry_nowait("12345")
            with trio.CancelScope() as scope:
                scope.cancel()
                await queue.shutdown()
            with pytest.raises(trio_workq.QueueClosed):
                queue.retry_nowait(failed.id)
            assert failed.status is TaskStatus.FAILED

    async def test_waiters_of_the_old_run_keep_its_outcome(self) -> None:
        """wait() started before the re-run returned the failed outcome; new waiters get the new."""
        async with trio_workq.open_work_queue(workers=1) as queue:
            handle = await queue.submit(boom)
            old = await handle.wait()
            queue.retry_nowait(handle.id)
            new = await handle.wait()
            with pytest.raises(ValueError, match="boom"):
                old.unwrap()
            with pytest.raises(ValueError, match="boom"):
                new.unwrap()
            assert handle.attempts == 2
