# SPDX-License-Identifier: MIT
# The queue owns its records: a `MemoryTaskHandle` is the queue's record of its task, and
# the queue reads and writes its slots directly on the hot path (a property per field
# would cost time per task). Hence this module's waiver; nothing outside ``_memory``
# reads those slots (integrations use the record's read-only accessors).
# pyright: reportPrivateUsage=false
"""The work queue: intake, the worker pool, the scheduler and shutdown."""

from __future__ import annotations

import enum
import logging
import math
import operator
import sys
import time
from bisect import bisect_left
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final, TypeVar

import trio

from .._core.errors import QueueClosed, TaskNotFound, TaskStateError, TaskTimeout, check_seconds
from .._core.info import MAX_ERROR_HISTORY, MAX_PAGE_SIZE, TaskInfo, TaskOptions, TaskPage
from .._core.outcomes import split_attempt_error
from .._core.registry import QUEUE_DEFAULT, REGISTERED_FUNCTIONS, registration_of
from .._core.retry import RetryPolicy
from .._core.stats import QueueStatistics as QueueStatistics
from .._core.status import (
    CANCELLED,
    COMPLETED,
    EVENT_FOR_STATUS,
    FAILED,
    QUEUED,
    RETRYING,
    RUNNING,
    SCHEDULED,
    EventKind,
    TaskStatus,
)
from .._core.transitions import Ending, decide
from .._core.validate import (
    CO_COROUTINE,
    check_async_callable,
    check_aware,
    check_count,
    check_name,
    check_priority,
    check_timeout,
)
from .._runtime.events import EventSource, current_task_var, log_listener_error, logger, running_in
from .._runtime.lifecycle import only_cancelled, run_queue
from .._runtime.waiters import Waiters
from .handle import MemoryTaskHandle
from .ready import ReadySet
from .records import RetainedRecords
from .timers import TimerHeap

# (Module constants: an enum member read through its class is slow in 3.11.)
_RAISED: Final = Ending.RAISED
_RAISED_WHILE_CANCELLED: Final = Ending.RAISED_WHILE_CANCELLED

if sys.version_info < (3, 11):  # pragma: no cover - trio depends on the backport there
    pass

if TYPE_CHECKING:
    from typing_extensions import TypeVarTuple, Unpack

    Ts = TypeVarTuple("Ts")

T = TypeVar("T")

# Ids count status changes: they never reach 10**20.
_MAX_ID_DIGITS: Final = 20

# Dispatch at most this many due timers before letting other tasks run.
_TIMER_BATCH: Final = 256

# Workers running back-to-back tasks that never await yield to the rest of
# the run loop once this many seconds have passed (trio's scheduling contract).
# Another task can wait two slices: trio runs a batch's tasks in random order.
_FAIR_SLICE: Final = 0.0005


class _Unset(enum.Enum):
    UNSET = "UNSET"


#: Default of ``retry=`` on submit: use the queue's policy.
_UNSET: Final = _Unset.UNSET


_value_of: Callable[[tuple[MemoryTaskHandle[Any], int]], int] = operator.itemgetter(1)
_first: Callable[[tuple[int, MemoryTaskHandle[Any]]], int] = operator.itemgetter(0)

# A listing call examines at most this many entries (a sparse name filter
# returns a short page and a cursor instead of walking everything).
_SCAN_LIMIT: Final = 10_000


class WorkQueue(EventSource):
    """A pool of worker tasks running submitted async functions.

    Open one with `open_work_queue`; do not instantiate it directly.
    """

    def __init__(
        self,
        *,
        workers: int,
        max_buffer_size: int | float,
        max_scheduled: int | float,
        retry: RetryPolicy | None,
        max_retained: int | float,
        retention: float | None,
        shutdown_timeout: float | None,
    ) -> None:
        self._workers = int(check_count("workers", workers, minimum=1, allow_inf=False))
        self._capacity = check_count("max_buffer_size", max_buffer_size, minimum=0, allow_inf=True)
        self._max_scheduled = check_count("max_scheduled", max_scheduled, minimum=1, allow_inf=True)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy or None, not {type(retry).__name__}")
        self._retry = retry
        self._default_options = TaskOptions(None, 0, None, retry)
        self._max_retained = check_count("max_retained", max_retained, minimum=0, allow_inf=True)
        self._retention = None if retention is None else check_seconds("retention", retention)
        self._shutdown_timeout = (
            None
            if shutdown_timeout is None
            else check_seconds("shutdown_timeout", shutdown_timeout)
        )

        self._ready = ReadySet()
        self._timers = TimerHeap()
        # Parked idle workers (trio tasks), woken directly with reschedule().
        self._idle: deque[trio.lowlevel.Task] = deque()
        # Callers of submit() waiting for room; also the scheduler, with a due task.
        self._producers: Waiters[MemoryTaskHandle[Any]] = Waiters()
        self._schedulers: Waiters[tuple[MemoryTaskHandle[Any], float]] = Waiters()
        self._tasks: dict[int, MemoryTaskHandle[Any]] = {}  # by id, oldest first
        # The status indexes. Every transition stamps the task with a new mark
        # (a counter), and listings walk an index newest mark first. The two
        # hot statuses need no index of their own: queued tasks are the ready
        # set's, running ones are in the workers' slots. Tasks waiting on a
        # timer map task -> mark here (in mark order; their lengths are the
        # counts). Finished tasks are kept in finish order by the retained records.
        self._live: dict[TaskStatus, dict[MemoryTaskHandle[Any], int]] = {
            SCHEDULED: {},
            RETRYING: {},
        }
        # What each worker runs now (None while idle).
        self._running: list[MemoryTaskHandle[Any] | None] = [None] * self._workers
        self._retained = RetainedRecords(self._tasks, self._max_retained, self._retention)
        self._mark = 0
        self._submitted = 0
        self._closing = False
        self._cancel_queued = False  # shutdown(cancel_queued=True) was called
        self._drained = False  # closing, and nothing left to run: workers may exit
        self._scope = trio.CancelScope()
        self._stopped = trio.Event()
        self._timer_scope: trio.CancelScope | None = None
        self._held: MemoryTaskHandle[Any] | None = (
            None  # a due task the scheduler waits to dispatch
        )
        self._init_events()
        self._crashed = False  # the queue's own tasks raised something other than Cancelled
        # The workers' shared time slice (see _fair_yield): when the current
        # one began, and when busy workers must next yield.
        self._slice_start = -math.inf
        self._slice_end = -math.inf
        # The run's clock, read directly (it is fixed for the run; skips a lookup).
        self._clock = trio.lowlevel.current_clock()
        # trio time -> wall clock, fixed once so timestamps are cheap and monotonic.
        self._wall_offset = time.time() - self._clock.current_time()

    # ------------------------------------------------------------------ intake

    async def submit(
        self,
        fn: Callable[[Unpack[Ts]], Awaitable[T]],
        *args: Unpack[Ts],
        name: str | None = None,
        priority: int = 0,
        timeout: float | None = None,  # noqa: ASYNC109 - per task, from its start
        retry: RetryPolicy | _Unset | None = _UNSET,
    ) -> MemoryTaskHandle[T]:
        """Queue ``await fn(*args)`` and return its handle, waiting while the buffer is full.

        Always a checkpoint. If cancelled while waiting, nothing was queued.

        Args:
            fn: An async function (pass keyword arguments with
                `functools.partial`).
            *args: Positional arguments for *fn*.
            name: A label for logs and lookups; defaults to *fn*'s registered
                name (see `trio_workq.task`), else ``module:qualname``.
            priority: Higher runs first; FIFO among equal priorities.
            timeout: Seconds one attempt may run (counted from its start);
                an overrun cancels it and records `TaskTimeout`.
            retry: A `RetryPolicy`, ``None`` for no retries, or omitted for
                *fn*'s registered policy, else the queue's default.

        Raises:
            TypeError, ValueError: For bad arguments; nothing is queued.
            QueueClosed: If the queue is shutting down.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        task = self._new_task(fn, args, name, priority, timeout, retry, self._clock.current_time())
        idle = self._idle
        if idle or self._ready.live < self._capacity:  # (_has_room and _make_ready, inlined)
            self._ready.push(task)
            if idle:
                trio.lowlevel.reschedule(idle.pop())
            self._accept(task)
            await trio.lowlevel.cancel_shielded_checkpoint()
        else:
            await self._producers.wait(task)  # the waker queued it, or raised QueueClosed
        return task

    def submit_nowait(
        self,
        fn: Callable[[Unpack[Ts]], Awaitable[T]],
        *args: Unpack[Ts],
        name: str | None = None,
        priority: int = 0,
        timeout: float | None = None,
        retry: RetryPolicy | _Unset | None = _UNSET,
    ) -> MemoryTaskHandle[T]:
        """Queue ``await fn(*args)`` if there is room now. Not a checkpoint.

        Takes the same arguments as `submit`.

        Raises:
            trio.WouldBlock: If the buffer is full; nothing is queued.
            TypeError, ValueError: For bad arguments.
            QueueClosed: If the queue is shutting down.
        """
        task = self._new_task(fn, args, name, priority, timeout, retry, self._clock.current_time())
        if not self._has_room():
            raise trio.WouldBlock
        self._make_ready(task)
        self._accept(task)
        return task

    async def submit_many(
        self,
        fn: Callable[[Unpack[Ts]], Awaitable[T]],
        calls: Iterable[tuple[Unpack[Ts]]],
        *,
        name: str | None = None,
        priority: int = 0,
        timeout: float | None = None,  # noqa: ASYNC109 - per task, from its start
        retry: RetryPolicy | _Unset | None = _UNSET,
    ) -> list[MemoryTaskHandle[T]]:
        """Queue one task per argument tuple in *calls*; return their handles, in order.

        ``submit_many(fn, [(1,), (2,)])`` is ``submit(fn, 1)`` then
        ``submit(fn, 2)``, except that every call is checked first: if one
        is bad, nothing is queued. Then the tasks are queued in order, each
        waiting for room like `submit`. Always a checkpoint. If cancelled
        while waiting for room, the tasks queued before stay queued and the
        rest are not (as with a loop of `submit`).

        Raises:
            TypeError, ValueError, QueueClosed: As for `submit`.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        now = self._clock.current_time()
        tasks = [
            self._new_task(fn, tuple(args), name, priority, timeout, retry, now) for args in calls
        ]
        waited = False
        for task in tasks:
            if self._closing:
                raise _closed_error()
            if self._has_room():
                self._make_ready(task)
                self._accept(task)
            else:
                waited = True
                await self._producers.wait(task)
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return tasks

    async def schedule(
        self,
        fn: Callable[[Unpack[Ts]], Awaitable[T]],
        *args: Unpack[Ts],
        delay: float | None = None,
        at: datetime | None = None,
        name: str | None = None,
        priority: int = 0,
        timeout: float | None = None,  # noqa: ASYNC109 - per task, from its start
        retry: RetryPolicy | _Unset | None = _UNSET,
    ) -> MemoryTaskHandle[T]:
        """Run ``await fn(*args)`` later: after *delay* seconds, or at the instant *at*.

        The task is ``scheduled`` until due, then ``queued`` like any
        submitted task. Waits while ``max_scheduled`` tasks are already
        scheduled. Always a checkpoint; if cancelled while waiting, nothing
        was scheduled.

        Args:
            delay: Seconds from now (>= 0).
            at: A timezone-aware `datetime`; an instant in the past means now.
            name, priority, timeout, retry: As for `submit`.

        Exactly one of *delay* and *at* must be given.

        Raises:
            TypeError, ValueError: For bad arguments; nothing is scheduled.
            QueueClosed: If the queue is shutting down.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        task, due = self._new_scheduled(fn, args, delay, at, name, priority, timeout, retry)
        if self._has_scheduling_room():
            self._add_scheduled(task, due)
            await trio.lowlevel.cancel_shielded_checkpoint()
        else:
            await self._schedulers.wait((task, due))
        return task

    def schedule_nowait(
        self,
        fn: Callable[[Unpack[Ts]], Awaitable[T]],
        *args: Unpack[Ts],
        delay: float | None = None,
        at: datetime | None = None,
        name: str | None = None,
        priority: int = 0,
        timeout: float | None = None,
        retry: RetryPolicy | _Unset | None = _UNSET,
    ) -> MemoryTaskHandle[T]:
        """Like `schedule`, but raise `trio.WouldBlock` instead of waiting. Not a checkpoint."""
        task, due = self._new_scheduled(fn, args, delay, at, name, priority, timeout, retry)
        if not self._has_scheduling_room():
            raise trio.WouldBlock
        self._add_scheduled(task, due)
        return task

    def _new_task(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        name: str | None,
        priority: int,
        timeout: float | None,
        retry: RetryPolicy | _Unset | None,
        now: float,
    ) -> MemoryTaskHandle[T]:
        if self._closing:
            raise _closed_error()
        code = getattr(fn, "__code__", None)
        if code is None or not code.co_flags & CO_COROUTINE:  # the common case, inline
            check_async_callable(fn)
            registered = registration_of(fn, name)  # (a partial of a registered task, ...)
        elif fn in REGISTERED_FUNCTIONS:  # an async function: hashable; one lookup
            registered = registration_of(fn, name)
        else:
            registered = None
        if priority.__class__ is not int:
            check_priority(priority)
        if (
            registered is None
            and name is None
            and timeout is None
            and retry is _UNSET
            and priority == 0
        ):
            options = self._default_options
        else:
            if registered is not None:
                # A @trio_workq.task function: its registered name and policy, as on a store.
                name = registered.name
                if retry is _UNSET and registered.retry is not QUEUE_DEFAULT:
                    retry = registered.retry
            if name is not None:
                check_name(name)
            if timeout is not None:
                timeout = check_timeout(timeout)
            if retry is _UNSET:
                retry = self._retry
            elif retry is not None and not isinstance(retry, RetryPolicy):
                raise TypeError(f"retry must be a RetryPolicy or None, not {type(retry).__name__}")
            options = TaskOptions(name, priority, timeout, retry)
        task = MemoryTaskHandle(self, fn, args, options, now)
        if self._submit_hooks:  # called here, in the submitting task
            task._headers = self._submit_headers()
        return task

    def _new_scheduled(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        delay: float | None,
        at: datetime | None,
        name: str | None,
        priority: int,
        timeout: float | None,
        retry: RetryPolicy | _Unset | None,
    ) -> tuple[MemoryTaskHandle[T], float]:
        now = self._clock.current_time()
        if at is None:
            if delay is None:
                raise TypeError("schedule() takes exactly one of delay= and at=")
            if delay.__class__ is not float or not 0.0 <= delay < math.inf:
                delay = check_seconds("delay", delay)
            due = now + delay
        else:
            if delay is not None:
                raise TypeError("schedule() takes exactly one of delay= and at=")
            wait = (check_aware(at) - datetime.now(timezone.utc)).total_seconds()
            due = now + max(wait, 0.0)
        return self._new_task(fn, args, name, priority, timeout, retry, now), due

    # --------------------------------------------------------- state changes

    def _has_room(self) -> bool:
        """Whether a task can be queued now: buffer space, or an idle worker to take it."""
        return self._ready.live < self._capacity or bool(self._idle)

    def _has_scheduling_room(self) -> bool:
        return len(self._live[SCHEDULED]) < self._max_scheduled

    def _accept(self, task: MemoryTaskHandle[Any]) -> None:
        """Register a new task: from now on it can be looked up and counted.

        A queued task is already in the ready set; a scheduled one enters the
        timer heap here (it needs its id). Listeners run last, so one that
        cancels the task or submits another finds every count up to date.
        """
        # The id is the task's first mark: one int per task, not two, and the
        # registry is in id order. (Ids are unique and increasing, not dense.)
        self._mark = mark = task._mark = task._seq = self._mark + 1
        self._tasks[mark] = task
        self._submitted += 1
        if task.status is SCHEDULED:
            self._live[SCHEDULED][task] = mark
            self._add_timer(task, task._due)  # type: ignore[arg-type]
        if self._hooks:
            kind = EventKind.SCHEDULED if task.status is SCHEDULED else EventKind.SUBMITTED
            for hook in self._hooks:  # (inlined here and in _set_status: hot with hooks)
                try:
                    hook(kind, task, task._created, False)
                except Exception:
                    log_listener_error(hook)

    def _set_status(self, task: MemoryTaskHandle[Any], status: TaskStatus) -> None:
        """Where a registered task changes status (`_finish` inlines it for terminal ones).

        Callers put the task where its new status lives (ready set, timer
        heap) first: listeners called here may act on it or on the queue.
        """
        old = task.status
        live = self._live
        old_index = live.get(old)
        if old_index is not None:
            del old_index[task]
        self._mark = mark = task._mark = self._mark + 1
        index = live.get(status)
        if index is not None:  # (other statuses are indexed elsewhere; see __init__)
            index[task] = mark
        task.status = status
        if self._hooks:
            kind = EVENT_FOR_STATUS.get(status)
            if kind is not None:
                # Reuse the transition's own timestamp where it has one.
                if status is RUNNING:
                    when = task._started
                else:
                    when = task._finished  # set for terminal statuses only
                    if when is None:
                        when = self._clock.current_time()
                was_running = old is RUNNING
                for hook in self._hooks:
                    try:
                        hook(kind, task, when, was_running)  # type: ignore[arg-type]
                    except Exception:
                        log_listener_error(hook)
        if old is SCHEDULED and self._schedulers:
            self._admit_scheduled()

    def _make_ready(self, task: MemoryTaskHandle[Any]) -> None:
        """Put a queued task in the ready set and wake an idle worker for it."""
        self._ready.push(task)
        if self._idle:
            trio.lowlevel.reschedule(self._idle.pop())

    def _admit(self, task: MemoryTaskHandle[Any]) -> None:
        """Queue a task whose turn came in the producers' line (unless it was cancelled)."""
        if task is self._held:
            self._held = None  # now, not when the scheduler next runs: drain checks read it
        if task.status is QUEUED:  # a new task from submit()
            self._make_ready(task)
            self._accept(task)
        elif not task.done:  # a due task the scheduler held (unless cancelled meanwhile)
            self._queue_due(task)

    def _queue_due(self, task: MemoryTaskHandle[Any]) -> None:
        """Queue a scheduled or retrying task whose time has come."""
        task._queued = self._clock.current_time()
        self._make_ready(task)  # first: the status change may call listeners
        self._set_status(task, QUEUED)

    def _admit_producers(self) -> None:
        """Queue waiting producers' tasks while there is room."""
        producers = self._producers
        while producers and self._ready.live < self._capacity:
            self._admit(producers.wake_first())

    def _admit_scheduled(self) -> None:
        schedulers = self._schedulers
        while schedulers and self._has_scheduling_room():
            task, due = schedulers.wake_first()
            self._add_scheduled(task, due)

    def _add_scheduled(self, task: MemoryTaskHandle[Any], due: float) -> None:
        task.status = SCHEDULED
        task._due = due
        self._accept(task)  # (it adds the timer)

    def _add_timer(self, task: MemoryTaskHandle[Any], due: float) -> None:
        task._due = due
        if self._timers.push(task, due) and self._timer_scope is not None:
            self._timer_scope.deadline = due

    def _finish(self, task: MemoryTaskHandle[Any], status: TaskStatus) -> None:
        """Move a task to a terminal status, wake its waiters, retain its record.

        What `_set_status` does, inlined, with the listeners called last: the
        record is complete when they run, so one may retry the task.
        """
        now = self._clock.current_time()
        task._finished = now
        task._scope = None
        task._due = None
        old = task.status
        old_index = self._live.get(old)
        if old_index is not None:
            del old_index[task]
        self._mark = task._mark = self._mark + 1
        task.status = status
        if task._event is not None:
            task._event.set()
        self._retained.add(task)
        if status is FAILED:
            logger.warning(
                "task %s (%s) failed after %d attempt(s)",
                task.id,
                task.name,
                task.attempts,
                exc_info=task._last_error,
            )
        if self._hooks:
            kind = EVENT_FOR_STATUS[status]
            was_running = old is RUNNING
            for hook in self._hooks:
                try:
                    hook(kind, task, now, was_running)
                except Exception:
                    log_listener_error(hook)
        if old is SCHEDULED and self._schedulers:
            self._admit_scheduled()
        if self._closing:
            self._check_drained()

    def _fail_attempt(
        self, task: MemoryTaskHandle[Any], error: Exception, *, retry: bool = True
    ) -> None:
        """Record a failed attempt, then retry the task or end it as `decide` says.

        *retry* False: the attempt failed while an enclosing scope was cancelled.
        """
        task._last_error = error
        task._errors = (*task._errors, error)[-MAX_ERROR_HISTORY:]
        policy = task._options.retry
        # A task that fails while being cancelled is not retried: cancellation never is.
        ending = (
            _RAISED
            if retry and not (task._cancel_requested or self._scope.cancel_called)
            else _RAISED_WHILE_CANCELLED
        )
        now = self._clock.current_time()
        status, task._last_error, due = decide(
            ending,
            error,
            attempts=task.attempts,
            max_attempts=1 if policy is None else policy.max_attempts,
            policy=policy,
            now=now,
            cancel_retries=self._cancel_queued,
        )
        if status is RETRYING:
            assert due is not None
            if logger.isEnabledFor(logging.INFO):
                logger.info(
                    "task %s (%s) attempt %d failed (%r); retrying in %.3g s",
                    task.id,
                    task.name,
                    task.attempts,
                    error,
                    due - now,
                )
            if (
                due == now
                and not self._hooks
                and self._timers.next_due() > now
                and self._has_room()
            ):
                # Due at once, nothing else due, room: what the scheduler
                # would do, without the timer heap and its wake-up. (Not
                # with listeners: they may act on the task while it is retrying.)
                task._due = now
                self._queue_due(task)
            else:
                self._add_timer(task, due)
                self._set_status(task, RETRYING)
        elif status is CANCELLED:
            # shutdown(cancel_queued=True) came first: no new attempt starts.
            task._cancel_requested = True
            self._finish(task, CANCELLED)
        else:
            self._finish(task, FAILED)

    # ------------------------------------------------------------- the pool

    def _take_unbuffered(self) -> MemoryTaskHandle[Any] | None:
        """With an empty ready set: a waiting producer's task (max_buffer_size=0), or None."""
        producers = self._producers
        ready = self._ready
        while producers._line:
            # Through the ready set, so that listeners find the task counted.
            self._admit(producers.wake_first())
            task = ready.pop() if ready.live else None
            if task is not None:
                return task
        return None

    async def _worker(self, slot: int) -> None:
        task: MemoryTaskHandle[Any] | None = None
        running = self._running
        idle = self._idle
        me = trio.lowlevel.current_task()

        def abort_idle(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            idle.remove(me)
            return trio.lowlevel.Abort.SUCCEEDED

        ready = self._ready
        producer_line = self._producers._line
        clock = self._clock
        set_status = self._set_status
        started = -math.inf
        # What a task raised while a scope was cancelled, judged outside our scope:
        # an exception in place of the Cancelled, or errors raised beside it (a group).
        replaced: Exception | None = None
        beside: Exception | None = None
        try:
            while True:
                # One cancel scope serves many tasks; it is replaced only once a
                # cancel() or a timeout has used it (a fresh scope per task is slow).
                scope = trio.CancelScope()
                with scope:
                    while True:
                        if self._closing and self._scope.cancel_called:
                            # Past the shutdown deadline (or aborted): nothing new
                            # starts, and what is still queued ends cancelled.
                            self._begin_shutdown(cancel_queued=True)
                        # (Attribute checks before calls: this loop runs once per task.)
                        task = ready.pop() if ready.live else None
                        if task is None:
                            task = self._take_unbuffered() if producer_line else None
                            if task is None:
                                if self._drained:
                                    return
                                idle.append(me)
                                await trio.lowlevel.wait_task_rescheduled(abort_idle)
                                continue
                        task.attempts += 1
                        task._started = started = clock.current_time()
                        task._due = None
                        task._scope = scope
                        running[slot] = task
                        current_task_var.set(task)
                        if self._hooks:
                            set_status(task, RUNNING)
                        else:
                            # What _set_status does for queued -> running, neither of
                            # which has an index: inlined, as it runs once per task.
                            self._mark = task._mark = self._mark + 1
                            task.status = RUNNING
                        if producer_line:
                            # Now that the task counts as running: the listeners of
                            # the tasks admitted here may act on it.
                            self._admit_producers()
                        timeout = task._options.timeout
                        if timeout is not None:
                            scope.deadline = started + timeout
                        try:
                            value = await task._fn(*task._args)
                        except Exception as exc:
                            task._scope = None
                            if trio.current_effective_deadline() == -math.inf:
                                # Raised while a scope was cancelled: ours (cancel() or
                                # the timeout) or an enclosing one. Judged below.
                                replaced = exc
                                break
                            self._fail_attempt(task, exc)
                        except BaseException as exc:
                            # Cancelled, maybe in a group beside the task's own errors
                            # (a child's finally): the Cancelled goes on to the scopes
                            # and the errors stay the task's. KeyboardInterrupt & co go on.
                            to_raise, beside = split_attempt_error(exc)
                            if to_raise is None or beside is None:
                                raise
                            raise to_raise from None
                        else:
                            task._result = value
                            self._finish(task, COMPLETED)
                        running[slot] = None
                        ran, task = task, None
                        if timeout is not None:
                            scope.deadline = math.inf
                            if scope.cancel_called:
                                break  # the deadline passed as the task returned
                        if ran._cancel_requested:
                            break  # a cancel() raced the task's completion; renew the scope
                        if started >= self._slice_end and (ready.live or producer_line):
                            await self._fair_yield(started)
                if task is not None:
                    # Our scope caught the Cancelled (cancel() or the task's timeout),
                    # or the task raised an exception while a scope was cancelled.
                    task._scope = None
                    if replaced is not None:
                        error, replaced = replaced, None
                        # Cancelled by an enclosing scope: no retry, and this worker stops.
                        stopping = trio.current_effective_deadline() == -math.inf
                        self._fail_attempt(task, error, retry=not stopping)
                        running[slot] = None
                        task = None
                        if stopping:
                            await trio.lowlevel.checkpoint()  # raises Cancelled
                        continue
                    if task._cancel_requested:
                        self._end_cancelled(task, beside)
                    else:
                        timed_out = TaskTimeout(f"task timed out after {task._options.timeout}s")
                        timed_out.__cause__ = beside
                        self._fail_attempt(task, timed_out)
                    beside = None
                    running[slot] = None
                    task = None
        except BaseException:
            # Cancelled from outside (forced shutdown), or KeyboardInterrupt & co:
            # the task ends cancelled and the exception goes on.
            if task is not None and not task.done:
                self._end_cancelled(task, beside)
            running[slot] = None
            raise

    def _end_cancelled(self, task: MemoryTaskHandle[Any], beside: Exception | None) -> None:
        """End a task ``cancelled``; record errors it raised beside its Cancelled (a group)."""
        if beside is not None:
            task._last_error = beside
            task._errors = (*task._errors, beside)[-MAX_ERROR_HISTORY:]
            logger.warning(
                "task %s (%s) was cancelled and raised errors while unwinding",
                task.id,
                task.name,
                exc_info=beside,
            )
        self._finish(task, CANCELLED)

    async def _fair_yield(self, last_start: float) -> None:
        """Let the rest of the run loop in: the busy workers have used up their slice.

        A worker with more ready work runs it without a schedule point, so
        tasks that never await would hold the run loop for the whole backlog.
        The workers share one slice, so that a run-loop batch of busy workers
        holds the loop about one slice in all, not one each: the first of
        them to resume in the next batch (one that yielded after the current
        slice began) starts the next slice.
        """
        await trio.lowlevel.checkpoint()
        if last_start >= self._slice_start:
            now = self._clock.current_time()
            self._slice_start = now
            self._slice_end = now + _FAIR_SLICE

    async def _scheduler(self) -> None:  # noqa: ASYNC910 - private; runs until drained
        """Move due tasks to the ready set: one task and one heap for every timer."""
        timers = self._timers
        burst = 0
        while not self._drained:
            task = timers.pop_due(self._clock.current_time())
            if task is None:
                burst = 0
                with trio.CancelScope(deadline=timers.next_due()) as self._timer_scope:
                    await trio.sleep_forever()
                self._timer_scope = None
                continue
            if self._has_room():
                self._queue_due(task)
                burst += 1
                if burst >= _TIMER_BATCH:
                    burst = 0
                    await trio.lowlevel.checkpoint()
            else:
                # A full buffer delays dispatch; it never drops the task.
                self._held = task
                try:
                    await self._producers.wait(task)
                except BaseException:
                    # The queue is being torn down: the held task must not be lost.
                    if not task.done:
                        self._finish(task, CANCELLED)
                    raise
                finally:
                    self._held = None

    # -------------------------------------------------------------- lookups

    async def get_handle(self, task_id: str) -> MemoryTaskHandle[Any]:
        """The handle of the task with this id. Always a checkpoint; see `get_handle_nowait`.

        Raises:
            TaskNotFound: If the id is unknown or its record has expired.
        """
        await trio.lowlevel.checkpoint()
        return self.get_handle_nowait(task_id)

    def get_handle_nowait(self, task_id: str) -> MemoryTaskHandle[Any]:
        """The handle of the task with this id. Not a checkpoint.

        Raises:
            TaskNotFound: If the id is unknown or its record has expired.
            TypeError: If *task_id* is not a string.
        """
        if not isinstance(task_id, str):
            raise TypeError(f"task_id must be a str, not {type(task_id).__name__}")
        self._retained.trim(self._clock.current_time())
        # Ids are decimal numbers; "07" or " 7" name no task.
        # (int() refuses more than 4,300 digits; no id has more than 20.)
        if len(task_id) <= _MAX_ID_DIGITS and task_id.isascii() and task_id.isdigit():
            task = self._tasks.get(int(task_id))
            if task is not None and task.id == task_id:
                return task
        raise TaskNotFound(f"no task with id {task_id!r} (unknown, or its record expired)")

    async def get_info(self, task_id: str) -> TaskInfo:
        """A `TaskInfo` snapshot of the task. Always a checkpoint; see `get_info_nowait`.

        Raises:
            TaskNotFound: If the id is unknown or its record has expired.
        """
        await trio.lowlevel.checkpoint()
        return self.get_info_nowait(task_id)

    def get_info_nowait(self, task_id: str) -> TaskInfo:
        """A `TaskInfo` snapshot of the task with this id. Not a checkpoint.

        Raises:
            TaskNotFound: If the id is unknown or its record has expired.
        """
        return self.get_handle_nowait(task_id).info_nowait()

    async def cancel(self, task_id: str) -> bool:
        """Cancel the task with this id. Always a checkpoint; see `cancel_nowait`.

        A queued or scheduled task is removed and never runs; a running task
        is cancelled through its own cancel scope (it ends ``cancelled`` once
        it unwinds, unless it finishes first).

        Returns:
            ``True`` if the task had not finished, ``False`` if it had (and
            nothing changed).

        Raises:
            TaskNotFound: If the id is unknown or its record has expired.
        """
        return await self.get_handle_nowait(task_id).cancel()

    def cancel_nowait(self, task_id: str) -> bool:
        """Cancel the task with this id, as `cancel` does. Not a checkpoint.

        Raises:
            TaskNotFound: If the id is unknown or its record has expired.
        """
        return self._cancel_task(self.get_handle_nowait(task_id))

    async def retry(self, task_id: str) -> MemoryTaskHandle[Any]:
        """Run a ``failed`` or ``cancelled`` task again; see `retry_nowait`. Always a checkpoint.

        Raises:
            TaskNotFound, TaskStateError, QueueClosed: As for `retry_nowait`.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        task = self.retry_nowait(task_id)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return task

    def retry_nowait(self, task_id: str) -> MemoryTaskHandle[Any]:
        """Run a ``failed`` or ``cancelled`` task again, as one more attempt. Not a checkpoint.

        The task keeps its id and handle, becomes ``retrying`` with its due
        time now, and is queued as soon as the buffer has room (like a task
        whose retry backoff ended). Its retry policy still applies: a task
        that had used all its attempts gets this one run only.

        Raises:
            TaskNotFound: If the id is unknown or its record has expired.
            TaskStateError: If the task is not ``failed`` or ``cancelled``.
            QueueClosed: If the queue is shutting down.
        """
        task = self.get_handle_nowait(task_id)
        if task.status is not FAILED and task.status is not CANCELLED:
            raise TaskStateError(
                f"task {task.id} ({task.name}) is {task.status}; only failed or "
                "cancelled tasks can be retried"
            )
        if self._closing:
            raise _closed_error()
        # Linear scans, on a rare operator action. The entries a cancelled
        # task left in the ready set or the timer heap must go: they would
        # count as its place in line, or fire at its old due time.
        self._retained.remove(task)
        self._ready.forget(task)
        self._timers.forget(task)
        task._finished = None
        task._event = None  # the old one is set; new waiters wait for this run
        task._cancel_requested = False
        task._result = None
        self._add_timer(task, self._clock.current_time())
        self._set_status(task, RETRYING)
        return task

    def _by_seq_newest_first(
        self, before: int | None
    ) -> Iterator[tuple[int, MemoryTaskHandle[Any]]]:
        """Retained and live tasks by descending id, below *before*: probes the id space.

        Ids are marks, and records expire out of id order, so there are gaps;
        the probe runs between the newest and the oldest id still held.
        """
        tasks = self._tasks
        if not tasks:
            return
        lowest = next(iter(tasks))  # ids are registered in ascending order
        highest = next(reversed(tasks))
        top = highest if before is None else min(before - 1, highest)
        for seq in range(top, lowest - 1, -1):
            task = tasks.get(seq)
            if task is not None:
                yield seq, task

    async def list_tasks(
        self,
        *,
        status: TaskStatus | str | None = None,
        name: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> TaskPage:
        """A page of task snapshots, newest first. Always a checkpoint; see `list_tasks_nowait`.

        Raises:
            ValueError, TypeError: As for `list_tasks_nowait`.
        """
        await trio.lowlevel.checkpoint()
        return self.list_tasks_nowait(status=status, name=name, limit=limit, cursor=cursor)

    def list_tasks_nowait(
        self,
        *,
        status: TaskStatus | str | None = None,
        name: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> TaskPage:
        """A page of task snapshots, newest first. Not a checkpoint.

        Without *status*, tasks come newest-submitted first; with one, those
        that entered that status most recently come first (e.g. the latest
        failures). Each status keeps its own index, so a page costs about
        the same with a million retained records as with ten. Filtering by
        *name* walks the candidates; one call examines at most 10,000 of
        them, so a sparse name can give a short (even empty) page whose
        `~TaskPage.next_cursor` continues the walk.

        Args:
            status: Only tasks in this status (a `TaskStatus` or its value).
            name: Only tasks with this name.
            limit: Page size, 1 to 1000.
            cursor: `TaskPage.next_cursor` of the previous page.

        Raises:
            ValueError: For an unknown status, a bad limit or a cursor that
                is malformed or belongs to another listing.
            TypeError: For arguments of the wrong type.
        """
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"limit must be an int, not {type(limit).__name__}")
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}, got {limit}")
        if status is not None:
            if not isinstance(status, str):
                raise TypeError(f"status must be a TaskStatus or str, not {type(status).__name__}")
            try:
                status = TaskStatus(status)
            except ValueError:
                known = ", ".join(s.value for s in TaskStatus)
                raise ValueError(f"unknown status {status!r}; expected one of {known}") from None
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, not {type(name).__name__}")
        listing = "all" if status is None else status.value
        before = None if cursor is None else _parse_cursor(cursor, listing)
        self._retained.trim(self._clock.current_time())

        # Walk the listing's entries newest first, from just below the cursor.
        candidates: Iterator[tuple[int, MemoryTaskHandle[Any]]]
        if status is None:
            candidates = self._by_seq_newest_first(before)
        elif status.is_terminal:
            candidates = self._retained.newest_first(status, before)
        elif status is QUEUED:
            candidates = self._ready.newest_first(before)
        elif status is RUNNING:
            running = [
                (task._mark, task)
                for task in self._running_tasks()
                if before is None or task._mark < before
            ]
            candidates = iter(sorted(running, key=_first, reverse=True))
        else:
            live = self._live[status]
            if before is None:
                newest_first_items = reversed(live.items())
            else:  # live indexes are small next to the retained records: a copy is fine
                items = list(live.items())
                older = bisect_left(items, before, key=_value_of)
                newest_first_items = reversed(items[:older])
            candidates = ((mark, task) for task, mark in newest_first_items)

        page: list[MemoryTaskHandle[Any]] = []
        last_key = 0
        exhausted = True
        for scanned, (key, task) in enumerate(candidates, 1):
            last_key = key
            if name is None or task.name == name:
                page.append(task)
                if len(page) == limit:
                    exhausted = next(candidates, None) is None
                    break
            if scanned == _SCAN_LIMIT:
                exhausted = False  # a sparse name filter: a short page, and where we stopped
                break
        next_cursor = None if exhausted else f"{listing}:{last_key}"
        return TaskPage(tuple(task.info_nowait() for task in page), next_cursor)

    def _cancel_task(self, task: MemoryTaskHandle[Any]) -> bool:
        status = task.status
        if status is RUNNING:
            if not task._cancel_requested:
                task._cancel_requested = True
                assert task._scope is not None
                task._scope.cancel()
            return True
        if task.done:
            return False
        task._cancel_requested = True
        if status is QUEUED:
            self._ready.discard(task)
            self._finish(task, CANCELLED)
            if self._producers:
                self._admit_producers()
        else:  # scheduled or retrying
            if task is self._held:
                # Release the scheduler from waiting for room on this task's behalf.
                self._held = None
                self._producers.wake_payload(task)
            else:
                self._timers.discard(task)
            self._finish(task, CANCELLED)
        return True

    async def statistics(self) -> QueueStatistics:
        """A snapshot of the queue's counters. Always a checkpoint; see `statistics_nowait`."""
        await trio.lowlevel.checkpoint()
        return self.statistics_nowait()

    def statistics_nowait(self) -> QueueStatistics:
        """A snapshot of the queue's counters. Not a checkpoint.

        The fields a durable queue alone knows (``held``, ``owner``) are ``None``.
        """
        self._retained.trim(self._clock.current_time())
        running = len(self._running_tasks())
        kept = self._retained.kept
        return QueueStatistics(
            workers=self._workers,
            busy_workers=running,
            queued=self._ready.live,
            scheduled=len(self._live[SCHEDULED]),
            retrying=len(self._live[RETRYING]),
            running=running,
            completed=kept(COMPLETED),
            failed=kept(FAILED),
            cancelled=kept(CANCELLED),
            closed=self._closing,
            submitted=self._submitted,
            retained=len(self._retained),
            buffer_capacity=self._capacity,
            producers_waiting=len(self._producers) - (self._held is not None),
            schedulers_waiting=len(self._schedulers),
        )

    def _running_tasks(self) -> list[MemoryTaskHandle[Any]]:
        # A worker's slot is cleared just after its task's transitions, so a
        # listener called during one may still find it there: check the status.
        return [task for task in self._running if task is not None and task.status is RUNNING]

    # ------------------------------------------------------------- shutdown

    async def shutdown(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - a deadline on the queue's own scope
        *,
        cancel_queued: bool = False,
    ) -> None:
        """Stop accepting tasks, let the queue drain, and wait until it has stopped.

        Queued tasks run, running tasks finish, and tasks waiting out a
        retry backoff get their remaining attempts. With *cancel_queued*, no
        attempt starts any more: queued and retrying tasks end ``cancelled``
        at once, and so does a running task whose attempt fails afterwards.
        Scheduled tasks that are not yet due end ``cancelled`` (an in-memory
        queue has nowhere to keep them). When *timeout* seconds have passed,
        every remaining task is cancelled; `shutdown` returns once they have
        unwound. Callers blocked in `submit` or `schedule` get `QueueClosed`.

        Always a checkpoint. Calling it again is allowed (a shorter *timeout*
        wins). If the caller is cancelled while waiting, the queue's tasks
        are cancelled at once.

        Called from inside one of the queue's own tasks (or a child task of
        one), it starts the shutdown and returns without waiting: the queue
        cannot stop before the calling task ends. That task is then cancelled
        at the deadline like any other, if it is still running.
        """
        if timeout is not None:
            timeout = check_seconds("timeout", timeout)
        self._begin_shutdown(cancel_queued=cancel_queued)
        if timeout is not None:
            self._scope.deadline = min(self._scope.deadline, self._clock.current_time() + timeout)
        if running_in(self):
            await trio.lowlevel.checkpoint()
            return
        try:
            await self._stopped.wait()
        except BaseException:
            self._scope.cancel()
            raise

    def _begin_shutdown(self, *, cancel_queued: bool) -> None:
        if not self._closing:
            self._closing = True
            # A due task the scheduler holds stays in line: it still runs, once there is room.
            self._producers.wake_all_but(self._held, _closed_error)
            self._schedulers.wake_all(_closed_error)
            self._cancel_all(self._timers.waiting(SCHEDULED))
        if cancel_queued:
            # Nothing that has not started will: queued and retrying tasks end
            # cancelled, and so does a running task's failed attempt (see _fail_attempt).
            self._cancel_queued = True
            ready = self._ready
            # One at a time: listeners called on the way may cancel others.
            while (task := ready.pop()) is not None:
                task._cancel_requested = True
                self._finish(task, CANCELLED)
            self._cancel_all(self._timers.waiting())
            if self._held is not None:  # due and waiting for room, since an earlier shutdown()
                self._cancel_task(self._held)
        self._check_drained()

    def _cancel_all(self, tasks: list[MemoryTaskHandle[Any]]) -> None:
        for task in tasks:
            self._cancel_task(task)  # skips those a listener has acted on meanwhile

    def _check_drained(self) -> None:
        """Once closing and nothing is left to run, let the workers and the scheduler exit."""
        if (
            not self._drained
            and self._ready.live == 0
            and self._timers.live == 0
            and not self._running_tasks()
            and self._held is None
        ):
            self._drained = True
            while self._idle:
                trio.lowlevel.reschedule(self._idle.pop())
            if self._timer_scope is not None:
                self._timer_scope.cancel()

    def _abort(self) -> None:
        """Cancel everything now (an exception left the ``async with`` block)."""
        self._begin_shutdown(cancel_queued=True)
        self._scope.cancel()

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    for slot in range(self._workers):
                        nursery.start_soon(self._worker, slot)
                    nursery.start_soon(self._scheduler)
                    # Hand the queue over once every worker is parked and ready, so
                    # that submit_nowait() right after opening finds them (matters
                    # when max_buffer_size=0). Each worker parks on its first step.
                    while len(self._idle) < self._workers:
                        await trio.lowlevel.checkpoint()
                    task_status.started()
        except BaseException as exc:
            self._crashed = not only_cancelled(exc)
            raise
        finally:
            # Cancelled from outside or crashed: nothing may be left half-done.
            self._begin_shutdown(cancel_queued=True)
            self._stopped.set()
            self._close_streams()


def _parse_cursor(cursor: object, listing: str) -> int:
    if not isinstance(cursor, str):
        raise TypeError(f"cursor must be a str or None, not {type(cursor).__name__}")
    kind, _, number = cursor.partition(":")
    if not number.isdigit() or not number.isascii() or len(number) > _MAX_ID_DIGITS:
        raise ValueError(f"malformed cursor {cursor!r}")
    if kind != listing:
        raise ValueError(f"cursor {cursor!r} belongs to another listing (not {listing!r})")
    return int(number)


def _closed_error() -> QueueClosed:
    return QueueClosed("the queue is shutting down and accepts no new tasks")


@asynccontextmanager
async def open_memory_queue(
    nursery: trio.Nursery | None = None,
    *,
    workers: int = 10,
    max_buffer_size: int | float = 1000,
    max_scheduled: int | float = math.inf,
    retry: RetryPolicy | None = None,
    max_retained: int | float = 10_000,
    retention: float | None = 3600.0,
    shutdown_timeout: float | None = None,
) -> AsyncGenerator[WorkQueue, None]:
    """Open a `WorkQueue` whose workers run in *nursery* (or in a nursery of its own).

    Entering starts the workers. Leaving the block normally performs
    ``await queue.shutdown(timeout=shutdown_timeout)``: the queue drains,
    and what is left at the deadline is cancelled. An exception escaping
    the block, or cancellation of the enclosing scope, cancels the queue's
    tasks at once; they are recorded ``cancelled`` as they unwind, and the
    nursery that holds the queue waits for that. Without a *nursery*, an
    exception from the block alone propagates as itself, not wrapped in an
    exception group. Both halves block.

    Args:
        nursery: Where the queue's tasks live; its deadline and
            cancellation apply to them. The queue's own scope sits inside
            it, so the shutdown deadline never touches the nursery's other
            tasks.
        workers: How many tasks run at once (>= 1).
        max_buffer_size: How many tasks may wait for a worker before
            `WorkQueue.submit` blocks; 0 makes each submit wait until a
            worker takes its task; ``math.inf`` never blocks.
        max_scheduled: How many delayed tasks may wait before
            `WorkQueue.schedule` blocks.
        retry: The default `RetryPolicy` (``None``: no retries).
        max_retained: How many finished task records to keep for lookups.
            Records are forgotten in batches, so between two batches up to
            1/16 more (at most 1,024) may still be held in memory; lookups
            never see them.
        retention: Seconds a finished record is kept (``None``: no limit
            but *max_retained*).
        shutdown_timeout: The deadline used when leaving the block
            (``None``: wait for every task, like a nursery).

    Raises:
        TypeError, ValueError: For bad arguments, before anything starts.
    """
    queue = WorkQueue(
        workers=workers,
        max_buffer_size=max_buffer_size,
        max_scheduled=max_scheduled,
        retry=retry,
        max_retained=max_retained,
        retention=retention,
        shutdown_timeout=shutdown_timeout,
    )
    async with run_queue(nursery, queue._run, queue):
        yield queue
