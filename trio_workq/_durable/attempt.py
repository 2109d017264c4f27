# SPDX-License-Identifier: MIT
# The runtime's services share `_Attempt` (this package's record of a task: each writes
# the private times and errors of the attempts it ends) and the queue's event source;
# events and hooks read the record through `TaskRecord`. This module waives the rule.
# pyright: reportPrivateUsage=false
"""This process's record of a durable task: what events and `current_task` read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import trio

from .._core.info import (
    MAX_ERROR_HISTORY,
    NO_HEADERS,
    TaskInfo,
    TaskSnapshot,
    info_from_state,
    new_snapshot,
)
from .._core.registry import TaskDefinition
from .._core.status import TaskStatus
from .._stores.protocol import StoredTask
from .errors import StoredError
from .handle import QueueRef


class _Attempt:
    """This process's record of a task: for lifecycle events and `current_task`.

    It is a `TaskRecord`, as a `MemoryTaskHandle` is, so durable tasks produce the
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
        "headers",
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
        queue: QueueRef,
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
        self.headers: Mapping[str, str] = NO_HEADERS  # as stored with the task

    # The `TaskRecord` interface, read by events, hooks and current_task.

    @property
    def queue(self) -> QueueRef:
        return self._queue

    @property
    def last_error(self) -> BaseException | None:
        return self._last_error

    @property
    def queued_time(self) -> float:
        return self._queued

    @property
    def started_time(self) -> float | None:
        return self._started

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
            self._queue.wall_time,
        )

    def info_nowait(self) -> TaskInfo:
        return self.info_from(self.snapshot())

    def wall_time(self, trio_time: float) -> datetime:
        return self._queue.wall_time(trio_time)

    def request_cancel(self) -> None:
        """Ask this attempt to stop (now if it runs, before it starts if not). Not a checkpoint."""
        self.cancel_requested = True
        if self.scope is not None:
            self.scope.cancel()


def record_of_row(queue: QueueRef, row: StoredTask, wall_offset: float) -> _Attempt:
    """A record of the stored task *row*, its Unix times (the store's clock) made trio times."""
    offset = wall_offset
    record = _Attempt(
        queue,
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
    record.headers = row.headers
    record._queued = (row.due_at if row.due_at is not None else row.created_at) - offset
    if row.errors:
        record._errors = tuple(StoredError(text) for text in row.errors[-MAX_ERROR_HISTORY:])
        record._last_error = record._errors[-1]
    return record
