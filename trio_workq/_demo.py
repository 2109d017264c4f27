# SPDX-License-Identifier: MIT
"""A demo workload: priorities, a timeout, a cancel, retries, a delayed task, a drain."""

from __future__ import annotations

import random

import trio

from ._errors import TaskCancelled
from ._queue import open_work_queue
from ._retry import RetryPolicy, exponential
from ._task import TaskHandle

_tries: dict[int, int] = {}


async def fetch(page: int) -> int:
    """Pretend to fetch a page; pages divisible by 7 fail on their first two attempts."""
    await trio.sleep(random.uniform(0.01, 0.05))
    _tries[page] = _tries.get(page, 0) + 1
    if page % 7 == 0 and _tries[page] <= 2:
        raise OSError(f"page {page}: connection reset")
    return page * 100


async def slow() -> None:
    await trio.sleep(10)


async def demo() -> None:
    policy = RetryPolicy(max_attempts=4, backoff=exponential(initial=0.02, max_delay=0.2))
    async with open_work_queue(workers=4, max_buffer_size=8, retry=policy) as queue:
        handles: list[TaskHandle[int]] = []
        for page in range(1, 25):
            handles.append(await queue.submit(fetch, page, name=f"fetch-{page}", priority=page % 3))
        reminder = await queue.schedule(fetch, 99, delay=0.3, name="reminder")
        overrun = await queue.submit(slow, name="slow", timeout=0.1, retry=None)
        doomed = await queue.submit(slow, name="doomed", retry=None)
        doomed.cancel()
        stats = queue.statistics()
        print(
            f"submitted {stats.submitted} tasks to {stats.workers} workers; queued={stats.queued}"
        )

        total = sum([await h.result() for h in handles])
        retried = sum(1 for h in handles if h.info().attempts > 1)
        print(f"24 pages fetched, total {total}; {retried} needed retries")
        print(f"reminder (delayed 0.3 s) -> {await reminder.result()}")
        await overrun.wait()
        print(
            f"slow task with timeout=0.1 -> {overrun.info().status} ({overrun.info().last_error!r})"
        )
        try:
            await doomed.result()
        except TaskCancelled:
            print(f"cancelled task -> {doomed.info().status}")
    stats = queue.statistics()
    print(
        f"shut down: completed={stats.completed} failed={stats.failed} cancelled={stats.cancelled}"
    )


def main() -> None:
    trio.run(demo)
