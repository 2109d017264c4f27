# SPDX-License-Identifier: MIT
"""What the dashboard reads and does, independent of where tasks live.

The web app talks only to a `TaskSource`: a handful of async operations that
return plain, JSON-ready views. `QueueSource` adapts the in-memory
`~trio_workq.WorkQueue`; a durable store gets an adapter of its own (its
`~trio_workq._stores.protocol.Store` offers ``page``, ``get``, ``counts``, ``cancel``
and ``requeue``, which map one to one).
"""

from __future__ import annotations

import math
import reprlib
import traceback
import weakref
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import attrs
import trio

from .._core.errors import TaskStateError
from .._core.info import TaskInfo, TaskRecord
from .._core.status import EventKind, TaskStatus
from .._memory.queue import WorkQueue

if TYPE_CHECKING:
    from ..prometheus import Instrumentation

#: The chart covers this many seconds, one bucket per second.
THROUGHPUT_WINDOW = 300

#: Error summaries in listings are cut to this many characters (details keep all).
_SUMMARY_LIMIT = 500


class TaskConflict(Exception):
    """The action does not fit the task's state (it has finished, or is not failed/cancelled)."""


class InvalidQuery(Exception):
    """A listing's parameters are bad: an unknown status, a limit out of range, a bad cursor."""


@attrs.frozen
class ErrorView:
    """One failed attempt.

    Attributes:
        summary: The exception's type and message (``ValueError: boom``).
        traceback: The full formatted traceback.
    """

    summary: str
    traceback: str


@attrs.frozen
class TaskSummary:
    """One row of the task table.

    Attributes:
        error: The summary of the latest failed attempt's error, if any
            (cut to 500 characters).
    """

    id: str
    name: str
    status: TaskStatus
    priority: int
    attempts: int
    max_attempts: int
    timeout: float | None
    created_at: datetime
    due_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None


@attrs.frozen
class TaskDetail:
    """Everything the detail view shows about a task.

    Attributes:
        task: The table row.
        errors: Each failed attempt's error, oldest first (as many as the
            source keeps).
        args: A short ``repr`` of the task's arguments, or ``None`` when the
            source cannot show them.
    """

    task: TaskSummary
    errors: tuple[ErrorView, ...]
    args: str | None


@attrs.frozen
class TaskListPage:
    """A page of tasks, newest first, and the cursor of the next page (``None`` at the end)."""

    tasks: tuple[TaskSummary, ...]
    next_cursor: str | None


@attrs.frozen
class Stats:
    """The counters at the top of the dashboard.

    Attributes:
        counts: Tasks per status (for finished statuses the in-memory queue
            counts every task since it opened, retained or not).
        workers: Size of the worker pool, or ``None`` if the source cannot tell.
        busy_workers: Workers running a task now, or ``None``.
        retained: Finished task records that can still be looked up, or ``None``.
        closed: Whether the queue is shutting down or has shut down.
    """

    counts: Mapping[TaskStatus, int]
    workers: int | None
    busy_workers: int | None
    retained: int | None
    closed: bool


@attrs.frozen
class Throughput:
    """Tasks finished per second over the last `THROUGHPUT_WINDOW` seconds, oldest first.

    Attributes:
        end: The wall-clock end of the newest bucket.
        interval: Seconds per bucket.
        completed: Tasks that ended ``completed`` in each bucket.
        failed: Tasks that ended ``failed`` in each bucket.
    """

    end: datetime
    interval: float
    completed: tuple[int, ...]
    failed: tuple[int, ...]


class TaskSource(Protocol):
    """The operations behind the REST API. Every method is a checkpoint.

    Unknown ids raise `~trio_workq.TaskNotFound`; an action that does not fit
    the task's state raises `TaskConflict`; bad *status*, *limit* or
    *cursor* values raise `InvalidQuery` (and nothing else does, so the app
    answers 400 for bad input only); a closed queue raises
    `~trio_workq.QueueClosed`.
    """

    async def stats(self) -> Stats:
        """Counts per status and worker usage."""
        ...

    async def page(
        self, *, status: str | None, name: str | None, limit: int, cursor: str | None
    ) -> TaskListPage:
        """Tasks newest first, optionally of one status (a `TaskStatus` value) and/or one name."""
        ...

    async def get(self, task_id: str) -> TaskDetail:
        """Everything about one task."""
        ...

    async def cancel(self, task_id: str) -> TaskSummary:
        """Cancel a task that has not finished; a running one ends ``cancelled`` as it unwinds."""
        ...

    async def retry(self, task_id: str) -> TaskSummary:
        """Run a ``failed`` or ``cancelled`` task again, as a new attempt."""
        ...

    async def throughput(self) -> Throughput:
        """Finished tasks per second, for the chart."""
        ...

    async def metrics(self) -> bytes | None:
        """The Prometheus exposition text, or ``None`` if metrics are unavailable."""
        ...

    def close(self) -> None:
        """Stop whatever the source does in the background. Safe to call twice."""
        ...


# ---------------------------------------------------------------------- views


def _summary_of(error: BaseException) -> str:
    return "".join(traceback.format_exception_only(error)).rstrip()


def _error_view(error: BaseException) -> ErrorView:
    return ErrorView(_summary_of(error), "".join(traceback.format_exception(error)).rstrip())


def task_summary(
    info: TaskInfo, summarize: Callable[[BaseException], str] | None = None
) -> TaskSummary:
    """The table row of a task; *summarize* turns its last error into one line."""
    error = None
    if info.last_error is not None:
        error = (summarize or _summary_of)(info.last_error)
        if len(error) > _SUMMARY_LIMIT:
            error = error[: _SUMMARY_LIMIT - 1] + "…"
    return TaskSummary(
        id=info.id,
        name=info.name,
        status=info.status,
        priority=info.priority,
        attempts=info.attempts,
        max_attempts=info.max_attempts,
        timeout=info.timeout,
        created_at=info.created_at,
        due_at=info.due_at,
        started_at=info.started_at,
        finished_at=info.finished_at,
        error=error,
    )


_args_repr = reprlib.Repr()
_args_repr.maxstring = 200
_args_repr.maxother = 200
_args_repr.maxlevel = 3


def _show_args(args: tuple[object, ...]) -> str:
    # reprlib shortens big values and stands in for a __repr__ that raises.
    return _args_repr.repr(args)


# ----------------------------------------------------------------- throughput


class ThroughputCounter:
    """Counts finished tasks per second of trio time, in a ring of `THROUGHPUT_WINDOW` buckets.

    It is a queue hook, called synchronously for every status change: a few
    integer operations per call, and no event object.
    """

    def __init__(self, window: int = THROUGHPUT_WINDOW) -> None:
        self._window = window
        self._completed = [0] * window
        self._failed = [0] * window
        self._newest: int | None = None  # the newest second in the ring

    def _advance(self, second: int) -> None:
        """Move the ring forward to *second*, zeroing the buckets of the seconds it skips."""
        first = second - self._window + 1
        if self._newest is not None:
            first = max(first, self._newest + 1)
        for skipped in range(first, second + 1):
            self._completed[skipped % self._window] = 0
            self._failed[skipped % self._window] = 0
        self._newest = second

    def __call__(self, kind: EventKind, task: TaskRecord, when: float, was_running: bool) -> None:
        if kind is not EventKind.COMPLETED and kind is not EventKind.FAILED:
            return
        second = math.floor(when)  # never before _newest: trio's clock is monotonic
        if self._newest is None or second > self._newest:
            self._advance(second)
        buckets = self._completed if kind is EventKind.COMPLETED else self._failed
        buckets[second % self._window] += 1

    def snapshot(self, now: float) -> tuple[float, tuple[int, ...], tuple[int, ...]]:
        """The trio time at which the newest bucket ends, and both series, oldest first."""
        second = math.floor(now)
        if self._newest is None or second > self._newest:
            self._advance(second)
        window = self._window
        order = [(second - age) % window for age in range(window - 1, -1, -1)]
        return (
            second + 1.0,
            tuple(self._completed[i] for i in order),
            tuple(self._failed[i] for i in order),
        )


# One counter per queue, shared by every app on it; it refers to nothing, so the
# queue (which holds it as a hook) can still be collected.
_counters: weakref.WeakKeyDictionary[WorkQueue, ThroughputCounter] = weakref.WeakKeyDictionary()


def _counter_for(queue: WorkQueue) -> ThroughputCounter:
    counter = _counters.get(queue)
    if counter is None:
        counter = _counters[queue] = ThroughputCounter()
        queue.add_hook(counter)
    return counter


# --------------------------------------------------------------- the adapter


class QueueSource:
    """A `TaskSource` over an in-memory `~trio_workq.WorkQueue` (same Trio run)."""

    def __init__(self, queue: WorkQueue) -> None:
        self._queue = queue
        self._throughput = _counter_for(queue)
        self._instrumentation: Instrumentation | None = None
        self._closed = False

    async def stats(self) -> Stats:
        await trio.lowlevel.checkpoint()
        stats = self._queue.statistics_nowait()
        counts = {
            TaskStatus.QUEUED: stats.queued,
            TaskStatus.SCHEDULED: stats.scheduled,
            TaskStatus.RUNNING: stats.running,
            TaskStatus.RETRYING: stats.retrying,
            TaskStatus.COMPLETED: stats.completed,
            TaskStatus.FAILED: stats.failed,
            TaskStatus.CANCELLED: stats.cancelled,
        }
        return Stats(
            counts=counts,
            workers=stats.workers,
            busy_workers=stats.busy_workers,
            retained=stats.retained,
            closed=stats.closed,
        )

    async def page(
        self, *, status: str | None, name: str | None, limit: int, cursor: str | None
    ) -> TaskListPage:
        await trio.lowlevel.checkpoint()
        try:
            page = self._queue.list_tasks_nowait(
                status=status, name=name, limit=limit, cursor=cursor
            )
        except ValueError as exc:  # list_tasks checks the query's values
            raise InvalidQuery(str(exc)) from exc
        return TaskListPage(tuple(task_summary(info) for info in page.tasks), page.next_cursor)

    async def get(self, task_id: str) -> TaskDetail:
        await trio.lowlevel.checkpoint()
        handle = self._queue.get_handle_nowait(task_id)
        info = handle.info_nowait()
        return TaskDetail(
            task=task_summary(info),
            errors=tuple(_error_view(error) for error in info.errors),
            args=_show_args(handle.args),
        )

    async def cancel(self, task_id: str) -> TaskSummary:
        await trio.lowlevel.checkpoint()
        handle = self._queue.get_handle_nowait(task_id)
        if not handle.cancel_nowait():
            raise TaskConflict(f"task {task_id} has already finished ({handle.status.value})")
        return task_summary(handle.info_nowait())

    async def retry(self, task_id: str) -> TaskSummary:
        await trio.lowlevel.checkpoint()
        try:
            handle = self._queue.retry_nowait(task_id)
        except TaskStateError as exc:
            raise TaskConflict(str(exc)) from exc
        return task_summary(handle.info_nowait())

    async def throughput(self) -> Throughput:
        await trio.lowlevel.checkpoint()
        end, completed, failed = self._throughput.snapshot(trio.current_time())
        return Throughput(
            end=self._queue.wall_time(end), interval=1.0, completed=completed, failed=failed
        )

    async def metrics(self) -> bytes | None:
        await trio.lowlevel.checkpoint()
        if self._closed:
            return None
        try:
            from prometheus_client import CollectorRegistry, generate_latest

            from ..prometheus import instrument
        except ImportError:
            return None
        if self._instrumentation is None:
            # Instrumented on the first scrape, so a queue nobody scrapes pays nothing.
            registry = CollectorRegistry(auto_describe=True)
            self._instrumentation = instrument(self._queue, registry=registry)
        registry = self._instrumentation.registry
        return generate_latest(registry)

    def close(self) -> None:
        self._closed = True
        instrumentation, self._instrumentation = self._instrumentation, None
        if instrumentation is not None:
            instrumentation.uninstrument()
