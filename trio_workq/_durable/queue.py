# SPDX-License-Identifier: MIT
"""The durable queue: tasks live in a `Store`, workers claim them with leases.

One *fetcher* task claims as many due tasks as there are idle workers per
round trip; *workers* run them, each attempt in its own cancel scope, and
write the outcome with the store's conditional calls, except results, which
they hand to the *recorder* to write in batches while they go on; a *heartbeat* renews
the leases of held tasks and relays cancellation requests; a *reaper*
re-queues tasks whose worker died and purges old finished tasks.
Times written to the store are wall-clock Unix seconds (it is shared by
processes and hosts); everything measured locally uses trio's clock.
"""

from __future__ import annotations

import functools
import math
import os
import secrets
import socket
import sys
import time
import traceback
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, cast

import attrs
import outcome
import trio

from .._core.errors import (
    QueueClosed,
    TaskCancelled,
    TaskNotFound,
    TaskStateError,
    TaskTimeout,
    _check_seconds,
)
from .._core.info import (
    MAX_ERROR_HISTORY,
    MAX_PAGE_SIZE,
    TaskInfo,
    TaskPage,
    TaskSnapshot,
    info_from_state,
    new_snapshot,
)
from .._core.outcomes import split_attempt_error
from .._core.retry import RetryPolicy
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
from .._core.validate import check_aware, check_count, check_name, check_priority, check_timeout
from .._runtime.events import EventSource, logger, running_in, set_current
from .._runtime.lifecycle import only_cancelled, run_queue
from .._runtime.waiters import Waiters
from .._stores.protocol import (
    NewTask,
    Recovery,
    Store,
    StoreDataError,
    StoredTask,
    StoreError,
    storable_text,
)
from .registry import TaskDefinition, definition_for, lookup, policy_for
from .serialize import JSONSerializer, Serializer

if sys.version_info < (3, 11):  # pragma: no cover - trio depends on the backport there
    from exceptiongroup import BaseExceptionGroup

if TYPE_CHECKING:
    from typing_extensions import TypeVarTuple, Unpack

    Ts = TypeVarTuple("Ts")

T = TypeVar("T")
R = TypeVar("R")
W = TypeVar("W")

#: Longest gap between two lease renewals, which is also how soon a running
#: task sees a cancellation requested from another process.
MAX_RENEW_INTERVAL: Final = 1.0

#: Seconds between two purges of finished tasks past their retention.
PURGE_INTERVAL: Final = 60.0

#: Bound on each cleanup write (releasing a task) made while being cancelled.
CLEANUP_TIMEOUT: Final = 5.0

#: How many expired leases one store call reads (the reaper repeats while full).
RECOVER_BATCH: Final = 500

#: The error recorded for an attempt whose worker stopped renewing its lease.
LEASE_EXPIRED_ERROR: Final = (
    "trio_workq.LeaseExpired: the worker running this attempt stopped renewing its lease "
    "(its process died, hung, or lost the store)"
)


class StoredError(Exception):
    """A failed attempt's error as the store keeps it: text, not the exception object.

    Durable tasks may run in another process, so their exceptions are stored
    as text and come back as this type, from `DurableTaskHandle.result` and in
    `TaskInfo.errors`.

    Attributes:
        text: The whole stored text: the ``Type: message`` line, then the
            traceback when there is one.
        summary: The ``Type: message`` line (also ``str()`` of the error).
    """

    text: str
    summary: str

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text
        self.summary = text.split("\n", 1)[0]

    def __str__(self) -> str:
        return self.summary

    def __repr__(self) -> str:
        return f"StoredError({self.summary!r})"


def error_text(exc: BaseException) -> str:
    """How an exception is stored: its ``Type: message`` line, a blank line, the traceback.

    NUL characters and lone surrogates are escaped (see `storable_text`):
    a message may hold anything, a store cannot.
    """
    kind = type(exc)
    name = kind.__qualname__
    if kind.__module__ not in ("builtins", "__main__"):
        name = f"{kind.__module__}.{name}"
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not lose the error
        message = "<str() of the exception failed>"
    summary = f"{name}: {message}" if message else name
    summary = summary.split("\n", 1)[0]  # the full message is in the traceback
    if exc.__traceback__ is None and exc.__cause__ is None and exc.__context__ is None:
        return storable_text(summary)
    return storable_text(f"{summary}\n\n{''.join(traceback.format_exception(exc)).rstrip()}")


def _conversion_error(exc: TypeError | ValueError, message: str) -> TypeError | ValueError:
    """A `TypeError` or `ValueError`, as *exc* is, saying *message* (caused by *exc*).

    Not ``type(exc)(message)``: some subclasses take other arguments
    (``UnicodeEncodeError`` takes five).
    """
    error = TypeError(message) if isinstance(exc, TypeError) else ValueError(message)
    error.__cause__ = exc
    return error


def _wall_now() -> float:
    # The store is shared across processes and hosts: it needs wall-clock time.
    return time.time()


def default_owner() -> str:
    """A worker process's owner id: ``hostname:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class StoreUnavailable(StoreError):
    """Every store call of a queue's workers has failed for longer than its grace period.

    Raised out of the queue (inside an exception group when the queue runs in
    a nursery) by `open_durable_queue` with a ``store_failure_grace``: a
    store that refuses every write (a read-only file, a lost server) stops
    the workers instead of failing their claims forever. The store's last
    error is its ``__cause__``.
    """


@attrs.frozen
class DurableQueueStatistics:
    """Counters of a `DurableWorkQueue`, from `DurableWorkQueue.statistics`.

    The status counts cover the whole store (every process sharing it);
    the worker counts are this process's.

    Attributes:
        workers: Size of this process's worker pool.
        busy_workers: This process's workers running a task now.
        held: Tasks this process has claimed and not finished: running,
            claimed and about to run, or finished with the outcome not yet
            written (the store counts all of them as ``running``).
        queued: Tasks in the store waiting for a worker.
        scheduled: Delayed tasks in the store.
        running: Tasks running in any process.
        retrying: Tasks waiting out a retry backoff.
        completed: Finished tasks still in the store, per status (older
            ones are purged after the retention time).
        failed: As *completed*.
        cancelled: As *completed*.
        closed: Whether this queue's shutdown has begun.
        owner: This process's owner id in the store.
    """

    workers: int
    busy_workers: int
    held: int
    queued: int
    scheduled: int
    running: int
    retrying: int
    completed: int
    failed: int
    cancelled: int
    closed: bool
    owner: str


class _Attempt:
    """This process's record of a task: for lifecycle events and `current_task`.

    It is a `TaskRecord`, as a `TaskHandle` is, so durable tasks produce the
    same events as in-memory ones. Times are trio times.
    """

    __slots__ = (
        "_created",
        "_due",
        "_errors",
        "_finished",
        "_last_error",
        "_queue",
        "_queued",
        "_started",
        "args",
        "attempts",
        "cancel_requested",
        "definition",
        "id",
        "interrupted",
        "kwargs",
        "lost",
        "max_attempts",
        "name",
        "payload",
        "priority",
        "scope",
        "status",
        "timeout",
    )

    def __init__(
        self,
        queue: DurableWorkQueue,
        task_id: str,
        name: str,
        status: TaskStatus,
        priority: int,
        max_attempts: int,
        timeout: float | None,
        created: float,
    ) -> None:
        self._queue = queue
        self.id = task_id
        self.name = name
        self.status = status
        self.priority = priority
        self.max_attempts = max_attempts
        self.timeout = timeout
        self._created = created
        self._queued = created
        self._due: float | None = None
        self._started: float | None = None
        self._finished: float | None = None
        self._last_error: BaseException | None = None
        self._errors: tuple[BaseException, ...] = ()
        self.attempts = 0
        self.payload = b""
        self.definition: TaskDefinition | None = None
        self.args: Sequence[Any] = ()
        self.kwargs: dict[str, Any] = {}
        self.scope: trio.CancelScope | None = None
        self.cancel_requested = False
        self.interrupted = False  # by shutdown: give the task back, record nothing
        self.lost = False  # the lease is gone: record nothing

    # The `TaskRecord` interface, read by events, hooks and current_task.

    @property
    def queue(self) -> DurableWorkQueue:
        return self._queue

    def snapshot(self) -> TaskSnapshot:
        return new_snapshot(
            TaskSnapshot,
            (
                self.status,
                self.attempts,
                self._last_error,
                self._errors,
                self._due,
                self._queued,
                self._started,
                self._finished,
            ),
        )

    def info_from(self, snapshot: TaskSnapshot) -> TaskInfo:
        return info_from_state(
            self.id,
            self.name,
            self.priority,
            self.max_attempts,
            self.timeout,
            self._created,
            snapshot,
            self._queue._wall_time,
        )

    def info(self) -> TaskInfo:
        return self.info_from(self.snapshot())

    def wall_time(self, trio_time: float) -> datetime:
        return self._queue._wall_time(trio_time)


class _FinishWaiters:
    """Per task id, an event set when this process finishes the task (wakes `wait` early)."""

    def __init__(self) -> None:
        self._events: dict[str, tuple[trio.Event, list[int]]] = {}

    def register(self, task_id: str) -> tuple[trio.Event, list[int]]:
        entry = self._events.get(task_id)
        if entry is None:
            entry = self._events[task_id] = (trio.Event(), [0])
        entry[1][0] += 1
        return entry

    def unregister(self, task_id: str, entry: tuple[trio.Event, list[int]]) -> None:
        entry[1][0] -= 1
        if entry[1][0] == 0 and self._events.get(task_id) is entry:
            del self._events[task_id]

    def finished(self, task_id: str) -> None:
        entry = self._events.pop(task_id, None)
        if entry is not None:
            entry[0].set()


class DurableTaskHandle(Generic[T]):
    """The handle of a task in a durable store: an id and the queue to ask.

    It holds no state of its own: every method reads or changes the store,
    so a handle works in any process and after a restart (get one with
    `DurableWorkQueue.get_handle`). Handles compare equal by queue and id.

    Attributes:
        id: The task's id in the store.
    """

    __slots__ = ("_queue", "id")

    id: str

    def __init__(self, queue: DurableWorkQueue, task_id: str) -> None:
        self._queue = queue
        self.id = task_id

    def __repr__(self) -> str:
        return f"<DurableTaskHandle id={self.id}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DurableTaskHandle):
            return NotImplemented
        return self._queue is other._queue and self.id == other.id

    def __hash__(self) -> int:
        return hash(self.id)

    async def wait(self) -> outcome.Outcome[T]:
        """Wait until the task has finished; return the outcome of its final attempt.

        Always a checkpoint. Polls the store every ``poll_interval`` seconds,
        and wakes at once when this process finishes the task. A failed
        task's outcome holds a `StoredError`; a cancelled one's holds
        `TaskCancelled`; a completed one's holds the deserialized value.

        Raises:
            TaskNotFound: If the store has no task with this id (never
                existed, or purged after its retention time).
        """
        return cast("outcome.Outcome[T]", await self._queue._wait_finished(self.id))

    async def result(self) -> T:
        """Wait until the task has finished and return its (deserialized) value.

        Always a checkpoint.

        Raises:
            StoredError: If the task failed (the stored text of its last error).
            TaskCancelled: If the task was cancelled.
            TaskNotFound: As for `wait`.
        """
        return (await self.wait()).unwrap()

    async def cancel(self) -> bool:
        """Cancel the task; see `DurableWorkQueue.cancel`. Always a checkpoint."""
        return await self._queue.cancel(self.id)

    async def info(self) -> TaskInfo:
        """A `TaskInfo` snapshot read from the store. Always a checkpoint.

        Raises:
            TaskNotFound: As for `wait`.
        """
        return await self._queue.get_info(self.id)


class DurableWorkQueue(EventSource):
    """A work queue whose tasks live in a `Store`, shared by any number of processes.

    Open one with `open_durable_queue` (or ``open_work_queue(store=...)``);
    do not instantiate it directly. Tasks are run at least once: see the
    persistence guide.

    Listeners and event streams (`add_listener`, `subscribe`) see the
    events of this process: submits and schedules made here, and the runs
    of the tasks its workers claim.
    """

    def __init__(
        self,
        *,
        store: Store,
        workers: int,
        retry: RetryPolicy | None,
        lease: float,
        poll_interval: float,
        serializer: Serializer | None,
        retention: float | None,
        shutdown_timeout: float | None,
        store_failure_grace: float | None = None,
    ) -> None:
        self._workers = int(check_count("workers", workers, minimum=0, allow_inf=False))
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy or None, not {type(retry).__name__}")
        self._retry = retry
        self._lease = _check_seconds("lease", lease, allow_zero=False)
        self._poll_interval = _check_seconds("poll_interval", poll_interval, allow_zero=False)
        if serializer is None:
            serializer = JSONSerializer()
        elif not isinstance(serializer, Serializer):
            raise TypeError(f"serializer must have dumps() and loads() methods, got {serializer!r}")
        self._serializer = serializer
        # Encoded once: most tasks take no arguments or return None.
        self._no_arguments = serializer.dumps({"args": []})
        self._none_result = serializer.dumps(None)
        self._retention = None if retention is None else _check_seconds("retention", retention)
        self._shutdown_timeout = (
            None
            if shutdown_timeout is None
            else _check_seconds("shutdown_timeout", shutdown_timeout)
        )
        self._store_failure_grace = (
            math.inf
            if store_failure_grace is None
            else _check_seconds("store_failure_grace", store_failure_grace)
        )
        # Trio time of the first failed store call since the last one that worked.
        self._store_failing_since: float | None = None
        self._store = store
        self._owner = default_owner()

        # Claimed by this process and not yet finished, by id; _ready holds those
        # waiting for a worker.
        self._held: dict[str, _Attempt] = {}
        self._ready: deque[_Attempt] = deque()
        self._idle: Waiters[None] = Waiters()
        self._busy = 0
        self._worker_idle = trio.Event()  # a worker parked: the fetcher may claim
        self._work_hint = trio.Event()  # new work may be due: the fetcher should claim
        self._finish_waiters = _FinishWaiters()
        # Attempts that returned, with their serialized results, for the recorder.
        self._completed: list[tuple[_Attempt, bytes]] = []
        self._completed_added = trio.Event()
        self._closing = False
        self._closing_event = trio.Event()
        self._drained = trio.Event()  # closing, and nothing is held any more
        self._shutdown_deadline = math.inf
        self._grace_scope: trio.CancelScope | None = None
        self._started = False
        self._stopped = trio.Event()
        self._crashed = False
        self._init_events()
        self._clock = trio.lowlevel.current_clock()
        # trio time -> wall clock, fixed once (as in WorkQueue).
        self._wall_offset = _wall_now() - self._clock.current_time()

    def __repr__(self) -> str:
        return f"<DurableWorkQueue store={self._store.url!r} owner={self._owner!r}>"

    @property
    def store(self) -> Store:
        """The store this queue reads and writes."""
        return self._store

    @property
    def owner(self) -> str:
        """This process's owner id (``hostname:pid:random``), as the store records it."""
        return self._owner

    # ------------------------------------------------------------------ intake

    async def submit(
        self,
        fn: Callable[[Unpack[Ts]], Awaitable[T]],
        *args: Unpack[Ts],
        name: str | None = None,
        priority: int = 0,
        timeout: float | None = None,  # noqa: ASYNC109 - per task, from its start
    ) -> DurableTaskHandle[T]:
        """Store ``await fn(*args)`` as a new task and return its handle once committed.

        Always a checkpoint. *fn* must be registered with `trio_workq.task`
        (or be a `functools.partial` of one, for keyword arguments); the
        arguments are serialized now, so a bad argument is reported here and
        nothing is stored. The task's retry policy is its registration's, or
        the queue's default. There is no ``submit_nowait``: the task exists
        only once the store has committed it, which has to be awaited.

        If the caller is cancelled while the store commits, the task may or
        may not have been stored.

        Args:
            fn: A registered task function.
            *args: Its positional arguments.
            name: Which of *fn*'s registered names to store it under
                (default: its first).
            priority: Higher runs first, across every process.
            timeout: Seconds one attempt may run (counted from its start);
                an overrun cancels it and records `TaskTimeout`.

        Raises:
            TypeError: If *fn* is not a registered task (a lambda, a closure,
                an unregistered function), or an argument cannot be
                serialized; also for bad option types.
            ValueError: For bad option values or unserializable values
                (e.g. NaN in JSON).
            QueueClosed: If the queue is shutting down.
            StoreError: If the store cannot be used.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        new = self._new_task(fn, args, name, priority, timeout, None)
        return await self._add(new)

    async def submit_many(
        self,
        fn: Callable[[Unpack[Ts]], Awaitable[T]],
        calls: Iterable[tuple[Unpack[Ts]]],
        *,
        name: str | None = None,
        priority: int = 0,
        timeout: float | None = None,  # noqa: ASYNC109 - per task, from its start
    ) -> list[DurableTaskHandle[T]]:
        """Store one task per argument tuple in *calls*, all in one transaction.

        ``submit_many(fn, [(1,), (2,)])`` is ``submit(fn, 1)`` and
        ``submit(fn, 2)`` with one commit instead of two: much faster for
        many tasks. Every call is checked and serialized first; if one is
        bad, nothing is stored. Always a checkpoint.

        Returns:
            The handles, in the order of *calls*.

        Raises:
            TypeError, ValueError, QueueClosed, StoreError: As for `submit`.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        tasks = [self._new_task(fn, tuple(args), name, priority, timeout, None) for args in calls]
        if not tasks:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return []
        return await self._add_all(tasks)

    async def schedule(
        self,
        fn: Callable[[Unpack[Ts]], Awaitable[T]],
        *args: Unpack[Ts],
        delay: float | None = None,
        at: datetime | None = None,
        name: str | None = None,
        priority: int = 0,
        timeout: float | None = None,  # noqa: ASYNC109 - per task, from its start
    ) -> DurableTaskHandle[T]:
        """Store ``await fn(*args)`` to run after *delay* seconds, or at the instant *at*.

        Like `submit`, but the task is ``scheduled`` until it is due. A
        scheduled task survives restarts; any process sharing the store may
        run it. Exactly one of *delay* and *at* must be given; an *at* in
        the past means now. Always a checkpoint.

        Raises:
            TypeError, ValueError, QueueClosed, StoreError: As for `submit`.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if at is None:
            if delay is None:
                raise TypeError("schedule() takes exactly one of delay= and at=")
            due = _wall_now() + _check_seconds("delay", delay)
        else:
            if delay is not None:
                raise TypeError("schedule() takes exactly one of delay= and at=")
            due = check_aware(at).timestamp()
        new = self._new_task(fn, args, name, priority, timeout, due)
        return await self._add(new)

    def _new_task(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        name: str | None,
        priority: int,
        timeout: float | None,
        due: float | None,
    ) -> NewTask:
        """Validate and serialize a submit; raise before anything is stored."""
        if self._closing:
            raise _closed_error()
        kwargs: dict[str, Any] = {}
        if isinstance(fn, functools.partial):
            partial = cast("functools.partial[Awaitable[Any]]", fn)
            args = (*partial.args, *args)
            kwargs = dict(partial.keywords)
            fn = partial.func
        check_name(name)
        definition = definition_for(fn, name)
        check_priority(priority)
        timeout = check_timeout(timeout)
        payload = self._dump_arguments(definition.name, args, kwargs)
        policy = policy_for(definition, self._retry)
        return NewTask(
            name=definition.name,
            payload=payload,
            priority=priority,
            due_at=_wall_now() if due is None else due,
            max_attempts=1 if policy is None else policy.max_attempts,
            timeout=timeout,
            status=QUEUED if due is None else SCHEDULED,
        )

    def _dump_arguments(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        if not args and not kwargs:
            return self._no_arguments
        call: dict[str, Any] = {"args": list(args)}
        if kwargs:
            call["kwargs"] = kwargs
        try:
            return self._serializer.dumps(call)
        except (TypeError, ValueError) as exc:
            raise _conversion_error(
                exc,
                f"the arguments of task {name!r} cannot be serialized by "
                f"{self._serializer!r}: {exc}",
            ) from exc

    async def _add(self, new: NewTask) -> DurableTaskHandle[Any]:
        (handle,) = await self._add_all([new])
        return handle

    async def _add_all(self, tasks: list[NewTask]) -> list[DurableTaskHandle[Any]]:
        ids = await self._store.add(tasks)
        if self._hooks:
            now = self._clock.current_time()
            for task_id, new in zip(ids, tasks, strict=True):
                record = _Attempt(
                    self,
                    task_id,
                    new.name,
                    new.status,
                    new.priority,
                    new.max_attempts,
                    new.timeout,
                    now,
                )
                kind = EventKind.SUBMITTED
                if new.status is SCHEDULED:
                    kind = EventKind.SCHEDULED
                    record._due = now + max(new.due_at - _wall_now(), 0.0)
                self._emit(record, kind, was_running=False)
        self._work_hint.set()
        return [DurableTaskHandle(self, task_id) for task_id in ids]

    # ----------------------------------------------------------- lookups & acts

    def get_handle(self, task_id: str) -> DurableTaskHandle[Any]:
        """A handle for the task with this id. Not a checkpoint; does no I/O.

        The id is not checked here: the handle's methods raise `TaskNotFound`
        for an unknown id.
        """
        if not isinstance(task_id, str):
            raise TypeError(f"task_id must be a str, not {type(task_id).__name__}")
        return DurableTaskHandle(self, task_id)

    async def get_info(self, task_id: str) -> TaskInfo:
        """A `TaskInfo` snapshot of the task, read from the store. Always a checkpoint.

        Errors are `StoredError` instances (the stored text).

        Raises:
            TaskNotFound: If the store has no task with this id.
        """
        return self._info_of_row(await self._get(task_id))

    async def cancel(self, task_id: str) -> bool:
        """Cancel the task with this id, wherever it is. Always a checkpoint.

        A queued, scheduled or retrying task ends ``cancelled`` in the store
        at once. A running one is asked to stop: if it runs in this process
        it is cancelled now, otherwise its process cancels it within about a
        second (at its next lease renewal); it ends ``cancelled`` unless it
        finishes first.

        Returns:
            ``True`` if the task had not finished, ``False`` if it had (and
            nothing changed).

        Raises:
            TaskNotFound: If the store has no task with this id.
        """
        if not isinstance(task_id, str):
            raise TypeError(f"task_id must be a str, not {type(task_id).__name__}")
        status = await self._store.cancel(task_id)
        if status is None:
            raise _not_found(task_id)
        if status is RUNNING:
            attempt = self._held.get(task_id)
            if attempt is not None:
                self._request_cancel(attempt)
        elif not status.is_terminal:
            self._finish_waiters.finished(task_id)
            if self._hooks:
                row = await self._store.get(task_id)
                if row is not None:
                    record = self._record_of_row(row)
                    record._finished = self._clock.current_time()
                    self._emit(record, EventKind.CANCELLED, was_running=False)
        return not status.is_terminal

    async def retry(self, task_id: str) -> DurableTaskHandle[Any]:
        """Run a ``failed`` or ``cancelled`` task again, as one more attempt, due now.

        Always a checkpoint. Any process sharing the store may run it.

        Raises:
            TaskNotFound: If the store has no task with this id.
            TaskStateError: If the task is not ``failed`` or ``cancelled``.
        """
        if not isinstance(task_id, str):
            raise TypeError(f"task_id must be a str, not {type(task_id).__name__}")
        status = await self._store.requeue(task_id)
        if status is None:
            raise _not_found(task_id)
        if status is not FAILED and status is not CANCELLED:
            raise TaskStateError(
                f"task {task_id} is {status}; only failed or cancelled tasks can be retried"
            )
        self._work_hint.set()
        return DurableTaskHandle(self, task_id)

    async def list_tasks(
        self,
        *,
        status: TaskStatus | str | None = None,
        name: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> TaskPage:
        """A page of task snapshots from the store, newest first. Always a checkpoint.

        Args:
            status: Only tasks in this status (a `TaskStatus` or its value).
            name: Only tasks with this registered name.
            limit: Page size, 1 to 1000.
            cursor: `TaskPage.next_cursor` of the previous page.

        Raises:
            ValueError: For an unknown status, a bad limit, or a bad cursor.
            TypeError: For arguments of the wrong type.
        """
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"limit must be an int, not {type(limit).__name__}")
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}, got {limit}")
        status = _check_status(status)
        check_name(name)
        if cursor is not None and not isinstance(cursor, str):
            raise TypeError(f"cursor must be a str or None, not {type(cursor).__name__}")
        page = await self._store.page(status=status, name=name, limit=limit, cursor=cursor)
        return TaskPage(tuple(self._info_of_row(row) for row in page.tasks), page.next_cursor)

    async def statistics(self) -> DurableQueueStatistics:
        """Counts per status across the store, and this process's workers. Always a checkpoint."""
        counts = await self._store.counts()
        return DurableQueueStatistics(
            workers=self._workers,
            busy_workers=self._busy,
            held=len(self._held),
            queued=counts.get(QUEUED, 0),
            scheduled=counts.get(SCHEDULED, 0),
            running=counts.get(RUNNING, 0),
            retrying=counts.get(RETRYING, 0),
            completed=counts.get(COMPLETED, 0),
            failed=counts.get(FAILED, 0),
            cancelled=counts.get(CANCELLED, 0),
            closed=self._closing,
            owner=self._owner,
        )

    async def _get(self, task_id: str) -> StoredTask:
        if not isinstance(task_id, str):
            raise TypeError(f"task_id must be a str, not {type(task_id).__name__}")
        row = await self._store.get(task_id)
        if row is None:
            raise _not_found(task_id)
        return row

    async def _wait_finished(self, task_id: str) -> outcome.Outcome[Any]:
        entry = self._finish_waiters.register(task_id)
        try:
            while True:
                row = await self._get(task_id)
                if row.status.is_terminal:
                    return self._outcome_of_row(row)
                with trio.move_on_after(self._poll_interval):
                    await entry[0].wait()
                if entry[0].is_set():
                    self._finish_waiters.unregister(task_id, entry)
                    entry = self._finish_waiters.register(task_id)
        finally:
            self._finish_waiters.unregister(task_id, entry)

    def _outcome_of_row(self, row: StoredTask) -> outcome.Outcome[Any]:
        if row.status is COMPLETED:
            try:
                value = None if row.result is None else self._serializer.loads(row.result)
            except Exception as exc:  # a corrupt row: the caller's error, not a crash
                text = f"the stored result of task {row.id} cannot be decoded: {exc!r}"
                return outcome.Error(StoredError(storable_text(text)))
            return outcome.Value(value)
        if row.status is FAILED:
            text = row.errors[-1] if row.errors else "the task failed (no error was recorded)"
            return outcome.Error(StoredError(text))
        return outcome.Error(TaskCancelled(f"task {row.id} ({row.name}) was cancelled"))

    def _info_of_row(self, row: StoredTask) -> TaskInfo:
        wall = _wall_datetime
        errors = tuple(StoredError(text) for text in row.errors[-MAX_ERROR_HISTORY:])
        status = row.status
        waiting = status is SCHEDULED or status is RETRYING
        queued_at = None
        if status is not SCHEDULED:
            queued_at = wall(row.due_at if row.due_at is not None else row.created_at)
        return TaskInfo(
            id=row.id,
            name=row.name,
            status=status,
            priority=row.priority,
            attempts=row.attempts,
            max_attempts=row.max_attempts,
            timeout=row.timeout,
            last_error=errors[-1] if errors else None,
            errors=errors,
            created_at=wall(row.created_at),
            due_at=wall(row.due_at) if waiting and row.due_at is not None else None,
            queued_at=queued_at,
            started_at=None if row.started_at is None else wall(row.started_at),
            finished_at=None if row.finished_at is None else wall(row.finished_at),
        )

    def _record_of_row(self, row: StoredTask) -> _Attempt:
        offset = self._wall_offset
        record = _Attempt(
            self,
            row.id,
            row.name,
            row.status,
            row.priority,
            row.max_attempts,
            row.timeout,
            row.created_at - offset,
        )
        record.attempts = row.attempts
        record.payload = row.payload
        record._queued = (row.due_at if row.due_at is not None else row.created_at) - offset
        if row.errors:
            record._errors = tuple(StoredError(text) for text in row.errors[-MAX_ERROR_HISTORY:])
            record._last_error = record._errors[-1]
        return record

    def _wall_time(self, trio_time: float) -> datetime:
        return datetime.fromtimestamp(self._wall_offset + trio_time, timezone.utc)

    # ---------------------------------------------------------------- events

    def _emit(self, record: _Attempt, kind: EventKind, *, was_running: bool) -> None:
        self._call_hooks(kind, record, self._clock.current_time(), was_running)

    def _set_status(self, attempt: _Attempt, status: TaskStatus) -> None:
        old = attempt.status
        attempt.status = status
        if self._hooks:
            kind = EVENT_FOR_STATUS.get(status)
            if kind is not None:
                self._emit(attempt, kind, was_running=old is RUNNING)

    # -------------------------------------------------------------- the pool

    async def _fetcher(self) -> None:  # noqa: ASYNC910 - private; runs until closing
        """Claim due tasks for idle workers: one store round trip per batch."""
        store = self._store
        while not self._closing:
            if not self._idle:
                self._worker_idle = trio.Event()
                await self._worker_idle.wait()
                # Workers finishing in the same batch park too: claim for all of them at once.
                await trio.lowlevel.checkpoint()
                continue
            self._work_hint = trio.Event()  # a hint from now on means "claim again"
            limit = len(self._idle)
            try:
                claimed = await store.claim(self._owner, limit, self._lease)
            except StoreError as exc:
                self._store_failed(exc)
                logger.warning(
                    "claiming tasks failed (%s); retrying in %.3g s", exc, self._poll_interval
                )
                await trio.sleep(self._poll_interval)
                continue
            self._store_failing_since = None
            attempts = [self._hold(row) for row in claimed.tasks]
            if self._closing:
                # Shutdown began during the claim: give these back (the supervisor
                # has already released what was claimed before).
                await self._release_all(attempts)
                return
            for attempt in attempts:
                self._ready.append(attempt)
                if self._idle:
                    self._idle.wake_first()
            if len(claimed.tasks) < limit:
                # Nothing more is due: sleep until the next due time, a hint, or the poll.
                deadline = math.inf
                if claimed.next_due is not None:
                    wait = max(claimed.next_due - _wall_now(), 0.0)
                    deadline = self._clock.current_time() + wait
                with trio.move_on_at(deadline):
                    await self._work_hint.wait()

    def _hold(self, row: StoredTask) -> _Attempt:
        attempt = self._record_of_row(row)
        attempt.status = QUEUED  # claimed, not started: RUNNING is set (and announced) at start
        self._held[row.id] = attempt
        return attempt

    async def _release_all(self, attempts: Sequence[_Attempt]) -> None:  # noqa: ASYNC910
        """Give back claimed tasks that will not run here (concurrently: the store batches)."""
        if attempts:
            async with trio.open_nursery() as nursery:
                for attempt in attempts:
                    attempt.interrupted = True
                    nursery.start_soon(self._release, attempt)

    async def _listen(self) -> None:  # noqa: ASYNC910 - private; runs until cancelled
        """Relay the store's hints of new work to the fetcher (the poll backstop included)."""
        while True:
            try:
                await self._store.wait_for_work(self._poll_interval)
            except StoreError as exc:
                logger.warning("waiting for work failed (%s)", exc)
                await trio.sleep(self._poll_interval)
            self._work_hint.set()

    def _next_attempt(self) -> _Attempt | None:
        """A claimed attempt for a free worker, or None (none ready, or shutting down)."""
        ready = self._ready
        while ready and not self._closing:
            attempt = ready.popleft()
            if not attempt.lost:
                return attempt
        return None

    async def _worker(self) -> None:  # noqa: ASYNC910 - private; runs until cancelled
        """Run claimed attempts, each in the worker's cancel scope, and record their outcomes.

        One cancel scope serves many attempts (a fresh scope per task is
        slow); it is replaced once a cancellation or a timeout has used it.
        The outcome is written while the scope is entered but no longer
        reachable: ``attempt.scope`` is cleared and the deadline reset first.
        """
        attempt: _Attempt | None = None
        try:
            while True:
                scope = trio.CancelScope()
                raced: tuple[_Attempt, Any, Exception | None] | None = None
                # Errors raised next to the Cancelled that stopped the task (its cleanup failed).
                cleanup_errors: Exception | None = None
                with scope:
                    while True:
                        attempt = self._next_attempt()
                        if attempt is None:
                            self._worker_idle.set()
                            await self._idle.wait(None)
                            continue
                        started = self._clock.current_time()
                        call = self._prepare(attempt, started)
                        if call is None:  # cancelled before it started, or cannot run
                            await self._finish_unrunnable(attempt)
                            attempt = None
                            continue
                        self._busy += 1
                        timeout = attempt.timeout
                        if timeout is not None:
                            scope.deadline = started + timeout
                        attempt.scope = scope
                        set_current(attempt)
                        self._set_status(attempt, RUNNING)
                        value: Any = None
                        error: Exception | None = None
                        try:
                            value = await call()
                        except Exception as exc:
                            error = exc
                        except BaseExceptionGroup as group:
                            # Cancelled beside the task's own errors (a child's finally):
                            # only the Cancelled goes on, and this scope catches it if it
                            # is its own (timeout, cancel, lost lease, shutdown): the task
                            # ends below. KeyboardInterrupt & co. go on as they are.
                            to_raise, cleanup_errors = split_attempt_error(group)
                            if to_raise is None or cleanup_errors is None:
                                raise
                            raise to_raise from None
                        attempt.scope = None
                        if timeout is not None:
                            scope.deadline = math.inf
                        self._busy -= 1
                        if scope.cancel_called:
                            # A cancellation raced the task's end: write outside this scope.
                            raced = (attempt, value, error)
                            break
                        await self._finish(attempt, value, error)
                        attempt = None
                if raced is not None:
                    await self._finish(*raced)
                elif attempt is not None:
                    # The scope caught the Cancelled: lost lease, cancel, shutdown or timeout.
                    attempt.scope = None
                    self._busy -= 1
                    await self._finish_cancelled(attempt, cleanup_errors)
                attempt = None
        except BaseException:
            # Cancelled from outside (the enclosing nursery) or KeyboardInterrupt & co:
            # give the running task back to the store, so that another worker runs it soon.
            if attempt is not None and self._held.get(attempt.id) is attempt:
                if attempt.scope is not None:
                    attempt.scope = None
                    self._busy -= 1
                with trio.CancelScope(shield=True, deadline=trio.current_time() + CLEANUP_TIMEOUT):
                    await self._release(attempt)
            raise

    def _prepare(self, attempt: _Attempt, started: float) -> Callable[[], Awaitable[Any]] | None:
        """Start *attempt*: its function and arguments, or None if it must not run."""
        attempt._started = started
        attempt._due = None
        if attempt.cancel_requested:
            return None
        definition = lookup(attempt.name)
        try:
            if definition is None:
                raise LookupError(
                    f"no task named {attempt.name!r} is registered in this process "
                    "(import the module that defines it in every worker)"
                )
            attempt.definition = definition
            return self._load_call(definition, attempt.payload)
        except Exception as exc:
            attempt._last_error = exc
            return None

    async def _finish_unrunnable(self, attempt: _Attempt) -> None:
        if attempt.cancel_requested:
            await self._record_cancelled(attempt)
        else:
            # Nothing to run (unknown name, bad arguments): retrying cannot help.
            assert attempt._last_error is not None
            self._set_status(attempt, RUNNING)
            error = cast("Exception", attempt._last_error)
            await self._record_failure(attempt, error, Ending.UNRETRYABLE)

    async def _finish(  # noqa: ASYNC910 - private; a lost attempt records nothing
        self, attempt: _Attempt, value: Any, error: Exception | None
    ) -> None:
        """Record how an attempt that ran to its end (value or exception) ended."""
        if attempt.lost:
            self._unhold(attempt)
        elif error is not None:
            if attempt.interrupted and not attempt.cancel_requested:
                await self._release(attempt)  # it failed because shutdown interrupted it
            else:
                # A task that fails while being cancelled is not retried: it ends
                # failed with its error, as in the in-memory queue.
                ending = (
                    Ending.RAISED_WHILE_CANCELLED if attempt.cancel_requested else Ending.RAISED
                )
                await self._record_failure(attempt, error, ending)
        else:
            await self._record_success(attempt, value)

    async def _finish_cancelled(  # noqa: ASYNC910 - private
        self, attempt: _Attempt, cleanup_errors: Exception | None = None
    ) -> None:
        """Record an attempt whose cancel scope caught the Cancelled.

        *cleanup_errors* are errors the task raised while being cancelled:
        they become the context of its `TaskTimeout`.
        """
        if attempt.lost:
            self._unhold(attempt)
        elif attempt.cancel_requested:
            await self._record_cancelled(attempt)
        elif attempt.interrupted:
            await self._release(attempt)
        else:
            timeout = TaskTimeout(f"task timed out after {attempt.timeout}s")
            timeout.__context__ = cleanup_errors
            await self._record_failure(attempt, timeout, Ending.RAISED)

    def _load_call(
        self, definition: TaskDefinition, payload: bytes
    ) -> Callable[[], Awaitable[Any]]:
        if payload == self._no_arguments:
            return definition.fn
        try:
            loaded: object = self._serializer.loads(payload)
        except Exception as exc:  # damaged or foreign bytes: this task fails, not the worker
            raise ValueError(
                f"the stored arguments cannot be decoded by {self._serializer!r}: {exc!r}"
            ) from exc
        if not isinstance(loaded, dict):
            raise ValueError("the stored arguments are not in trio_workq's format")
        call = cast("dict[str, object]", loaded)
        stored_args, stored_kwargs = call.get("args"), call.get("kwargs", {})
        if not isinstance(stored_args, list) or not isinstance(stored_kwargs, dict):
            raise ValueError("the stored arguments are not in trio_workq's format")
        args = tuple(cast("Iterable[Any]", stored_args))
        kwargs = cast("dict[str, Any]", stored_kwargs)
        return functools.partial(definition.fn, *args, **kwargs)

    # ------------------------------------------------------- recording outcomes

    async def _record_success(self, attempt: _Attempt, value: object) -> None:  # noqa: ASYNC910
        try:
            result = self._none_result if value is None else self._serializer.dumps(value)
            if not isinstance(result, bytes):  # one bad result must not fail a whole batch
                raise TypeError(f"dumps() returned {type(result).__name__}, not bytes")
        except (TypeError, ValueError) as exc:
            error = _conversion_error(
                exc,
                f"the result of task {attempt.name!r} cannot be serialized by "
                f"{self._serializer!r}: {exc}",
            )
            await self._record_failure(attempt, error, Ending.UNRETRYABLE)
            return
        # The recorder writes it, batched with others, while this worker goes on.
        self._completed.append((attempt, result))
        self._completed_added.set()

    async def _record_failure(self, attempt: _Attempt, exc: Exception, ending: Ending) -> None:
        """Record a failed attempt as `decide` says; the store applies it (cancel wins).

        *ending* is `Ending.RAISED`, `Ending.RAISED_WHILE_CANCELLED` or
        `Ending.UNRETRYABLE`.
        """
        attempt._last_error = exc
        attempt._errors = (*attempt._errors, exc)[-MAX_ERROR_HISTORY:]
        now = _wall_now()
        status, error, retry_at = decide(
            ending,
            exc,
            attempts=attempt.attempts,
            max_attempts=attempt.max_attempts,  # the stored bound wins
            policy=policy_for(attempt.definition, self._retry),
            now=now,
        )
        if error is not exc:  # a broken backoff or retry_if failed the task
            assert error is not None
            attempt._last_error = error
            attempt._errors = (*attempt._errors[:-1], error)
        assert status is FAILED or status is RETRYING
        written = await self._write(
            self._store.fail, attempt, error_text(attempt._last_error), retry_at
        )
        if written is None:
            return
        if written is RETRYING:
            assert retry_at is not None
            logger.info(
                "task %s (%s) attempt %d failed (%r); retrying in %.3g s",
                attempt.id,
                attempt.name,
                attempt.attempts,
                exc,
                retry_at - now,
            )
            attempt._due = self._clock.current_time() + max(retry_at - _wall_now(), 0.0)
            self._set_status(attempt, RETRYING)
            return
        if written is FAILED:
            logger.warning(
                "task %s (%s) failed after %d attempt(s)",
                attempt.id,
                attempt.name,
                attempt.attempts,
                exc_info=attempt._last_error,
            )
        # (CANCELLED: its cancellation, requested elsewhere, won over the retry.)
        attempt._finished = self._clock.current_time()
        self._set_status(attempt, written)
        self._finish_waiters.finished(attempt.id)

    async def _record_cancelled(self, attempt: _Attempt) -> None:
        if await self._write(self._store.finish_cancelled, attempt):
            attempt._finished = self._clock.current_time()
            self._set_status(attempt, CANCELLED)
            self._finish_waiters.finished(attempt.id)

    async def _release(self, attempt: _Attempt) -> None:
        """Give back an attempt shutdown interrupted (`Ending.INTERRUPTED`)."""
        if await self._write(self._store.release, attempt) is CANCELLED:
            # Its cancellation, requested elsewhere, won: the store ended it cancelled.
            attempt._finished = self._clock.current_time()
            self._set_status(attempt, CANCELLED)
            self._finish_waiters.finished(attempt.id)

    async def _recorder(self) -> None:  # noqa: ASYNC910 - private; runs until cancelled
        """Write the outcomes of attempts that returned: all waiting ones in one store call."""
        batch: list[tuple[_Attempt, bytes]] = []
        try:
            while True:
                if not self._completed:
                    self._completed_added = trio.Event()
                    await self._completed_added.wait()
                batch, self._completed = self._completed, []
                await self._record_completions(batch)
                batch = []
        except BaseException:
            # Cancelled from outside: _run_queue writes what is waiting once every
            # worker has stopped (a shielded task may still return after this).
            self._completed[:0] = batch
            raise

    async def _record_completions(self, batch: list[tuple[_Attempt, bytes]]) -> None:
        items = [(attempt.id, attempt.attempts, result) for attempt, result in batch]
        try:
            recorded = await self._retrying_write(
                functools.partial(self._store.complete_many, self._owner, items),
                [attempt for attempt, _ in batch],
            )
        except StoreDataError as exc:
            # Some result cannot be stored (too big, say): each alone, so that only its task fails.
            if len(batch) > 1:
                for one in batch:
                    await self._record_completions([one])
                return  # noqa: ASYNC910 - private; the write above checkpointed
            attempt = batch[0][0]
            error = StoreDataError(f"the result of task {attempt.name!r} cannot be stored: {exc}")
            await self._record_failure(attempt, error, Ending.UNRETRYABLE)
            return
        for attempt, _ in batch:
            self._unhold(attempt)
        if recorded is None:
            return
        now = self._clock.current_time()
        refused: list[_Attempt] = []
        for (attempt, _), done in zip(batch, recorded, strict=True):
            if done:
                attempt._finished = now
                self._set_status(attempt, COMPLETED)
                self._finish_waiters.finished(attempt.id)
            else:
                refused.append(attempt)
        for attempt in refused:
            if await self._completed_by(attempt):
                # An earlier try committed, but its answer was lost (a dropped connection).
                attempt._finished = self._clock.current_time()
                self._set_status(attempt, COMPLETED)
                self._finish_waiters.finished(attempt.id)
            else:
                _log_lease_lost(attempt)

    async def _completed_by(self, attempt: _Attempt) -> bool:
        """Whether the store holds *attempt*'s own completion (rare: after a refused write)."""
        try:
            row = await self._store.get(attempt.id)
        except StoreError:
            return False  # noqa: ASYNC910 - the failed call was the checkpoint
        # Only this attempt can have completed the task at this attempt number: a later
        # run needs a later claim, and a claim counts an attempt (a release, which gives
        # an attempt number back, is written instead of this attempt's result, never with it).
        return row is not None and row.status is COMPLETED and row.attempts == attempt.attempts

    async def _write(
        self, method: Callable[..., Awaitable[W]], attempt: _Attempt, *extra: Any
    ) -> W | None:
        """Write an attempt's outcome; what the store returned, or None if it failed.

        A falsy answer means the lease was no longer ours (nothing recorded).
        Cancelled before the store ran the write, the attempt stays held: whoever
        unwinds (the worker, or the queue's last cleanup) gives it back then.
        """
        owner, task_id, number = self._owner, attempt.id, attempt.attempts

        async def write() -> tuple[W]:
            # Boxed: a store's None ("not held") is not _retrying_write's ("gave up").
            return (await method(owner, task_id, number, *extra),)

        try:
            boxed = await self._retrying_write(write, [attempt])
        except StoreDataError as exc:
            boxed = await self._after_data_error(method, attempt, extra, exc)
        self._unhold(attempt)
        if boxed is None:
            return None  # the store kept failing (logged): its lease expires
        if not boxed[0]:
            _log_lease_lost(attempt)
            return None
        return boxed[0]

    async def _after_data_error(
        self,
        method: Callable[..., Awaitable[W]],
        attempt: _Attempt,
        extra: tuple[Any, ...],
        exc: StoreDataError,
    ) -> tuple[W] | None:
        """After the store refused an outcome's data: fail the task with a text it holds.

        Only an error text can be refused (the other writes carry no data);
        None if even the replacement is refused (the lease then expires).
        """
        logger.error(
            "task %s (%s): the store refused its outcome: %s", attempt.id, attempt.name, exc
        )
        if method != self._store.fail:
            return None  # noqa: ASYNC910 - private; the write above checkpointed
        text = f"trio_workq.StoreDataError: the store refused this attempt's error: {exc}"
        owner, task_id, number = self._owner, attempt.id, attempt.attempts

        async def write() -> tuple[W]:
            replaced = await self._store.fail(
                owner,
                task_id,
                number,
                ascii(text)[1:-1],  # plain ASCII, whatever the store's message held
                extra[1],
            )
            return (cast("W", replaced),)

        try:
            return await self._retrying_write(write, [attempt])
        except StoreDataError:
            return None  # noqa: ASYNC910 - private; the write above checkpointed

    async def _retrying_write(
        self, write: Callable[[], Awaitable[R]], attempts: Sequence[_Attempt]
    ) -> R | None:
        """``await write()``, retried while the store fails; None once retrying is pointless.

        A failing store is retried until the lease would have expired: past
        that the reaper re-queues the *attempts* anyway. A `StoreDataError`
        is raised at once: the same data fails the same way every time.
        """
        give_up = self._clock.current_time() + self._lease
        delay = 0.05
        while True:
            try:
                result = await write()
            except StoreDataError:
                self._store_failing_since = None  # the store answered: it works
                raise
            except StoreError as exc:
                # Counted, but never raised from here: this runs in cleanup too, where
                # StoreUnavailable would cut the cleanup short.
                self._store_failed(exc, stop=False)
                if self._clock.current_time() + delay >= give_up:
                    for attempt in attempts:
                        logger.error(
                            "task %s (%s): could not record its outcome (%s); the store "
                            "re-queues it when its lease expires",
                            attempt.id,
                            attempt.name,
                            exc,
                        )
                    return None  # noqa: ASYNC910 - the failed call was the checkpoint
                logger.warning(
                    "store write for task(s) %s failed (%s); retrying",
                    ", ".join(attempt.id for attempt in attempts),
                    exc,
                )
                await trio.sleep(delay)
                delay = min(delay * 2, 1.0)
            else:
                self._store_failing_since = None
                return result

    def _store_failed(self, exc: StoreError, *, stop: bool = True) -> None:
        """Count a failed store call of the workers; past the grace period, stop the queue.

        Any call that works (`_store_failing_since` cleared) starts the count again.
        The upkeep loops (claims, renewals, maintenance), which keep calling the
        store, raise; outcome writes only count (*stop* false).

        Raises:
            StoreUnavailable: Every such call has failed for `_store_failure_grace`.
        """
        now = self._clock.current_time()
        if self._store_failing_since is None:
            self._store_failing_since = now
        elif stop and now - self._store_failing_since >= self._store_failure_grace:
            raise StoreUnavailable(
                f"every store operation has failed for {now - self._store_failing_since:.3g} s, "
                f"past the store failure grace of {self._store_failure_grace:g} s; "
                f"last error: {exc}"
            ) from exc

    def _unhold(self, attempt: _Attempt) -> None:
        # Only this attempt: a newer attempt of the same task may be held here by now
        # (its lease expired while this one's outcome waited, and this process re-claimed it).
        if self._held.get(attempt.id) is attempt:
            del self._held[attempt.id]
            if self._closing and not self._held:
                self._drained.set()

    def _request_cancel(self, attempt: _Attempt) -> None:
        attempt.cancel_requested = True
        if attempt.scope is not None:
            attempt.scope.cancel()

    # ------------------------------------------------------- leases & upkeep

    async def _heartbeat(self) -> None:  # noqa: ASYNC910 - private; runs until cancelled
        """Renew the leases of held tasks; stop those lost or asked to cancel."""
        interval = min(self._lease / 3, MAX_RENEW_INTERVAL)
        while True:
            await trio.sleep(interval)
            if not self._held:
                continue
            ids = list(self._held)
            try:
                renewal = await self._store.renew(self._owner, ids, self._lease)
            except StoreError as exc:
                self._store_failed(exc)
                logger.warning("renewing leases failed (%s); retrying", exc)
                continue
            self._store_failing_since = None
            for task_id in renewal.lost:
                attempt = self._held.get(task_id)
                # An attempt whose outcome is being written is not stopped: the
                # write is conditional anyway (and may have just committed).
                if attempt is None or (attempt.scope is None and attempt._started is not None):
                    continue
                logger.warning(
                    "task %s (%s): this process lost its lease (the store re-queued it); "
                    "stopping it here",
                    task_id,
                    attempt.name,
                )
                attempt.lost = True
                if attempt.scope is not None:
                    attempt.scope.cancel()
                else:
                    self._unhold(attempt)  # never started: a worker will skip it
            for task_id in renewal.cancel_requested:
                attempt = self._held.get(task_id)
                if attempt is not None and not attempt.cancel_requested:
                    self._request_cancel(attempt)

    async def _reaper(self) -> None:  # noqa: ASYNC910 - private; runs until cancelled
        """Re-queue tasks whose worker died, and purge finished tasks past their retention."""
        next_purge = self._clock.current_time()
        while True:
            try:
                if await self._recover_expired():
                    self._work_hint.set()
                if self._retention is not None and self._clock.current_time() >= next_purge:
                    next_purge = self._clock.current_time() + PURGE_INTERVAL
                    await self._store.purge_finished(_wall_now() - self._retention)
            except StoreError as exc:
                self._store_failed(exc)
                logger.warning("store maintenance failed (%s); retrying", exc)
            else:
                self._store_failing_since = None
            await trio.sleep(self._lease / 2)

    async def _recover_expired(self) -> int:
        """Recover tasks whose worker died: each as `decide` says, applied by the store.

        A lost attempt counts and goes through its task's retry policy,
        backoff included (the registry's definition for its name, else this
        queue's default; the stored ``max_attempts`` wins). Returns how many
        rows the store changed.
        """
        recovered = 0
        while True:
            rows = await self._store.expired(RECOVER_BATCH)
            if not rows:
                return recovered
            now = _wall_now()
            lost = StoredError(LEASE_EXPIRED_ERROR)
            recoveries: list[Recovery] = []
            for row in rows:
                status, error, due = decide(
                    Ending.CANCELLED if row.cancel_requested else Ending.LOST,
                    lost,
                    attempts=row.attempts,
                    max_attempts=row.max_attempts,
                    policy=policy_for(lookup(row.name), self._retry),
                    now=now,
                )
                text = LEASE_EXPIRED_ERROR if error is lost or error is None else error_text(error)
                recoveries.append(Recovery(row.id, row.owner, row.attempts, status, text, due))
            changed = await self._store.recover(recoveries)
            recovered += changed
            if len(rows) < RECOVER_BATCH or not changed:
                return recovered

    # ------------------------------------------------------------- shutdown

    async def shutdown(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - a deadline on the queue's own work
    ) -> None:
        """Stop claiming tasks, let running tasks finish, and wait until the queue has stopped.

        Tasks left in the store (queued, scheduled, retrying) stay there for
        the next process. Claimed tasks that have not started are given back
        at once. When *timeout* seconds have passed, running tasks are
        cancelled and given back too (``queued`` again, the interrupted
        attempt not counted). Later `submit` calls raise `QueueClosed`.

        Always a checkpoint. Calling it again is allowed (a shorter *timeout*
        wins). If the caller is cancelled while waiting, running tasks are
        cancelled and given back at once.

        Called from inside one of the queue's own tasks (or a child task of
        one), it starts the shutdown and returns without waiting: the queue
        cannot stop before the calling task ends.
        """
        if timeout is not None:
            timeout = _check_seconds("timeout", timeout)
            self._shutdown_deadline = min(
                self._shutdown_deadline, self._clock.current_time() + timeout
            )
            if self._grace_scope is not None:
                self._grace_scope.deadline = self._shutdown_deadline
        self._begin_shutdown()
        if running_in(self):
            await trio.lowlevel.checkpoint()
            return
        try:
            await self._stopped.wait()
        except BaseException:
            self._abort()
            raise

    def _begin_shutdown(self) -> None:
        if not self._closing:
            self._closing = True
            self._closing_event.set()
            self._work_hint.set()
            self._worker_idle.set()
            if not self._held:
                self._drained.set()

    def _abort(self) -> None:
        """Stop every running task now; each is given back to the store."""
        self._shutdown_deadline = -math.inf
        self._begin_shutdown()
        if self._grace_scope is not None:
            self._grace_scope.cancel()
        for attempt in list(self._held.values()):
            attempt.interrupted = True
            if attempt.scope is not None:
                attempt.scope.cancel()

    async def _supervise(self) -> None:
        await self._closing_event.wait()
        # Claimed tasks no worker has started go back at once (workers take no more).
        unstarted = [a for a in self._ready if not a.lost]
        self._ready.clear()
        await self._release_all(unstarted)
        with trio.CancelScope(deadline=self._shutdown_deadline) as self._grace_scope:
            await self._drained.wait()
        self._grace_scope = None
        if not self._drained.is_set():
            self._abort()
            await self._drained.wait()

    async def _run_queue(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self._started = True
        try:
            async with trio.open_nursery() as nursery:
                if self._workers:
                    for _ in range(self._workers):
                        nursery.start_soon(self._worker)
                    nursery.start_soon(self._fetcher)
                    nursery.start_soon(self._recorder)
                    nursery.start_soon(self._listen)
                    nursery.start_soon(self._heartbeat)
                    nursery.start_soon(self._reaper)
                task_status.started()
                await self._supervise()
                # Nothing is held any more: stop the workers and the upkeep.
                nursery.cancel_scope.cancel()
        except BaseException as exc:
            self._crashed = not only_cancelled(exc)
            raise
        finally:
            self._closing = True
            # Cancelled from outside: claimed tasks no worker started go back now
            # (running ones are given back by their workers as they unwind).
            unstarted = [a for a in self._held.values() if a._started is None]
            completed, self._completed = self._completed, []
            if unstarted or completed:
                with trio.CancelScope(shield=True, deadline=trio.current_time() + CLEANUP_TIMEOUT):
                    try:
                        # Results not written yet: write them rather than leave tasks
                        # that ran to run again once their lease expires.
                        if completed:
                            await self._record_completions(completed)
                    finally:
                        await self._release_all(unstarted)
            self._stopped.set()
            self._close_streams()


def _log_lease_lost(attempt: _Attempt) -> None:
    logger.info(
        "task %s (%s): lease lost before its outcome was recorded; another attempt owns it now",
        attempt.id,
        attempt.name,
    )


def _closed_error() -> QueueClosed:
    return QueueClosed("the queue is shutting down and accepts no new tasks")


def _not_found(task_id: str) -> TaskNotFound:
    return TaskNotFound(f"no task with id {task_id!r} in the store (unknown, or purged)")


def _wall_datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def _check_status(status: TaskStatus | str | None) -> TaskStatus | None:
    if status is None:
        return None
    if not isinstance(status, str):
        raise TypeError(f"status must be a TaskStatus or str, not {type(status).__name__}")
    try:
        return TaskStatus(status)
    except ValueError:
        known = ", ".join(s.value for s in TaskStatus)
        raise ValueError(f"unknown status {status!r}; expected one of {known}") from None


@asynccontextmanager
async def open_durable_queue(
    nursery: trio.Nursery | None = None,
    *,
    store: Store | str,
    workers: int = 10,
    retry: RetryPolicy | None = None,
    lease: float = 30.0,
    poll_interval: float = 1.0,
    serializer: Serializer | None = None,
    retention: float | None = 86400.0,
    shutdown_timeout: float | None = None,
    store_failure_grace: float | None = 60.0,
) -> AsyncGenerator[DurableWorkQueue, None]:
    """Open a `DurableWorkQueue` on *store*, with its workers in *nursery* (or its own).

    Entering opens the store (when given a URL) and starts the workers,
    which claim whatever the store holds: tasks queued, scheduled or
    retrying, and tasks whose previous worker died (once their lease has
    expired). Leaving the block normally performs
    ``await queue.shutdown(timeout=shutdown_timeout)``; an exception
    escaping it interrupts running tasks at once and gives them back to the
    store. Both halves block.

    Args:
        nursery: Where the queue's tasks live (as for `open_work_queue`).
        store: A `Store` that has not been opened, or a URL:
            ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``
            or ``postgresql://...``. The queue opens the store on entry and
            closes it once it has stopped.
        workers: How many tasks this process runs at once; 0 makes a
            process that only submits and inspects tasks.
        retry: The default `RetryPolicy`, for tasks registered without
            one (every process sharing the store should use the same).
        lease: Seconds a claimed task stays reserved for this process
            without a renewal; the heartbeat renews leases well before.
            After a crash, the task runs again once its lease has expired.
        poll_interval: Seconds between polls of the store for new work
            from other processes (and of results by `DurableTaskHandle.wait`).
        serializer: How arguments and results are stored (default
            `JSONSerializer`); every process sharing the store must use the
            same one.
        retention: Seconds a finished task is kept in the store (for
            results and lookups) before it is purged; ``None`` keeps it.
        shutdown_timeout: The deadline used when leaving the block
            (``None``: wait for running tasks to finish).
        store_failure_grace: Seconds the workers keep retrying a store
            whose every call fails (claims, lease renewals, upkeep, outcome
            writes) before the queue stops with `StoreUnavailable`; a call
            that works starts the count again. ``None`` retries forever.
            Only the workers' calls count: with ``workers=0`` each call
            raises its own `StoreError`.

    Raises:
        TypeError, ValueError: For bad arguments or a bad URL, before
            anything starts.
        StoreError: If the store cannot be opened.
        StoreUnavailable: Out of the block (in an exception group when the
            queue runs in *nursery*), once every store call of the workers
            has failed for *store_failure_grace* seconds.
    """
    from .._stores.urls import store_from_url

    if isinstance(store, str):
        resolved = store_from_url(store)
    elif callable(getattr(store, "claim", None)):
        resolved = store
    else:
        raise TypeError(f"store must be a Store or a URL (str), not {type(store).__name__}")
    queue = DurableWorkQueue(
        store=resolved,
        workers=workers,
        retry=retry,
        lease=lease,
        poll_interval=poll_interval,
        serializer=serializer,
        retention=retention,
        shutdown_timeout=shutdown_timeout,
        store_failure_grace=store_failure_grace,
    )
    await resolved.open()
    try:
        async with run_queue(nursery, queue._run_queue, queue):
            yield queue
    finally:
        with trio.CancelScope(shield=True, deadline=trio.current_time() + CLEANUP_TIMEOUT):
            # With the caller's nursery, the queue's tasks may still be giving
            # tasks back: let them finish before the store closes under them.
            if queue._started:
                await queue._stopped.wait()
            await resolved.aclose()
