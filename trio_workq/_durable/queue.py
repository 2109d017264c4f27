# SPDX-License-Identifier: MIT
# The runtime's services share `_Attempt` (this package's record of a task: each writes
# the private times and errors of the attempts it ends) and the queue's event source;
# events and hooks read the record through `TaskRecord`. This module waives the rule.
# pyright: reportPrivateUsage=false
"""The durable queue: tasks live in a `Store`, workers claim them with leases.

`DurableWorkQueue` is a thin facade over small services, one module each,
which share one `Runtime` (``runtime.py``: the shared state, with the owner
of each field): the *intake* checks and stores new tasks; the *fetcher*
claims as many due tasks as there are idle workers per round trip, woken by
the store or by polling; the *executor*'s workers run them, each attempt in
its worker's cancel scope; the *completer* writes their outcomes with the
store's conditional calls (results in batches, while the workers go on); the
*maintenance* tasks renew the leases of held tasks, relay cancellation
requests, re-queue tasks whose worker died and purge old finished tasks.
The facade holds the lookups, the shutdown and the task tree.
Times written to the store are Unix seconds on the store's clock
(`Store.now`: the wall clock for a store shared by processes and hosts,
trio's for `trio_workq.testing.MemoryStore`); everything measured locally
uses trio's clock.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import outcome
import trio

from .._core.errors import TaskStateError, check_seconds
from .._core.info import MAX_PAGE_SIZE, TaskInfo, TaskPage
from .._core.retry import RetryPolicy
from .._core.stats import QueueStatistics
from .._core.status import (
    CANCELLED,
    COMPLETED,
    FAILED,
    QUEUED,
    RETRYING,
    RUNNING,
    SCHEDULED,
    EventKind,
    TaskStatus,
)
from .._core.validate import check_count, check_name
from .._runtime.events import EventSource, running_in
from .._runtime.lifecycle import run_queue
from .._stores.protocol import Store, StoredTask
from .completer import Completer
from .errors import LEASE_EXPIRED_ERROR as LEASE_EXPIRED_ERROR
from .errors import StoredError as StoredError
from .errors import StoreUnavailable as StoreUnavailable
from .errors import error_text as error_text
from .errors import not_found
from .executor import Executor
from .fetcher import Fetcher
from .handle import DurableTaskHandle as DurableTaskHandle
from .handle import T
from .intake import Intake
from .maintenance import Maintenance
from .rows import check_status, info_of_row, outcome_of_row
from .runtime import CLEANUP_TIMEOUT as CLEANUP_TIMEOUT
from .runtime import Runtime
from .serialize import JSONSerializer, Serializer
from .supervisor import Supervisor

if TYPE_CHECKING:
    from typing_extensions import TypeVarTuple, Unpack

    Ts = TypeVarTuple("Ts")


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
        lease = check_seconds("lease", lease, allow_zero=False)
        poll_interval = check_seconds("poll_interval", poll_interval, allow_zero=False)
        if serializer is None:
            serializer = JSONSerializer()
        elif not isinstance(serializer, Serializer):
            raise TypeError(f"serializer must have dumps() and loads() methods, got {serializer!r}")
        retention = None if retention is None else check_seconds("retention", retention)
        self._shutdown_timeout = (
            None
            if shutdown_timeout is None
            else check_seconds("shutdown_timeout", shutdown_timeout)
        )
        grace = (
            math.inf
            if store_failure_grace is None
            else check_seconds("store_failure_grace", store_failure_grace)
        )
        # The services, wired to the state they share (see Runtime for who writes what).
        rt = self._rt = Runtime(
            queue=self,
            events=self,
            store=store,
            lease=lease,
            poll_interval=poll_interval,
            serializer=serializer,
            store_failure_grace=grace,
        )
        self._completer = Completer(rt, retry)
        self._intake = Intake(rt, retry)
        self._store = store
        self._owner = rt.owner
        self._serializer = serializer
        self._held = rt.held  # the same dict: tests look into it
        self._tree = Supervisor(
            rt,
            self._workers,
            completer=self._completer,
            executor=Executor(rt, self._completer),
            fetcher=Fetcher(rt, self._completer),
            maintenance=Maintenance(rt, retention, retry),
        )
        self._stopped = self._tree.stopped  # the same event: tests wait on it
        self._init_events()
        self._wall_offset = rt.wall_offset

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

    @property
    def serializer(self) -> Serializer:
        """The `Serializer` of task arguments and results in the store."""
        return self._serializer

    @property
    def poll_interval(self) -> float:
        """Seconds between this queue's polls of the store for work of other processes."""
        return self._rt.poll_interval

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
        intake = self._intake
        new = intake.new_task(fn, args, name, priority, timeout, None, intake.headers())
        return await intake.add(new)

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
        intake = self._intake
        headers = intake.headers()
        tasks = [
            intake.new_task(fn, tuple(args), name, priority, timeout, None, headers)
            for args in calls
        ]
        if not tasks:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return []
        return await intake.add_all(tasks)

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
        intake = self._intake
        due = intake.due(delay, at)
        new = intake.new_task(fn, args, name, priority, timeout, due, intake.headers())
        return await intake.add(new)

    # ----------------------------------------------------------- lookups & acts

    async def get_handle(self, task_id: str) -> DurableTaskHandle[Any]:
        """A handle for the task with this id, once the store has it. Always a checkpoint.

        Raises:
            TaskNotFound: If the store has no task with this id.
        """
        await self._get(task_id)
        return DurableTaskHandle(self, task_id)

    async def get_info(self, task_id: str) -> TaskInfo:
        """A `TaskInfo` snapshot of the task, read from the store. Always a checkpoint.

        Errors are `StoredError` instances (the stored text).

        Raises:
            TaskNotFound: If the store has no task with this id.
        """
        return info_of_row(await self._get(task_id))

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
            raise not_found(task_id)
        if status is RUNNING:
            attempt = self._rt.held.get(task_id)
            if attempt is not None:
                attempt.request_cancel()
        elif not status.is_terminal:
            self._rt.finish_waiters.finished(task_id)
            if self._hooks:
                row = await self._store.get(task_id)
                if row is not None:
                    record = self._rt.record_of_row(row)
                    record._finished = self._rt.clock.current_time()
                    self._rt.emit(record, EventKind.CANCELLED, was_running=False)
        return not status.is_terminal

    async def retry(self, task_id: str) -> DurableTaskHandle[Any]:
        """Run a ``failed`` or ``cancelled`` task again, as one more attempt, due now.

        Always a checkpoint. Any process sharing the store may run it.
        Listeners of this queue see a ``retrying`` event, as in memory.

        Raises:
            TaskNotFound: If the store has no task with this id.
            TaskStateError: If the task is not ``failed`` or ``cancelled``.
        """
        if not isinstance(task_id, str):
            raise TypeError(f"task_id must be a str, not {type(task_id).__name__}")
        rt = self._rt
        # Like a submit: if this process claims the task before its retrying
        # event is out, the fetcher waits for it (listeners see retrying, then started).
        announced = trio.Event()
        rt.adds_in_flight.add(announced)
        try:
            status = await self._store.requeue(task_id)
            if status is None:
                raise not_found(task_id)
            if status is not FAILED and status is not CANCELLED:
                raise TaskStateError(
                    f"task {task_id} is {status}; only failed or cancelled tasks can be retried"
                )
            if self._hooks:
                row = await self._store.get(task_id)
                if row is not None:
                    rt.emit(rt.record_of_row(row), EventKind.RETRYING, was_running=False)
        finally:
            rt.adds_in_flight.discard(announced)
            announced.set()
        rt.hint()
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
        status = check_status(status)
        check_name(name)
        if cursor is not None and not isinstance(cursor, str):
            raise TypeError(f"cursor must be a str or None, not {type(cursor).__name__}")
        page = await self._store.page(status=status, name=name, limit=limit, cursor=cursor)
        return TaskPage(tuple(info_of_row(row) for row in page.tasks), page.next_cursor)

    async def statistics(self) -> QueueStatistics:
        """Counts per status across the store, and this process's workers. Always a checkpoint.

        The fields only an in-memory queue knows (``submitted``,
        ``retained``, ``buffer_capacity``, ``producers_waiting``,
        ``schedulers_waiting``) are ``None``.
        """
        counts = await self._store.counts()
        return QueueStatistics(
            workers=self._workers,
            busy_workers=self._rt.busy,
            queued=counts.get(QUEUED, 0),
            scheduled=counts.get(SCHEDULED, 0),
            retrying=counts.get(RETRYING, 0),
            running=counts.get(RUNNING, 0),
            completed=counts.get(COMPLETED, 0),
            failed=counts.get(FAILED, 0),
            cancelled=counts.get(CANCELLED, 0),
            closed=self._rt.closing,
            held=len(self._rt.held),
            owner=self._owner,
        )

    async def _get(self, task_id: str) -> StoredTask:
        if not isinstance(task_id, str):
            raise TypeError(f"task_id must be a str, not {type(task_id).__name__}")
        row = await self._store.get(task_id)
        if row is None:
            raise not_found(task_id)
        return row

    async def wait_finished(self, task_id: str) -> outcome.Outcome[Any]:
        """The outcome of the task once finished. Always a checkpoint.

        Internal, for `DurableTaskHandle.wait` (use that): not part of the
        public API.
        """
        waiters = self._rt.finish_waiters
        entry = waiters.register(task_id)
        try:
            while True:
                row = await self._get(task_id)
                if row.status.is_terminal:
                    return outcome_of_row(row, self._serializer)
                with trio.move_on_after(self._rt.poll_interval):
                    await entry[0].wait()
                if entry[0].is_set():
                    waiters.unregister(task_id, entry)
                    entry = waiters.register(task_id)
        finally:
            waiters.unregister(task_id, entry)

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
        tree = self._tree
        if timeout is not None:
            tree.shorten_deadline(check_seconds("timeout", timeout))
        tree.begin_shutdown()
        if running_in(self):
            await trio.lowlevel.checkpoint()
            return
        try:
            await tree.stopped.wait()
        except BaseException:
            tree.abort()
            raise

    def _abort(self) -> None:
        """Stop every running task now; each is given back to the store."""
        self._tree.abort()

    @property
    def _crashed(self) -> bool:
        return self._tree.crashed


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
    tree = queue._tree
    await resolved.open()
    try:
        async with run_queue(nursery, tree.run, queue):
            yield queue
    finally:
        with trio.CancelScope(shield=True, deadline=trio.current_time() + CLEANUP_TIMEOUT):
            # With the caller's nursery, the queue's tasks may still be giving
            # tasks back: let them finish before the store closes under them.
            if tree.started:
                await tree.stopped.wait()
            await resolved.aclose()
