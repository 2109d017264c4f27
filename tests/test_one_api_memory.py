# SPDX-License-Identifier: MIT
"""The in-memory side of the one API: async forms and their ``_nowait`` twins, `submit_many`,
and `@trio_workq.task` registrations honoured in memory. (What every backend shares is in
``test_queue_suite.py``.)"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

import trio_workq
from trio_workq import QueueClosed, RetryPolicy, TaskStatus, fixed

attempts: list[str] = []


@trio_workq.task(name="api.flaky", retry=RetryPolicy(max_attempts=3, backoff=fixed(1)))
async def flaky(key: str) -> str:
    attempts.append(key)
    if attempts.count(key) < 3:
        raise OSError(key)
    return key


@trio_workq.task(name="api.second")
@trio_workq.task(name="api.first", retry=None)  # registered first (decorators apply bottom-up)
async def two_names(value: int) -> int:
    await trio.lowlevel.checkpoint()
    return value


async def unregistered(value: int) -> int:
    await trio.lowlevel.checkpoint()
    return value


@pytest.fixture(autouse=True)
def _fresh() -> None:
    attempts.clear()


class TestRegistrations:
    async def test_registered_name_and_policy(self, autojump_clock: trio.abc.Clock) -> None:
        """A registered task gets its registration's name and retry policy, as on a store."""
        async with trio_workq.open_work_queue(retry=None) as queue:
            handle = await queue.submit(flaky, "a")
            assert await handle.result() == "a"
            info = await handle.info()
            assert (info.name, info.attempts, info.max_attempts) == ("api.flaky", 3, 3)

    async def test_partial_of_a_registered_task(self, autojump_clock: trio.abc.Clock) -> None:
        async with trio_workq.open_work_queue(retry=None) as queue:
            handle = await queue.submit(functools.partial(flaky, "b"))
            assert await handle.result() == "b"
            assert (await handle.info()).name == "api.flaky"

    async def test_second_name_and_explicit_options(self) -> None:
        """name= picks a registration; an explicit retry= wins; a free label keeps the default."""
        default = RetryPolicy(max_attempts=7)
        async with trio_workq.open_work_queue(retry=default) as queue:
            first = await queue.submit(two_names, 1)
            second = await queue.submit(two_names, 2, name="api.second")
            label = await queue.submit(two_names, 3, name="free label")
            explicit = await queue.submit(two_names, 4, retry=RetryPolicy(max_attempts=2))
            plain = await queue.submit(unregistered, 5)
            infos = [await h.info() for h in (first, second, label, explicit, plain)]
        assert [(i.name, i.max_attempts) for i in infos] == [
            ("api.first", 1),  # its first registration: retry=None
            ("api.second", 7),  # registered with the queue default
            ("free label", 7),
            ("api.first", 2),
            (f"{__name__}:unregistered", 7),
        ]


class TestSubmitMany:
    async def test_waits_for_room_in_order(self, autojump_clock: trio.abc.Clock) -> None:
        async with trio_workq.open_work_queue(workers=1, max_buffer_size=1) as queue:
            release = trio.Event()
            blocker = await queue.submit(release.wait)
            await trio.testing.wait_all_tasks_blocked()
            handles: list[trio_workq.MemoryTaskHandle[int]] = []

            async def submit_all() -> None:
                handles.extend(await queue.submit_many(unregistered, [(1,), (2,), (3,)]))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(submit_all)
                await trio.testing.wait_all_tasks_blocked()
                stats = queue.statistics_nowait()
                assert (stats.queued, stats.producers_waiting) == (1, 1)
                release.set()
            assert [await h.result() for h in handles] == [1, 2, 3]
            assert blocker.status is TaskStatus.COMPLETED

    async def test_cancelled_while_waiting_keeps_the_queued(
        self, autojump_clock: trio.abc.Clock
    ) -> None:
        """Cancelled while waiting for room: the tasks queued before stay, the rest are not."""
        async with trio_workq.open_work_queue(workers=1, max_buffer_size=1) as queue:
            release = trio.Event()
            await queue.submit(release.wait)
            await trio.testing.wait_all_tasks_blocked()
            with trio.move_on_after(1):
                await queue.submit_many(unregistered, [(1,), (2,), (3,)])
            assert queue.statistics_nowait().submitted == 2  # the blocker and (1,)
            release.set()

    async def test_closed_queue(self) -> None:
        async with trio_workq.open_work_queue() as queue:
            await queue.shutdown()
            with pytest.raises(QueueClosed):
                await queue.submit_many(unregistered, [(1,)])

    async def test_closed_while_waiting(self, autojump_clock: trio.abc.Clock) -> None:
        async with trio_workq.open_work_queue(workers=1, max_buffer_size=1) as queue:
            release = trio.Event()
            await queue.submit(release.wait)
            await trio.testing.wait_all_tasks_blocked()
            async with trio.open_nursery() as nursery:

                async def submit_all() -> None:
                    with pytest.raises(QueueClosed):
                        await queue.submit_many(unregistered, [(1,), (2,), (3,)])

                nursery.start_soon(submit_all)
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(queue.shutdown)
                await trio.testing.wait_all_tasks_blocked()
                release.set()
            assert queue.statistics_nowait().submitted == 2


class TestAsyncAndNowaitForms:
    async def test_same_answers(self) -> None:
        async with trio_workq.open_work_queue() as queue:
            handle = await queue.submit(unregistered, 1)
            await handle.wait()
            assert await queue.get_info(handle.id) == queue.get_info_nowait(handle.id)
            assert await handle.info() == handle.info_nowait()
            assert await queue.get_handle(handle.id) is queue.get_handle_nowait(handle.id)
            assert await queue.list_tasks() == queue.list_tasks_nowait()
            assert await queue.statistics() == queue.statistics_nowait()
            assert await queue.cancel(handle.id) is False
            assert queue.cancel_nowait(handle.id) is False
            assert await handle.cancel() is False

    async def test_cancelled_caller_changes_nothing(self) -> None:
        """An async action called in a cancelled scope raises Cancelled and does nothing."""
        async with trio_workq.open_work_queue(workers=1) as queue:
            release = trio.Event()
            running = await queue.submit(release.wait)
            queued = await queue.submit(unregistered, 1)
            with trio.CancelScope() as scope:
                scope.cancel()
                await queue.cancel(queued.id)
            with trio.CancelScope() as scope:
                scope.cancel()
                await queued.cancel()
            assert queued.status is TaskStatus.QUEUED
            queue.cancel_nowait(queued.id)
            with trio.CancelScope() as scope:
                scope.cancel()
                await queue.retry(queued.id)
            assert queued.info_nowait().status is TaskStatus.CANCELLED
            release.set()
            await running.wait()


async def test_submit_many_stops_at_a_shutdown_begun_while_it_waited() -> None:
    """A shutdown that begins after one task was admitted stops the rest: QueueClosed."""
    ran: list[str] = []

    async def never() -> None:
        ran.append("never")

    async def run(job: Callable[[], Awaitable[None]]) -> None:
        await job()

    async with trio_workq.open_work_queue(workers=1, max_buffer_size=0) as queue:
        release = trio.Event()

        async def closes_the_queue() -> None:
            ran.append("closer")
            await queue.shutdown()  # from inside: begins the shutdown and returns

        async def submit_both() -> None:
            with pytest.raises(QueueClosed):
                await queue.submit_many(run, [(closes_the_queue,), (never,)])

        await queue.submit(release.wait)
        await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(5):  # a hang fails
            async with trio.open_nursery() as nursery:
                nursery.start_soon(submit_both)
                await trio.testing.wait_all_tasks_blocked()
                release.set()
    assert ran == ["closer"]
