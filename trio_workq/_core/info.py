# SPDX-License-Identifier: MIT
"""What is known of a task: its options, its snapshot (`TaskInfo`), pages of them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol, cast

import attrs

from .status import SCHEDULED, TaskStatus

if TYPE_CHECKING:
    from .retry import RetryPolicy


#: The headers of a task submitted without any (shared: it cannot be changed).
NO_HEADERS: Final[Mapping[str, str]] = MappingProxyType({})


class TaskSnapshot(NamedTuple):
    """What changes over a task's life, as of one moment (trio times).

    Cheap to take (a tuple: events keep one each); `TaskRecord.info_from`
    turns it into a `TaskInfo`.
    """

    status: TaskStatus
    attempts: int
    last_error: BaseException | None
    errors: tuple[BaseException, ...]
    due: float | None
    queued: float
    started: float | None
    finished: float | None


#: Builds a `TaskSnapshot` from a tuple of its fields without NamedTuple's
#: keyword handling (about half the cost): ``new_snapshot(TaskSnapshot, (...))``.
new_snapshot: Final = cast(
    "Callable[[type[TaskSnapshot], tuple[Any, ...]], TaskSnapshot]",
    tuple.__new__,  # pyright: ignore[reportUnknownMemberType] - typed by the cast
)


class TaskRecord(Protocol):
    """What the runtime reads of a task: hooks, events, `current_task`.

    Both a `MemoryTaskHandle` (in memory) and the durable queue's record of an
    attempt satisfy it. Internal but stable: integrations built on hooks
    (metrics, tracing) may rely on it.
    """

    @property
    def id(self) -> str:
        """The task's id."""
        ...

    @property
    def name(self) -> str:
        """The task's name."""
        ...

    @property
    def status(self) -> TaskStatus:
        """Its current status."""
        ...

    @property
    def attempts(self) -> int:
        """Attempts started so far."""
        ...

    @property
    def queue(self) -> object:
        """The queue the task belongs to."""
        ...

    @property
    def last_error(self) -> BaseException | None:
        """The exception of the latest failed attempt, or ``None``."""
        ...

    @property
    def queued_time(self) -> float:
        """When the task last became queued (submitted, or due), in trio time."""
        ...

    @property
    def started_time(self) -> float | None:
        """When the latest attempt started, in trio time, or ``None``."""
        ...

    def snapshot(self) -> TaskSnapshot:
        """What changes over its life, now. Not a checkpoint."""
        ...

    def info_from(self, snapshot: TaskSnapshot) -> TaskInfo:
        """Its `TaskInfo` as of *snapshot*. Not a checkpoint."""
        ...

    def info_nowait(self) -> TaskInfo:
        """Its `TaskInfo` now. Not a checkpoint."""
        ...

    def wall_time(self, trio_time: float) -> datetime:
        """A trio time of this task's queue as an aware UTC datetime."""
        ...

    @property
    def headers(self) -> Mapping[str, str]:
        """What the queue's submit hooks gave when the task was submitted (empty if nothing).

        ``str`` to ``str``, such as the trace context ``traceparent``; stored
        with a durable task, so every process that runs it reads them.
        """
        ...


@attrs.frozen
class TaskInfo:
    """A snapshot of one task, taken by `WorkQueue.get_info` or `TaskHandle.info`.

    Attributes:
        id: The task's id, unique within its queue.
        name: A label: the ``name`` given at submit, else the function's
            registered name (`trio_workq.task`), else its ``module:qualname``.
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
    state: TaskSnapshot,
    wall: Callable[[float], datetime],
) -> TaskInfo:
    """A `TaskInfo` from a task's fixed fields and a `TaskSnapshot` (trio times)."""
    status = state.status
    due, started, finished = state.due, state.started, state.finished
    return TaskInfo(
        id=task_id,
        name=name,
        status=status,
        priority=priority,
        attempts=state.attempts,
        max_attempts=max_attempts,
        timeout=timeout,
        last_error=state.last_error,
        errors=state.errors,
        created_at=wall(created),
        due_at=None if due is None else wall(due),
        queued_at=None if status is SCHEDULED else wall(state.queued),
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


#: How many errors of earlier attempts a task keeps.
MAX_ERROR_HISTORY: Final = 10

#: The largest page `WorkQueue.list_tasks` returns.
MAX_PAGE_SIZE: Final = 1000


@attrs.frozen
class TaskPage:
    """One page of `WorkQueue.list_tasks`.

    Attributes:
        tasks: Snapshots of the tasks, newest first.
        next_cursor: Pass it as ``cursor=`` for the next (older) page;
            ``None`` when there is nothing older.
    """

    tasks: tuple[TaskInfo, ...]
    next_cursor: str | None
