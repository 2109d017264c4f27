# SPDX-License-Identifier: MIT
"""`trio_workq.testing.MemoryStore`: a durable queue in virtual time.

Every test runs under ``autojump_clock`` and checks two things: the queue
waited the virtual time the behaviour asks for (hours), and no more than a
moment of real time passed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Generator, Sequence
from contextlib import asynccontextmanager, contextmanager

import pytest
import trio
import trio.testing

import trio_workq
from trio_workq import DurableWorkQueue, RetryPolicy, StoredError, TaskStatus, fixed
from trio_workq._stores.protocol import Renewal
from trio_workq.testing import MemoryStore

HOUR = 3600.0
#: Real seconds a test of hours of virtual time may take (it takes milliseconds).
REAL_BOUND = 5.0
#: Seconds between the queue's polls of the store (short: the store wakes it anyway).
POLL = 30.0

ran_at: list[float] = []
calls: dict[str, int] = {}


@trio_workq.task(name="kit.record_time", retry=None)
async def record_time() -> str:
    ran_at.append(trio.current_time())
    await trio.lowlevel.checkpoint()
    return "ran"


@trio_workq.task(
    name="kit.record_time_retried", retry=RetryPolicy(max_attempts=2, backoff=fixed(0))
)
async def record_time_retried() -> str:
    return await record_time()


@trio_workq.task(name="kit.fail_once", retry=RetryPolicy(max_attempts=2, backoff=fixed(600)))
async def fail_once(key: str) -> str:
    ran_at.append(trio.current_time())
    calls[key] = calls.get(key, 0) + 1
    await trio.lowlevel.checkpoint()
    if calls[key] == 1:
        raise ValueError("first attempt fails")
    return "second"


@trio_workq.task(name="kit.sleep", retry=None)
async def sleep_for(seconds: float) -> float:
    await trio.sleep(seconds)
    return seconds


@pytest.fixture(autouse=True)
def _fresh() -> None:
    ran_at.clear()
    calls.clear()


@contextmanager
def real_time_bound() -> Generator[None]:
    start = time.monotonic()
    yield
    assert time.monotonic() - start < REAL_BOUND


@asynccontextmanager
async def durable(
    store: MemoryStore | None = None, lease: float = 30.0
) -> AsyncGenerator[DurableWorkQueue]:
    async with trio_workq.open_work_queue(
        store=MemoryStore() if store is None else store, poll_interval=POLL, lease=lease
    ) as queue:
        yield queue


async def test_schedule_an_hour_ahead_runs_after_one_virtual_hour(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with real_time_bound():
        async with durable() as queue:
            start = trio.current_time()
            handle = await queue.schedule(record_time, delay=HOUR)
            assert (await queue.get_info(handle.id)).status is TaskStatus.SCHEDULED
            await trio.sleep(HOUR - 1)
            assert ran_at == []
            assert await handle.result() == "ran"
    # Due after exactly one hour; the fetcher sleeps until the due time, not a poll later.
    assert ran_at[0] - start == pytest.approx(HOUR, abs=0.01)


async def test_a_fixed_backoff_of_ten_minutes_waits_ten_virtual_minutes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with real_time_bound():
        async with durable() as queue:
            handle = await queue.submit(fail_once, "a")
            assert await handle.result() == "second"
            info = await handle.info()
    assert info.attempts == 2
    first, second = ran_at
    assert second - first == pytest.approx(600, abs=0.01)


async def test_a_timeout_of_two_hours_fires_after_two_virtual_hours(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with real_time_bound():
        async with durable() as queue:
            start = trio.current_time()
            quick = await queue.submit(sleep_for, 2 * HOUR - 60, timeout=2 * HOUR)
            slow = await queue.submit(sleep_for, 3 * HOUR, timeout=2 * HOUR)
            assert await quick.result() == 2 * HOUR - 60
            # Its outcome is read back from the store: the error text, as a StoredError.
            with pytest.raises(StoredError, match="TaskTimeout: task timed out after 7200"):
                await slow.result()
            ended = trio.current_time()
            assert (await slow.info()).status is TaskStatus.FAILED
    assert ended - start == pytest.approx(2 * HOUR, abs=0.1)


async def test_a_lease_of_minutes_is_renewed_through_hours_of_work(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The heartbeat renews a 2-minute lease for 3 hours: the task is never lost or re-run."""
    store = MemoryStore()
    with real_time_bound():
        async with durable(store, lease=120.0) as queue, durable(store, lease=120.0) as other:
            # Two queues share the store: a lapsed lease would let `other` recover it.
            handle = await queue.submit(sleep_for, 3 * HOUR)
            assert await handle.result() == 3 * HOUR
            info = await handle.info()
            assert (await other.get_info(handle.id)).attempts == 1
    assert info.attempts == 1
    assert info.status is TaskStatus.COMPLETED


async def test_a_lease_of_minutes_runs_out_in_virtual_minutes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A worker that dies holding a task: another queue recovers it once the lease lapses."""
    store = MemoryStore()
    with real_time_bound():
        await store.open()
        try:
            task_id = await _add_and_claim(store, lease=300.0)
            start = trio.current_time()
            async with durable(store, lease=300.0) as queue:
                handle = await queue.get_handle(task_id)
                assert await handle.result() == "ran"
                recovered = trio.current_time()
                info = await handle.info()
        finally:
            await store.aclose()
    assert info.attempts == 2  # the dead worker's attempt counted
    assert "LeaseExpired" in repr(info.errors[0])
    # Recovered once the lease ran out, within one reaper period (lease / 2) after.
    assert 300.0 <= recovered - start <= 300.0 + 150.0 + 0.1


async def _add_and_claim(store: MemoryStore, *, lease: float) -> str:
    """Schedule a task an hour ahead; once due, claim it as a worker that then dies."""
    async with durable(store) as queue:
        handle = await queue.schedule(record_time_retried, delay=HOUR)
    claimed = await store.claim("dead-worker", 1, lease)
    assert claimed.tasks == ()  # not due yet: claim it when due
    await trio.sleep(HOUR)
    claimed = await store.claim("dead-worker", 1, lease)
    assert [t.id for t in claimed.tasks] == [handle.id]
    return handle.id


async def test_the_clock_is_trios_plus_a_fixed_offset(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryStore()
    first = store.now()
    assert first == pytest.approx(time.time(), abs=REAL_BOUND)
    await trio.sleep(HOUR)
    assert store.now() - first == pytest.approx(HOUR)
    async with durable(store) as queue:
        # The queue maps trio time to the store's clock with the same offset.
        assert queue.wall_time(trio.current_time()).timestamp() == pytest.approx(store.now())


def test_the_clock_needs_trio() -> None:
    with pytest.raises(RuntimeError, match=r"inside trio\.run"):
        MemoryStore().now()


class CountingStore(MemoryStore):
    """A MemoryStore that counts lease renewals."""

    renewals = 0

    async def renew(self, owner: str, ids: Sequence[str], lease_seconds: float) -> Renewal:
        self.renewals += 1
        return await super().renew(owner, ids, lease_seconds)


class StepCounter(trio.abc.Instrument):
    """Counts task steps: how often any task of the run woke."""

    steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1


async def test_an_idle_queue_does_not_wake_its_heartbeat(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A virtual day of an idle durable queue takes a few dozen task steps, not one a
    second (its heartbeat sleeps until a task is held); a held task's lease is still renewed."""
    store = CountingStore()
    counter = StepCounter()
    async with trio_workq.open_work_queue(store=store, poll_interval=HOUR, lease=HOUR) as queue:
        trio.lowlevel.add_instrument(counter)
        try:
            await trio.sleep(24 * HOUR)
        finally:
            trio.lowlevel.remove_instrument(counter)
        assert counter.steps < 500  # the reaper every 30 min, the fetcher's hourly poll
        assert store.renewals == 0
        handle = await queue.submit(sleep_for, 10.0)
        assert await handle.result() == 10.0
        assert store.renewals >= 9  # every second while it ran
