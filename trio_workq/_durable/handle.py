# SPDX-License-Identifier: MIT
"""The durable task handle, and the waiters this process wakes when it finishes a task."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar, cast

import outcome
import trio

from .._core.info import TaskInfo

#: A task's result type (as `trio_workq.TaskHandle`'s; its own, so no import of the memory layer).
T = TypeVar("T")


class QueueRef(Protocol):
    """What handles and attempt records need of their queue (`DurableWorkQueue`).

    A protocol, so that these modules need not import the queue's (which
    imports them).
    """

    async def wait_finished(self, task_id: str) -> outcome.Outcome[Any]: ...

    async def cancel(self, task_id: str) -> bool: ...

    async def get_info(self, task_id: str) -> TaskInfo: ...

    def wall_time(self, trio_time: float) -> datetime: ...


class FinishWaiters:
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

    def __init__(self, queue: QueueRef, task_id: str) -> None:
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
        return cast("outcome.Outcome[T]", await self._queue.wait_finished(self.id))

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
