# SPDX-License-Identifier: MIT
"""A task's record: its status, its public handle and its snapshot."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar

import attrs
import outcome
import trio

from ._errors import TaskCancelled

if TYPE_CHECKING:
    from ._queue import WorkQueue
    from ._retry import RetryPolicy

T = TypeVar("T")

_State: TypeAlias = tuple[
    "TaskStatus",
    int,
    "BaseException | None",
    "tuple[BaseException, ...]",
    "float | None",
    float,
    "float | None",
    "float | None",
]


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


@attrs.frozen
class TaskInfo:
    """A snapshot of one task, taken by `WorkQueue.get_info` or `TaskHandle.info`.

    Attributes:
        id: The task's id, unique within its queue.
        name: A label: the ``name`` given at submit, else the function's
            qualified name.
        status: The `TaskStatus` when the snapshot was taken.
        priority: Higher runs first.
        attempts: How many times the task has started running.
        max_attempts: The most runs its retry policy allows (1 without one).
        timeout: Seconds one attempt may run, or ``None``.
        last_error: The exception of the latest failed attempt, or ``None``
            (a timed-out attempt records `TaskTimeout`).
        errors: Exceptions of the failed attempts, oldest first (at most
            the last ten).
        created_at: When the task was submitted (aware UTC).
        due_at: When a ``scheduled`` or ``retrying`` task becomes runnable.
        queued_at: When the task last became ``queued`` (submitted, or due);
            ``None`` while it is first ``scheduled``.
        started_at: When the latest attempt started.
        finished_at: When the task reached a terminal status.
    """

    id: str
    name: str
    status: TaskStatus
    priority: int
    attempts: int
    max_attempts: int
    timeout: float | None
    last_error: BaseException | None
    errors: tuple[BaseException, ...]
    created_at: datetime
    due_at: datetime | None
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


# Default names of recently seen callables: most queues run a handful of
# functions many times. Bounded, since it keeps its callables alive.
_recent_names: dict[Any, str] = {}
_RECENT_NAMES_MAX = 256


def task_name(fn: object) -> str:
    """The default task name: the function's ``module:qualname``."""
    try:
        return _recent_names[fn]
    except (KeyError, TypeError):  # TypeError: an unhashable callable
        pass
    name = _compute_task_name(fn)
    if len(_recent_names) >= _RECENT_NAMES_MAX:
        _recent_names.clear()
    try:
        _recent_names[fn] = name
    except TypeError:
        pass
    return name


def _compute_task_name(fn: object) -> str:
    inner: Any = fn
    while hasattr(inner, "func"):  # functools.partial, possibly nested
        inner = inner.func
    qualname = getattr(inner, "__qualname__", None) or type(inner).__qualname__
    module = getattr(inner, "__module__", None)
    return f"{module}:{qualname}" if module else qualname


def info_from_state(
    task_id: str,
    name: str,
    priority: int,
    max_attempts: int,
    timeout: float | None,
    created: float,
    state: _State,
    wall: Callable[[float], datetime],
) -> TaskInfo:
    """A `TaskInfo` from a task's fixed fields and a `_State` snapshot (trio times)."""
    status, attempts, last_error, errors, due, queued, started, finished = state
    return TaskInfo(
        id=task_id,
        name=name,
        status=status,
        priority=priority,
        attempts=attempts,
        max_attempts=max_attempts,
        timeout=timeout,
        last_error=last_error,
        errors=errors,
        created_at=wall(created),
        due_at=None if due is None else wall(due),
        queued_at=None if status is SCHEDULED else wall(queued),
        started_at=None if started is None else wall(started),
        finished_at=None if finished is None else wall(finished),
    )


@attrs.frozen
class TaskOptions:
    """What a task was submitted with, beyond its function and arguments.

    Immutable, so tasks submitted alike share one (most share their queue's
    defaults): the handle holds one reference instead of four fields.
    """

    name: str | None
    priority: int
    timeout: float | None
    retry: RetryPolicy | None


class TaskHandle(Generic[T]):
    """The handle of one submitted task, and the queue's record of it.

    Handles are created by `WorkQueue.submit` and friends, never directly.
    A handle keeps its task's final result even after the queue has
    forgotten the task's record.

    Attributes:
        status: The task's current `TaskStatus`.
        attempts: How many times the task has started running.
    """

    # One object per task, so the hot path allocates little: the handle *is* the record.
    __slots__ = (
        "_args",
        "_cancel_requested",
        "_created",
        "_due",
        "_errors",
        "_event",
        "_finished",
        "_fn",
        "_last_error",
        "_mark",
        "_options",
        "_queue",
        "_queued",
        "_result",
        "_scope",
        "_seq",
        "_started",
        "attempts",
        "status",
    )

    status: TaskStatus
    attempts: int

    def __init__(
        self,
        queue: WorkQueue,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        options: TaskOptions,
        created: float,
    ) -> None:
        self._queue = queue
        self._seq = 0  # the id, set when the queue registers the task
        self._mark = 0  # the queue's counter when the task entered its status
        self._fn: Callable[..., Awaitable[T]] = fn
        self._args: tuple[Any, ...] = args
        self._options = options
        self._created = created
        self._due: float | None = None
        self._queued = created  # when it last became queued (submit, or due)
        self._started: float | None = None
        self._finished: float | None = None
        self.status = QUEUED
        self.attempts = 0
        self._result: T | None = None
        self._last_error: BaseException | None = None
        self._errors: tuple[BaseException, ...] = ()
        self._event: trio.Event | None = None
        self._scope: trio.CancelScope | None = None
        self._cancel_requested = False

    def __repr__(self) -> str:
        return f"<TaskHandle id={self.id} name={self.name!r} status={self.status.value}>"

    @property
    def id(self) -> str:
        """The task's id, unique within its queue (a string)."""
        return str(self._seq)

    @property
    def name(self) -> str:
        """The task's label (see `TaskInfo.name`)."""
        name = self._options.name
        return task_name(self._fn) if name is None else name

    @property
    def done(self) -> bool:
        """Whether the task has reached a terminal status."""
        return self._finished is not None

    def info(self) -> TaskInfo:
        """A `TaskInfo` snapshot of this task. Not a checkpoint."""
        return self._info_from(self._state())

    def _state(self) -> _State:
        """What changes over a task's life, cheaply copied (events keep it)."""
        return (
            self.status,
            self.attempts,
            self._last_error,
            self._errors,
            self._due,
            self._queued,
            self._started,
            self._finished,
        )

    def _info_from(self, state: _State) -> TaskInfo:
        options = self._options
        retry = options.retry
        return info_from_state(
            self.id,
            self.name,
            options.priority,
            1 if retry is None else retry.max_attempts,
            options.timeout,
            self._created,
            state,
            self._queue._wall_time,
        )

    def cancel(self) -> bool:
        """Cancel the task. Synchronous; not a checkpoint.

        A queued or scheduled task is removed and never runs; a running task
        is cancelled through its own cancel scope (it ends ``cancelled`` once
        it unwinds, unless it finishes first).

        Returns:
            ``True`` if the task had not finished, ``False`` if it had (and
            nothing changed).
        """
        return self._queue._cancel_task(self)

    async def wait(self) -> outcome.Outcome[T]:
        """Wait until the task finishes and return the outcome of its final attempt.

        Always a checkpoint. A cancelled task's outcome is an
        ``outcome.Error`` holding `TaskCancelled`. Each call returns a fresh
        outcome, so it can be unwrapped.
        """
        if self._finished is None:
            if self._event is None:
                self._event = trio.Event()
            await self._event.wait()
        else:
            await trio.lowlevel.checkpoint()
        return self._outcome()

    async def result(self) -> T:
        """Wait until the task finishes and return its value.

        Always a checkpoint.

        Raises:
            TaskCancelled: If the task was cancelled.
            Exception: The task's own exception if it failed (`TaskTimeout`
                if its last attempt timed out).
        """
        return (await self.wait()).unwrap()

    def _outcome(self) -> outcome.Outcome[T]:
        if self.status is COMPLETED:
            return outcome.Value(self._result)  # type: ignore[arg-type]
        if self.status is FAILED:
            assert self._last_error is not None
            return outcome.Error(self._last_error)
        error = TaskCancelled(f"task {self.id} ({self.name}) was cancelled")
        return outcome.Error(error)
