# SPDX-License-Identifier: MIT
"""Lifecycle events, the ``trio_workq`` logger, and the running task's context."""

from __future__ import annotations

import enum
import logging
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from ._task import TaskInfo, TaskStatus

if TYPE_CHECKING:
    from ._task import TaskHandle

#: The library's logger: failures at WARNING, retries at INFO, lifecycle at DEBUG.
logger = logging.getLogger("trio_workq")


class EventKind(str, enum.Enum):
    """What happened to a task."""

    SUBMITTED = "submitted"
    SCHEDULED = "scheduled"
    STARTED = "started"
    COMPLETED = "completed"
    FAILED = "failed"
    RETRYING = "retrying"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


#: The event emitted when a task enters a status (a due task becoming
#: ``queued`` again emits none: it was announced when submitted or scheduled).
EVENT_FOR_STATUS: dict[TaskStatus, EventKind] = {
    TaskStatus.RUNNING: EventKind.STARTED,
    TaskStatus.RETRYING: EventKind.RETRYING,
    TaskStatus.COMPLETED: EventKind.COMPLETED,
    TaskStatus.FAILED: EventKind.FAILED,
    TaskStatus.CANCELLED: EventKind.CANCELLED,
}


@attrs.frozen
class TaskEvent:
    """One status change of one task, as delivered to listeners and event streams.

    Attributes:
        kind: What happened.
        info: The task's `TaskInfo` right after the change.
        timestamp: When it happened (aware UTC).
        time: When it happened, in trio time (`trio.current_time`), for
            measuring durations.
    """

    kind: EventKind
    info: TaskInfo
    timestamp: datetime
    time: float


_current: ContextVar[TaskHandle[Any]] = ContextVar("trio_workq_current_task")


def set_current(task: TaskHandle[Any]) -> None:
    """Record the task a worker is about to run (each worker has its own context)."""
    _current.set(task)


def current_task() -> TaskInfo:
    """The `TaskInfo` of the task running this code, read via contextvars.

    Child tasks a task starts inherit it. Not a checkpoint.

    Raises:
        RuntimeError: If called outside a task run by a `WorkQueue`.
    """
    try:
        task = _current.get()
    except LookupError:
        raise RuntimeError(
            "trio_workq.current_task() was called outside a task run by a WorkQueue"
        ) from None
    return task.info()


class EventStream:
    """Lifecycle events as an async iterator; from `WorkQueue.subscribe`.

    Backed by a bounded buffer: a consumer that falls behind never slows the
    queue down. Events that find the buffer full are dropped and counted in
    `dropped`. Iteration ends when the queue has stopped and the buffer is
    empty.
    """

    def __init__(self, max_buffer_size: int) -> None:
        import trio  # local: keeps this module importable without a trio run

        self._send, self._receive = trio.open_memory_channel[TaskEvent](max_buffer_size)
        #: How many events were dropped because the buffer was full.
        self.dropped = 0

    def _deliver(self, event: TaskEvent) -> None:
        import trio

        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.dropped += 1
        except trio.ClosedResourceError:
            pass

    def _close(self) -> None:
        self._send.close()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> TaskEvent:
        """The next event; waits for one. Always a checkpoint."""
        import trio

        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None
