# SPDX-License-Identifier: MIT
"""`DurableSource`: the dashboard's `TaskSource` over a durable store.

It reads and acts through a `~trio_workq.DurableWorkQueue` (usually one with
no workers, as ``trio-workq dashboard --store URL`` opens), so the dashboard
shows every task in the store, whichever process runs it.
"""

from __future__ import annotations

import math
import reprlib
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import trio

from .._core.errors import TaskNotFound, TaskStateError
from .._core.info import TaskInfo
from .._core.status import TaskStatus
from .._durable.queue import DurableWorkQueue, StoredError

if TYPE_CHECKING:
    from ..prometheus import Instrumentation

from ._source import (
    THROUGHPUT_WINDOW,
    ErrorView,
    InvalidQuery,
    Stats,
    TaskConflict,
    TaskDetail,
    TaskListPage,
    TaskSummary,
    Throughput,
    task_summary,
)

_args_repr = reprlib.Repr()
_args_repr.maxstring = 200
_args_repr.maxother = 200
_args_repr.maxlevel = 3


def _error_view(error: BaseException) -> ErrorView:
    if isinstance(error, StoredError):
        return ErrorView(error.summary, error.text)
    return ErrorView(f"{type(error).__name__}: {error}", str(error))


def _summary(info: TaskInfo) -> TaskSummary:
    return task_summary(info, lambda error: _error_view(error).summary)


class DurableSource:
    """A `TaskSource` over every task of a durable store.

    Counts cover the whole store; the worker counts are unknown (workers run
    in other processes) and shown as such. The throughput chart counts the
    tasks that finished between two of its polls (from the store's counts,
    so purges of old tasks can hide a few). ``/metrics`` instruments the
    queue on its first request (see `trio_workq.prometheus.instrument`).
    """

    def __init__(self, queue: DurableWorkQueue) -> None:
        self._queue = queue
        self._window = THROUGHPUT_WINDOW
        self._completed = [0] * self._window
        self._failed = [0] * self._window
        self._newest: int | None = None  # the newest second in the ring
        self._last_counts: tuple[int, int] | None = None
        self._instrumentation: Instrumentation | None = None
        self._closed = False

    async def stats(self) -> Stats:
        stats = await self._queue.statistics()
        counts = {
            TaskStatus.QUEUED: stats.queued,
            TaskStatus.SCHEDULED: stats.scheduled,
            TaskStatus.RUNNING: stats.running,
            TaskStatus.RETRYING: stats.retrying,
            TaskStatus.COMPLETED: stats.completed,
            TaskStatus.FAILED: stats.failed,
            TaskStatus.CANCELLED: stats.cancelled,
        }
        return Stats(counts=counts, workers=None, busy_workers=None, retained=None, closed=False)

    async def page(
        self, *, status: str | None, name: str | None, limit: int, cursor: str | None
    ) -> TaskListPage:
        try:
            page = await self._queue.list_tasks(
                status=status, name=name, limit=limit, cursor=cursor
            )
        except ValueError as exc:  # list_tasks checks the query's values
            raise InvalidQuery(str(exc)) from exc
        return TaskListPage(tuple(_summary(info) for info in page.tasks), page.next_cursor)

    async def get(self, task_id: str) -> TaskDetail:
        info = await self._queue.get_info(task_id)
        row = await self._queue.store.get(task_id)
        if row is None:  # purged since get_info read it
            raise TaskNotFound(f"no task with id {task_id!r} in the store (unknown, or purged)")
        try:
            call: Any = self._queue.serializer.loads(row.payload)
            args = _args_repr.repr(call)
        except Exception:  # the page must render whatever the payload holds
            args = f"<{len(row.payload)} bytes the serializer cannot read>"
        return TaskDetail(
            task=_summary(info), errors=tuple(_error_view(e) for e in info.errors), args=args
        )

    async def cancel(self, task_id: str) -> TaskSummary:
        if not await self._queue.cancel(task_id):
            info = await self._queue.get_info(task_id)
            raise TaskConflict(f"task {task_id} has already finished ({info.status.value})")
        return _summary(await self._queue.get_info(task_id))

    async def retry(self, task_id: str) -> TaskSummary:
        try:
            await self._queue.retry(task_id)
        except TaskStateError as exc:
            raise TaskConflict(str(exc)) from exc
        return _summary(await self._queue.get_info(task_id))

    async def throughput(self) -> Throughput:
        stats = await self._queue.statistics()
        second = math.floor(trio.current_time())
        self._advance(second)
        counts = (stats.completed, stats.failed)
        if self._last_counts is not None:
            # Tasks purged since the last poll make a count drop: never below zero.
            slot = second % self._window
            self._completed[slot] += max(counts[0] - self._last_counts[0], 0)
            self._failed[slot] += max(counts[1] - self._last_counts[1], 0)
        self._last_counts = counts
        order = [(second - age) % self._window for age in range(self._window - 1, -1, -1)]
        end = datetime.now(timezone.utc).replace(microsecond=0)
        return Throughput(
            end=end,
            interval=1.0,
            completed=tuple(self._completed[i] for i in order),
            failed=tuple(self._failed[i] for i in order),
        )

    def _advance(self, second: int) -> None:
        """Move the ring forward to *second*, zeroing the buckets of the seconds it skips."""
        newest = self._newest
        if newest is not None and second <= newest:
            return
        first = second - self._window + 1
        if newest is not None:
            first = max(newest + 1, first)
        for skipped in range(first, second + 1):
            self._completed[skipped % self._window] = 0
            self._failed[skipped % self._window] = 0
        self._newest = second

    async def metrics(self) -> bytes | None:
        await trio.lowlevel.checkpoint()
        if self._closed:
            return None
        try:
            from prometheus_client import CollectorRegistry, generate_latest

            from ..prometheus import instrument
        except ImportError:
            return None
        instrumentation = self._instrumentation
        if instrumentation is None:
            # Instrumented on the first scrape, so a queue nobody scrapes pays nothing;
            # the first reading of the store is awaited here (a handler may wait), later
            # ones come from the background refresh.
            registry = CollectorRegistry(auto_describe=True)
            instrumentation = instrument(self._queue, registry=registry)
            self._instrumentation = instrumentation
            await instrumentation.refresh_gauges()
        return generate_latest(instrumentation.registry)

    def close(self) -> None:
        """Stop the metrics' background refresh, if ``/metrics`` started one."""
        self._closed = True
        instrumentation, self._instrumentation = self._instrumentation, None
        if instrumentation is not None:
            instrumentation.uninstrument()
