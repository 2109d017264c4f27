# SPDX-License-Identifier: MIT
"""The exceptions trio_workq raises."""

from __future__ import annotations

import trio


class QueueClosed(Exception):
    """The queue is shutting down or has shut down: it accepts no new tasks."""


class TaskNotFound(KeyError):
    """No task with this id is known: it never existed or its record has expired."""

    def __str__(self) -> str:
        # KeyError's own __str__ shows repr(args), which reads badly in logs.
        return str(self.args[0]) if self.args else "task not found"


class TaskStateError(Exception):
    """The action does not fit the task's current status (e.g. retrying a running task)."""


class TaskCancelled(Exception):
    """Raised by `TaskHandle.result` for a task that ended ``cancelled``."""


class TaskTimeout(trio.TooSlowError):
    """A task ran longer than its ``timeout``; recorded as the attempt's error."""


class Retry(Exception):
    """Raise inside a task to ask for another attempt.

    It counts as an attempt: when the task's `RetryPolicy` has no attempts
    left (or the task has no policy), the task ends ``failed`` with this
    exception as its error.

    Args:
        delay: Seconds to wait before the next attempt; ``None`` uses the
            policy's backoff.
    """

    def __init__(self, delay: float | None = None) -> None:
        if delay is not None:
            check_seconds("delay", delay)
        super().__init__(delay)
        self.delay = delay

    def __repr__(self) -> str:
        return f"Retry(delay={self.delay!r})"


def check_seconds(what: str, value: object, *, allow_zero: bool = True) -> float:
    """Validate a number of seconds: a finite, non-negative real number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, not {type(value).__name__}")
    seconds = float(value)
    if seconds != seconds or seconds == float("inf"):
        raise ValueError(f"{what} must be finite, got {value!r}")
    if seconds < 0 or (not allow_zero and seconds == 0):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{what} must be {bound}, got {value!r}")
    return seconds
