# SPDX-License-Identifier: MIT
"""What a stored row means to a caller: a `TaskInfo`, or the outcome of a finished task."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import outcome

from .._core.errors import TaskCancelled
from .._core.info import MAX_ERROR_HISTORY, TaskInfo
from .._core.status import COMPLETED, FAILED, RETRYING, SCHEDULED, TaskStatus
from .._stores.protocol import StoredTask, storable_text
from .errors import StoredError
from .serialize import Serializer


def outcome_of_row(row: StoredTask, serializer: Serializer) -> outcome.Outcome[Any]:
    """The outcome of a finished task's final attempt (its value decoded by *serializer*)."""
    if row.status is COMPLETED:
        try:
            value = None if row.result is None else serializer.loads(row.result)
        except Exception as exc:  # a corrupt row: the caller's error, not a crash
            text = f"the stored result of task {row.id} cannot be decoded: {exc!r}"
            return outcome.Error(StoredError(storable_text(text)))
        return outcome.Value(value)
    if row.status is FAILED:
        text = row.errors[-1] if row.errors else "the task failed (no error was recorded)"
        return outcome.Error(StoredError(text))
    return outcome.Error(TaskCancelled(f"task {row.id} ({row.name}) was cancelled"))


def info_of_row(row: StoredTask) -> TaskInfo:
    """A `TaskInfo` of the stored task *row* (its errors as `StoredError`)."""
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


def check_status(status: TaskStatus | str | None) -> TaskStatus | None:
    """*status* as a `TaskStatus` (or None); a clear error for anything else."""
    if status is None:
        return None
    if not isinstance(status, str):
        raise TypeError(f"status must be a TaskStatus or str, not {type(status).__name__}")
    try:
        return TaskStatus(status)
    except ValueError:
        known = ", ".join(s.value for s in TaskStatus)
        raise ValueError(f"unknown status {status!r}; expected one of {known}") from None


def _wall_datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)
