# SPDX-License-Identifier: MIT
"""`MemoryTaskHandle`: an in-memory task's public handle, which is also the queue's record of it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import outcome
import trio

from .._core.errors import TaskCancelled
from .._core.info import (
    NO_HEADERS,
    TaskInfo,
    TaskOptions,
    TaskSnapshot,
    info_from_state,
    new_snapshot,
    task_name,
)
from .._core.status import COMPLETED, FAILED, QUEUED, TaskStatus

if TYPE_CHECKING:
    from .queue import WorkQueue

T = TypeVar("T")


class MemoryTaskHandle(Generic[T]):
    """The handle of one task of an in-memory `WorkQueue`, and the queue's record of it.

    It implements `TaskHandle`, and adds synchronous forms
    (`cancel_nowait`, `info_nowait`) and the task's live state.
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
        "_headers",
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
    _headers: Mapping[str, str]  # set only when there are submit hooks (see `headers`)

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
        # _headers is set only by a queue with submit hooks: the hot path skips it.

    def __repr__(self) -> str:
        return f"<MemoryTaskHandle id={self.id} name={self.name!r} status={self.status.value}>"

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

    # The record's fields that hooks and the dashboard read (see `WorkQueue.add_hook`):
    # internal, but stable for trio_workq's integrations. The queue uses the slots.

    @property
    def args(self) -> tuple[Any, ...]:
        """The positional arguments the task was submitted with (internal, stable)."""
        return self._args

    @property
    def headers(self) -> Mapping[str, str]:
        """What the queue's submit hooks gave when it was submitted (internal, stable)."""
        headers: Mapping[str, str] = getattr(self, "_headers", NO_HEADERS)
        return headers

    @property
    def last_error(self) -> BaseException | None:
        """The exception of the latest failed attempt, or ``None`` (internal, stable)."""
        return self._last_error

    @property
    def queued_time(self) -> float:
        """When the task last became queued (submitted, or due), in trio time (internal, stable)."""
        return self._queued

    @property
    def started_time(self) -> float | None:
        """When the latest attempt started, in trio time, or ``None`` (internal, stable)."""
        return self._started

    async def info(self) -> TaskInfo:
        """A `TaskInfo` snapshot of this task. Always a checkpoint; see `info_nowait`."""
        await trio.lowlevel.checkpoint()
        return self.info_from(self.snapshot())

    def info_nowait(self) -> TaskInfo:
        """A `TaskInfo` snapshot of this task. Not a checkpoint."""
        return self.info_from(self.snapshot())

    # The `TaskRecord` interface (internal but stable), read by events and hooks.

    @property
    def queue(self) -> WorkQueue:
        """The queue that runs this task."""
        return self._queue

    def snapshot(self) -> TaskSnapshot:
        """What changes over the task's life, now (trio times; events keep it). Not a checkpoint."""
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
        """The `TaskInfo` of this task as of *snapshot*. Not a checkpoint."""
        options = self._options
        retry = options.retry
        return info_from_state(
            self.id,
            self.name,
            options.priority,
            1 if retry is None else retry.max_attempts,
            options.timeout,
            self._created,
            snapshot,
            self._queue.wall_time,
        )

    def wall_time(self, trio_time: float) -> datetime:
        """A trio time of this task's queue as an aware UTC datetime. Not a checkpoint."""
        return self._queue.wall_time(trio_time)

    async def cancel(self) -> bool:
        """Cancel the task. Always a checkpoint; `cancel_nowait` is the synchronous form.

        Returns:
            ``True`` if the task had not finished, ``False`` if it had.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        cancelled = self.cancel_nowait()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return cancelled

    def cancel_nowait(self) -> bool:
        """Cancel the task. Not a checkpoint.

        A queued or scheduled task is removed and never runs; a running task
        is cancelled through its own cancel scope (it ends ``cancelled`` once
        it unwinds, unless it finishes first).

        Returns:
            ``True`` if the task had not finished, ``False`` if it had (and
            nothing changed).
        """
        # The handle is the queue's record: the queue's private method does it.
        return self._queue._cancel_task(self)  # pyright: ignore[reportPrivateUsage]

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
