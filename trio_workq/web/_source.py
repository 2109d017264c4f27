# SPDX-License-Identifier: MIT
"""What the dashboard reads and does: one `QueueSource` over any `~trio_workq.TaskQueue`.

The web app talks only to a `TaskSource`: a handful of async operations that
return plain, JSON-ready views. `QueueSource` implements it with the
`~trio_workq.TaskQueue` API, the same calls for an in-memory queue and a
durable one. What genuinely differs by backend is kept to three places:

- *the task's arguments* (`QueueSource.get`): an in-memory task keeps the
  argument objects; a durable one has them as the serialized payload of its
  stored row;
- *errors* (`error_view`): a durable task's errors are
  `~trio_workq.StoredError` text, an in-memory task's are exception objects;
- *throughput* (`QueueSource.throughput`): an in-memory queue's chart counts
  its tasks' events as they happen (`ThroughputCounter`, a hook); a durable
  queue's counts the whole store's finished tasks between two polls
  (`PolledThroughput`), since most of them finish in other processes.
"""

from __future__ import annotations

import math
import reprlib
import traceback
import weakref
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

import attrs
import trio

from .._core.errors import TaskNotFound, TaskStateError
from .._core.info import TaskInfo, TaskRecord
from .._core.status import EventKind, TaskStatus
from .._durable.queue import DurableWorkQueue, StoredError
from .._durable.serialize import Serializer, load_arguments
from .._memory.queue import WorkQueue
from .._runtime.api import TaskQueue

if TYPE_CHECKING:
    from ..prometheus import Instrumentation

#: The chart covers this many seconds, one bucket per second.
THROUGHPUT_WINDOW = 300

#: Error summaries in listings are cut to this many characters (details keep all).
_SUMMARY_LIMIT = 500

#: Whose workers ``/api/stats`` reports (see `Stats.workers_scope`).
WorkersScope = Literal["queue", "process", "none"]


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
            queue keeps).
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
        counts: Tasks per status (the queue's own in memory, the whole
            store's for a durable queue).
        workers: Size of this process's worker pool.
        busy_workers: This process's workers running a task now.
        retained: Finished task records that can still be looked up, or
            ``None`` (durable queues: the store keeps them until purged).
        closed: Whether the queue is shutting down or has shut down.
        workers_scope: Whose workers *workers* counts: ``"queue"``, the
            whole pool of an in-memory queue (every task runs on it);
            ``"process"``, this process's workers on a durable queue (other
            processes sharing the store may run tasks too); ``"none"``, a
            durable queue with no workers here (``workers=0``: tasks run in
            other processes), so the page hides the Workers panel's figures.
    """

    counts: Mapping[TaskStatus, int]
    workers: int
    busy_workers: int
    retained: int | None
    closed: bool
    workers_scope: WorkersScope


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


def check_queue(queue: object) -> TaskQueue:
    """*queue*, if it is a `~trio_workq.TaskQueue`; else `TypeError`."""
    if not isinstance(queue, TaskQueue):
        raise TypeError(
            "queue must be a trio_workq.TaskQueue (such as a WorkQueue or a DurableWorkQueue), "
            f"not {type(queue).__name__}"
        )
    return queue


# ---------------------------------------------------------------------- views


def error_view(error: BaseException) -> ErrorView:
    """One failed attempt's error: a durable queue's stored text, or the exception's traceback."""
    if isinstance(error, StoredError):
        return ErrorView(error.summary, error.text)
    return ErrorView(_summary_line(error), "".join(traceback.format_exception(error)).rstrip())


def _summary_line(error: BaseException) -> str:
    if isinstance(error, StoredError):
        return error.summary
    return "".join(traceback.format_exception_only(error)).rstrip()


def task_summary(info: TaskInfo) -> TaskSummary:
    """The table row of a task."""
    error = None
    if info.last_error is not None:
        error = _summary_line(info.last_error)
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


def _show_stored_args(serializer: Serializer, payload: bytes) -> str:
    """A stored task's arguments, shown as an in-memory task's are: ``(1, 'a')``."""
    try:
        args, kwargs = load_arguments(serializer, payload)
    except ValueError:  # the page must render whatever the payload holds
        try:
            return _args_repr.repr(serializer.loads(payload))  # not our format: as stored
        except Exception:
            return f"<{len(payload)} bytes the serializer cannot read>"
    shown = _show_args(args)
    return f"{shown} {_args_repr.repr(kwargs)}" if kwargs else shown


# ----------------------------------------------------------------- throughput


class _Ring:
    """Finished tasks per second of trio time, in a ring of `THROUGHPUT_WINDOW` buckets."""

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

    def series(self, second: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Both series up to *second* (the current one), oldest first."""
        if self._newest is None or second > self._newest:
            self._advance(second)
        window = self._window
        order = [(second - age) % window for age in range(window - 1, -1, -1)]
        return tuple(self._completed[i] for i in order), tuple(self._failed[i] for i in order)


class ThroughputCounter(_Ring):
    """An in-memory queue's throughput: a queue hook counts each finished task as it ends.

    The hook is called synchronously for every status change: a few integer
    operations per call, and no event object.
    """

    def __call__(self, kind: EventKind, task: TaskRecord, when: float, was_running: bool) -> None:
        if kind is not EventKind.COMPLETED and kind is not EventKind.FAILED:
            return
        second = math.floor(when)  # never before _newest: trio's clock is monotonic
        if self._newest is None or second > self._newest:
            self._advance(second)
        buckets = self._completed if kind is EventKind.COMPLETED else self._failed
        buckets[second % self._window] += 1


class PolledThroughput(_Ring):
    """A durable queue's throughput: the growth of the store's finished counts between polls.

    Tasks finish in any process sharing the store, so events of this process
    would miss most of them. Each poll adds what the counts grew by since the
    previous one, spread evenly over the seconds in between (so a page that
    was closed for a minute does not draw a minute's work as one spike).
    Tasks purged between two polls can hide a few; a count never goes below
    zero.
    """

    def __init__(self, window: int = THROUGHPUT_WINDOW) -> None:
        super().__init__(window)
        self._last: tuple[int, int, int] | None = None  # second, completed, failed

    def record(self, second: int, completed: int, failed: int) -> None:
        """Take a reading of the store's counts at *second* (monotonic)."""
        last, self._last = self._last, (second, completed, failed)
        if last is None:
            return
        if self._newest is None or second > self._newest:
            self._advance(second)
        first = min(last[0] + 1, second)  # two polls in the same second: that second
        self._spread(first, second, max(completed - last[1], 0), self._completed)
        self._spread(first, second, max(failed - last[2], 0), self._failed)

    def _spread(self, first: int, last: int, count: int, buckets: list[int]) -> None:
        """Add *count* over the seconds *first* to *last*, evenly, within the window."""
        span = last - first + 1
        for index, second in enumerate(range(first, last + 1)):
            if second > last - self._window:
                buckets[second % self._window] += count * (index + 1) // span - (
                    count * index // span
                )


# One counter per in-memory queue, shared by every app on it; it refers to nothing,
# so the queue (which holds it as a hook) can still be collected.
_counters: weakref.WeakKeyDictionary[WorkQueue, ThroughputCounter] = weakref.WeakKeyDictionary()


def _counter_for(queue: WorkQueue) -> ThroughputCounter:
    counter = _counters.get(queue)
    if counter is None:
        counter = _counters[queue] = ThroughputCounter()
        queue.add_hook(counter)
    return counter


# ----------------------------------------------------------------- the source


class QueueSource:
    """The `TaskSource` over a `~trio_workq.TaskQueue`, in memory or durable (same Trio run).

    On a durable queue it shows every task of the store, whichever process
    runs it; its worker counts are this process's. Any other `TaskQueue`
    (a wrapper of one of these, say) is shown through the protocol alone:
    without the task's arguments, with the chart fed by its counts as a
    durable queue's is, and without ``/metrics`` (which instruments only
    the two queues).
    """

    def __init__(self, queue: TaskQueue) -> None:
        self._queue = check_queue(queue)
        # In memory, the shared counter counts from the first app on; a store's
        # counts are read at each poll.
        self._throughput: ThroughputCounter | PolledThroughput = (
            _counter_for(self._queue) if isinstance(self._queue, WorkQueue) else PolledThroughput()
        )
        self._polling = False  # a reading of the counts for the chart is under way
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
        # A queue with an owner id in a store shares it with other processes.
        scope: WorkersScope = "queue"
        if stats.owner is not None:
            scope = "process" if stats.workers else "none"
        return Stats(
            counts=counts,
            workers=stats.workers,
            busy_workers=stats.busy_workers,
            retained=stats.retained,
            closed=stats.closed,
            workers_scope=scope,
        )

    async def page(
        self, *, status: str | None, name: str | None, limit: int, cursor: str | None
    ) -> TaskListPage:
        try:
            page = await self._queue.list_tasks(
                status=status, name=name, limit=limit, cursor=cursor
            )
        except ValueError as exc:  # list_tasks checks the query's values
            raise InvalidQuery(str(exc)) from exc
        return TaskListPage(tuple(task_summary(info) for info in page.tasks), page.next_cursor)

    async def get(self, task_id: str) -> TaskDetail:
        queue = self._queue
        if isinstance(queue, WorkQueue):
            # The handle holds the argument objects; one snapshot of it.
            handle = await queue.get_handle(task_id)
            info, args = handle.info_nowait(), _show_args(handle.args)
        elif isinstance(queue, DurableWorkQueue):
            # The stored row holds them serialized.
            info = await queue.get_info(task_id)
            row = await queue.store.get(task_id)
            if row is None:  # purged since get_info read it
                raise TaskNotFound(f"no task with id {task_id!r} in the store (unknown, or purged)")
            args = _show_stored_args(queue.serializer, row.payload)
        else:
            info, args = await queue.get_info(task_id), None
        return TaskDetail(
            task=task_summary(info), errors=tuple(error_view(e) for e in info.errors), args=args
        )

    async def cancel(self, task_id: str) -> TaskSummary:
        handle = await self._queue.get_handle(task_id)
        if not await handle.cancel():
            info = await handle.info()
            raise TaskConflict(f"task {task_id} has already finished ({info.status.value})")
        return task_summary(await handle.info())

    async def retry(self, task_id: str) -> TaskSummary:
        try:
            handle = await self._queue.retry(task_id)
        except TaskStateError as exc:
            raise TaskConflict(str(exc)) from exc
        return task_summary(await handle.info())

    async def throughput(self) -> Throughput:
        counter = self._throughput
        if isinstance(counter, PolledThroughput) and not self._polling:
            # One reading at a time (pages in several tabs poll together): readings
            # answered out of order would count the same tasks twice.
            self._polling = True
            try:
                stats = await self._queue.statistics()
            finally:
                self._polling = False
            second = math.floor(trio.current_time())
            counter.record(second, stats.completed, stats.failed)
        else:
            await trio.lowlevel.checkpoint()
            second = math.floor(trio.current_time())
        completed, failed = counter.series(second)
        end = self._queue.wall_time(second + 1.0)
        return Throughput(end=end, interval=1.0, completed=completed, failed=failed)

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
            # Instrumented on the first scrape, so a queue nobody scrapes pays nothing.
            # A durable queue's first reading of the store is awaited here (a handler
            # may wait); later ones come from the background refresh.
            if not isinstance(self._queue, WorkQueue | DurableWorkQueue):
                return None  # instrument() knows these two
            registry = CollectorRegistry(auto_describe=True)
            instrumentation = instrument(self._queue, registry=registry)
            self._instrumentation = instrumentation
            await instrumentation.refresh_gauges()
        return generate_latest(instrumentation.registry)

    def close(self) -> None:
        """Remove the Prometheus instrumentation (and its refresh), if ``/metrics`` added it."""
        self._closed = True
        instrumentation, self._instrumentation = self._instrumentation, None
        if instrumentation is not None:
            instrumentation.uninstrument()
