# SPDX-License-Identifier: MIT
"""`TaskQueue` and `TaskHandle`: what every queue and every handle offer, whatever the backend.

Structural types (`typing.Protocol`): `~trio_workq.WorkQueue` and
`~trio_workq.DurableWorkQueue` implement `TaskQueue` without inheriting from
it, and their handles implement `TaskHandle`. Code written against these two
runs unchanged in memory, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import outcome

from .._core.info import TaskInfo, TaskPage
from .._core.stats import QueueStatistics
from .._core.status import TaskStatus
from .events import EventStream, TaskEvent

if TYPE_CHECKING:
    from typing_extensions import TypeVarTuple, Unpack

    Ts = TypeVarTuple("Ts")

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


@runtime_checkable
class TaskHandle(Protocol[T_co]):
    """The handle of one task, from any `TaskQueue`.

    `~trio_workq.MemoryTaskHandle` (in-memory queues) and
    `~trio_workq.DurableTaskHandle` (durable queues) implement it. Every
    method is async and always a checkpoint.
    """

    @property
    def id(self) -> str:
        """The task's id, unique within its queue or store (a string)."""
        ...

    async def cancel(self) -> bool:
        """Cancel the task; see `TaskQueue.cancel`."""
        ...

    async def wait(self) -> outcome.Outcome[T_co]:
        """Wait until the task has finished; the outcome of its final attempt.

        A cancelled task's outcome holds `~trio_workq.TaskCancelled`.
        """
        ...

    async def result(self) -> T_co:
        """Wait until the task has finished and return its value (or raise its error)."""
        ...

    async def info(self) -> TaskInfo:
        """A `~trio_workq.TaskInfo` snapshot of the task."""
        ...


@runtime_checkable
class TaskQueue(Protocol):
    """What every queue offers, in memory or on a store.

    `open_work_queue` returns one: a `~trio_workq.WorkQueue` without a
    store, a `~trio_workq.DurableWorkQueue` with one. Every ``async``
    method is always a checkpoint. The in-memory queue also has synchronous
    forms under ``_nowait`` names (`~trio_workq.WorkQueue.cancel_nowait`
    and so on), as trio's channels have ``send`` and ``send_nowait``; a
    durable queue has none, since its state lives in the store.

    ``isinstance(queue, TaskQueue)`` works (it checks that the methods
    exist). What differs by backend is said where it matters: a durable queue runs
    registered functions only (`trio_workq.task`) and stores their
    arguments and results with its serializer, so a failed task's error is
    a `~trio_workq.StoredError`, and its status counts cover the whole store.
    """

    async def submit(
        self,
        fn: Callable[[Unpack[Ts]], Awaitable[T]],
        *args: Unpack[Ts],
        name: str | None = None,
        priority: int = 0,
        timeout: float | None = None,
    ) -> TaskHandle[T]:
        """Queue ``await fn(*args)`` and return its handle.

        An in-memory queue waits while its buffer is full; a durable one
        returns once the store has committed the task.

        Raises:
            TypeError, ValueError: For bad arguments; nothing is queued.
            QueueClosed: If the queue is shutting down.
        """
        ...

    async def submit_many(
        self,
        fn: Callable[[Unpack[Ts]], Awaitable[T]],
        calls: Iterable[tuple[Unpack[Ts]]],
        *,
        name: str | None = None,
        priority: int = 0,
        timeout: float | None = None,
    ) -> Sequence[TaskHandle[T]]:
        """Queue one task per argument tuple in *calls*; their handles, in order.

        Every call is checked first: if one is bad, nothing is queued.
        """
        ...

    async def schedule(
        self,
        fn: Callable[[Unpack[Ts]], Awaitable[T]],
        *args: Unpack[Ts],
        delay: float | None = None,
        at: datetime | None = None,
        name: str | None = None,
        priority: int = 0,
        timeout: float | None = None,
    ) -> TaskHandle[T]:
        """Run ``await fn(*args)`` after *delay* seconds, or at the instant *at* (one of them)."""
        ...

    async def get_handle(self, task_id: str) -> TaskHandle[Any]:
        """The handle of the task with this id.

        Raises:
            TaskNotFound: If there is no such task (or its record is gone).
        """
        ...

    async def get_info(self, task_id: str) -> TaskInfo:
        """A `~trio_workq.TaskInfo` snapshot of the task with this id.

        Raises:
            TaskNotFound: If there is no such task.
        """
        ...

    async def cancel(self, task_id: str) -> bool:
        """Cancel the task with this id.

        Returns:
            ``True`` if the task had not finished, ``False`` if it had.

        Raises:
            TaskNotFound: If there is no such task.
        """
        ...

    async def retry(self, task_id: str) -> TaskHandle[Any]:
        """Run a ``failed`` or ``cancelled`` task again, as one more attempt, due now.

        Raises:
            TaskNotFound: If there is no such task.
            TaskStateError: If the task is not ``failed`` or ``cancelled``.
        """
        ...

    async def list_tasks(
        self,
        *,
        status: TaskStatus | str | None = None,
        name: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> TaskPage:
        """A page of task snapshots, newest first; pass its ``next_cursor`` for the next."""
        ...

    async def statistics(self) -> QueueStatistics:
        """The queue's counters (see `~trio_workq.QueueStatistics`)."""
        ...

    async def shutdown(self, timeout: float | None = None) -> None:
        """Stop taking new tasks, let running ones finish, and wait until the queue has stopped."""
        ...

    def add_listener(self, listener: Callable[[TaskEvent], None]) -> None:
        """Call *listener* with every lifecycle event of this process. Not a checkpoint."""
        ...

    def remove_listener(self, listener: Callable[[TaskEvent], None]) -> None:
        """Stop calling *listener*. Not a checkpoint."""
        ...

    def subscribe(self, max_buffer_size: int = 1000) -> AbstractAsyncContextManager[EventStream]:
        """Receive lifecycle events as an async iterator, inside ``async with``."""
        ...

    def wall_time(self, trio_time: float) -> datetime:
        """The wall-clock time (aware UTC) of a time on this queue's trio clock."""
        ...
