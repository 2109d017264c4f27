# SPDX-License-Identifier: MIT
"""`drain`: run a queue until it is idle."""

from __future__ import annotations

import math

import attrs
import trio

from .._core.errors import QueueClosed, check_seconds
from .._core.stats import QueueStatistics
from .._core.status import EventKind
from .._runtime.events import TaskEvent
from ._queue import TaskQueue, in_flight, poll_interval_of


@attrs.frozen
class DrainResult:
    """What happened while `drain` waited: counts of this process's events.

    Tasks run by other processes sharing a durable queue's store are not
    counted (their events happen there), though `drain` waits for them too.

    Attributes:
        submitted: Tasks submitted or scheduled during the drain (by the
            tasks that ran, say).
        started: Attempts that started.
        completed: Tasks that ended ``completed``.
        failed: Tasks that ended ``failed`` (all attempts used).
        retrying: Attempts that failed and left their task ``retrying``.
        cancelled: Tasks that ended ``cancelled``.
    """

    submitted: int = 0
    started: int = 0
    completed: int = 0
    failed: int = 0
    retrying: int = 0
    cancelled: int = 0


class _Watcher:
    """A listener: counts events and wakes the drain on each."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(EventKind, 0)
        self.changed = trio.Event()

    def __call__(self, event: TaskEvent) -> None:
        self.counts[event.kind] += 1
        self.changed.set()

    def result(self) -> DrainResult:
        counts = self.counts
        return DrainResult(
            submitted=counts[EventKind.SUBMITTED] + counts[EventKind.SCHEDULED],
            started=counts[EventKind.STARTED],
            completed=counts[EventKind.COMPLETED],
            failed=counts[EventKind.FAILED],
            retrying=counts[EventKind.RETRYING],
            cancelled=counts[EventKind.CANCELLED],
        )


async def drain(
    queue: TaskQueue,
    *,
    with_scheduled: bool = False,
    poll_interval: float | None = None,
) -> DrainResult:
    """Wait until *queue* is idle: no task queued, running or retrying.

    The queue's workers run the tasks as usual; `drain` watches its
    statistics and returns once there is nothing left to do, with counts of
    what happened meanwhile. Tasks that the running tasks submit are part
    of the work: `drain` waits for them too (idle means idle). Always a
    checkpoint.

    It waits on the queue's events, not in a loop: under pytest-trio's
    ``autojump_clock`` the virtual clock jumps straight to the next timer
    (a due time, a backoff, a timeout), so hours of delays take no real
    time. On a durable queue (`~trio_workq.DurableWorkQueue`) the statistics cover the
    whole store, so `drain` also waits for tasks that other processes
    sharing it submitted or run; it re-reads them every *poll_interval*
    seconds to see changes made there.

    There is no timeout: a task that never ends, or a queue with no workers
    to run what is queued, keeps `drain` waiting. Bound it with
    ``trio.fail_after`` (or ``trio.move_on_after``).

    Args:
        queue: Any trio_workq queue: in memory, or durable on any store.
        with_scheduled: Also wait for ``scheduled`` tasks (delayed ones):
            they run when due, so under an autojumping clock virtual time
            jumps to each due time. A task that keeps scheduling another
            never lets this return. Without it, tasks still scheduled when
            the rest is done stay scheduled.
        poll_interval: Seconds between readings of the statistics when no
            event arrived. Default: a durable queue's own ``poll_interval``;
            none at all for the in-memory queue, whose every change is an
            event here.

    Returns:
        The counts of this process's task events during the drain.

    Raises:
        QueueClosed: If the queue has begun to shut down while tasks
            remained (or was already shut down): it would never be idle.
        ValueError: For a negative or NaN *poll_interval*.
    """
    if poll_interval is None:
        poll_interval = poll_interval_of(queue)
    else:
        poll_interval = check_seconds("poll_interval", poll_interval, allow_zero=False)
    watcher = _Watcher()
    queue.add_listener(watcher)
    try:
        while True:
            # A fresh event before each reading: what happens during it wakes the next wait.
            watcher.changed = trio.Event()
            stats = await queue.statistics()
            busy = (
                stats.queued
                + stats.running
                + stats.retrying
                + in_flight(stats, with_scheduled=with_scheduled)
            )
            if with_scheduled:
                busy += stats.scheduled
            if not busy:
                return watcher.result()
            if stats.closed:
                raise QueueClosed(
                    f"drain: the queue is shutting down with tasks left ({_left(stats)}); "
                    "it would never be idle"
                )
            with trio.move_on_after(math.inf if poll_interval is None else poll_interval):
                await watcher.changed.wait()
    finally:
        queue.remove_listener(watcher)


def _left(stats: QueueStatistics) -> str:
    counts = {
        "queued": stats.queued,
        "running": stats.running,
        "retrying": stats.retrying,
        "scheduled": stats.scheduled,
    }
    return ", ".join(f"{count} {status}" for status, count in counts.items() if count)
