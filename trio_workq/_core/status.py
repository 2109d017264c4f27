# SPDX-License-Identifier: MIT
"""Task statuses and the lifecycle events they emit."""

from __future__ import annotations

import enum


class TaskStatus(str, enum.Enum):
    """Where a task is in its lifecycle.

    ``queued`` → ``running`` → ``completed`` / ``failed`` / ``cancelled``;
    a delayed task starts ``scheduled``, and a task waiting out a retry
    backoff is ``retrying``.
    """

    QUEUED = "queued"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        """Whether a task in this status has finished for good."""
        return self in TERMINAL_STATUSES


#: Statuses of finished tasks (left only by an explicit `WorkQueue.retry`).
TERMINAL_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})

# Short local names: these are read on the hot path.
QUEUED = TaskStatus.QUEUED
SCHEDULED = TaskStatus.SCHEDULED
RUNNING = TaskStatus.RUNNING
RETRYING = TaskStatus.RETRYING
COMPLETED = TaskStatus.COMPLETED
FAILED = TaskStatus.FAILED
CANCELLED = TaskStatus.CANCELLED


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
