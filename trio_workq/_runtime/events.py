# SPDX-License-Identifier: MIT
"""Lifecycle events, the ``trio_workq`` logger, and the running task's context."""

from __future__ import annotations

import enum
import inspect
import logging
from collections.abc import AsyncGenerator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any, TypeVar

import trio

from .._core.info import NO_HEADERS, TaskInfo, TaskRecord, TaskSnapshot
from .._core.status import EventKind, TaskStatus
from .._core.validate import check_count

_H = TypeVar("_H")

#: The library's logger: failures at WARNING, retries at INFO, lifecycle at DEBUG.
logger = logging.getLogger("trio_workq")


class TaskEvent:
    """One status change of one task, as delivered to listeners and event streams.

    The cheap attributes are set when the event happens; `info` (always the
    state at that moment) and `timestamp` are built on first access, so a
    listener that only counts events pays little for them.

    Attributes:
        kind: What happened (an `EventKind`).
        time: When it happened, in trio time (`trio.current_time`).
    """

    # Built for every status change while anyone listens: keep it to a few stores.
    __slots__ = ("_info", "_state", "_task", "_was_running", "kind", "time")

    kind: EventKind
    time: float

    def __init__(self, kind: EventKind, task: TaskRecord, time: float, was_running: bool) -> None:
        self.kind = kind
        self.time = time
        self._task = task
        self._state: TaskSnapshot = task.snapshot()
        self._was_running = was_running
        self._info: TaskInfo | None = None

    @property
    def task_id(self) -> str:
        """The task's id."""
        return self._task.id

    @property
    def name(self) -> str:
        """The task's name."""
        return self._task.name

    @property
    def attempt(self) -> int:
        """The task's attempt count (the current attempt while running)."""
        return self._state.attempts

    @property
    def queue_wait(self) -> float | None:
        """For ``started`` events, seconds from becoming queued to starting; else ``None``."""
        if self.kind is EventKind.STARTED:
            return self.time - self._state.queued
        return None

    @property
    def run_duration(self) -> float | None:
        """Seconds the attempt ran, for events that end one; else ``None``.

        Those are ``completed``, ``failed``, ``retrying``, and ``cancelled``
        of a running task.
        """
        started = self._state.started
        if self._was_running and started is not None:
            return self.time - started
        return None

    @property
    def error(self) -> BaseException | None:
        """For ``failed`` and ``retrying`` events, the attempt's exception; else ``None``."""
        if self.kind is EventKind.FAILED or self.kind is EventKind.RETRYING:
            return self._state.last_error
        return None

    def __repr__(self) -> str:
        return f"<TaskEvent {self.kind.value} task={self.task_id} name={self.name!r}>"

    @property
    def info(self) -> TaskInfo:
        """The task's `TaskInfo` right after the change."""
        if self._info is None:
            self._info = self._task.info_from(self._state)
        return self._info

    @property
    def timestamp(self) -> datetime:
        """When it happened (aware UTC)."""
        return self._task.wall_time(self.time)


# Workers set it right before running a task (each worker has its own context).
current_task_var: ContextVar[TaskRecord] = ContextVar("trio_workq_current_task")


def set_current(task: TaskRecord) -> None:
    """Record the task a worker is about to run."""
    current_task_var.set(task)


def running_in(queue: object) -> bool:
    """Whether the caller is a running task of *queue*, or a child of one. Not a checkpoint."""
    task = current_task_var.get(None)
    return task is not None and task.queue is queue and task.status is TaskStatus.RUNNING


def current_task() -> TaskInfo:
    """The `TaskInfo` of the task running this code, read via contextvars.

    Child tasks a task starts inherit it. Not a checkpoint.

    Raises:
        RuntimeError: If called outside a task run by a `WorkQueue`.
    """
    try:
        task = current_task_var.get()
    except LookupError:
        raise RuntimeError(
            "trio_workq.current_task() was called outside a task run by a WorkQueue"
        ) from None
    return task.info_nowait()


class EventStream:
    """Lifecycle events as an async iterator; from `WorkQueue.subscribe`.

    Backed by a bounded buffer: a consumer that falls behind never slows the
    queue down. Events that find the buffer full are dropped and counted in
    `dropped`. Iteration ends when the queue has stopped and the buffer is
    empty.

    Attributes:
        dropped: How many events were dropped because the buffer was full.
    """

    dropped: int

    def __init__(self, max_buffer_size: int) -> None:
        self._send, self._receive = trio.open_memory_channel[TaskEvent](max_buffer_size)
        self.dropped = 0

    def _deliver(self, event: TaskEvent) -> None:
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
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None


#: An internal observer of status changes: ``hook(kind, task, when, was_running)``.
Hook = Callable[[EventKind, TaskRecord, float, bool], None]

#: An internal source of headers for new tasks: ``hook()`` is called in the
#: submitting task and returns a mapping of ``str`` to ``str`` (or ``None``).
SubmitHook = Callable[[], Mapping[str, str] | None]


class AttemptSignal(enum.Enum):
    """What an attempt hook is told about an attempt a worker of this process started.

    Internal, but stable for trio_workq's integrations (see
    `EventSource.add_attempt_hook`).
    """

    #: The task's function returned or raised (or was cancelled): sent in the
    #: worker's own task, right after, before the outcome is written.
    RAN = "ran"
    #: Shutdown interrupted the attempt and gave the task back to the store
    #: (``queued`` again, this attempt not counted): no ending event follows.
    GIVEN_BACK = "given_back"
    #: The lease on the attempt was lost (another process may run the task):
    #: nothing is recorded for it, and no ending event follows.
    LOST = "lost"
    #: The attempt's outcome could not be written (the store kept failing, or
    #: refused it): no ending event follows; the lease expires and the task
    #: is recovered as if its worker had died.
    UNRECORDED = "unrecorded"


#: An internal observer of attempts: ``hook(signal, task, when)``, *when* a trio time.
AttemptHook = Callable[[AttemptSignal, TaskRecord, float], None]


class EventSource:
    """What a queue is observed through: listeners, event streams and internal hooks.

    Hooks are the library's own integrations, called with the bare facts
    and no event object. Public listeners get a `TaskEvent`, built by one
    hook while any listener exists. Both are tuples replaced on change, so
    emitting iterates them without copying. A queue calls `_init_events`
    in its ``__init__``, sets ``_wall_offset`` there, and sets ``_stopped``
    when it has stopped.
    """

    _hooks: tuple[Hook, ...]
    _submit_hooks: tuple[SubmitHook, ...]
    _attempt_hooks: tuple[AttemptHook, ...]
    _listeners: tuple[Callable[[TaskEvent], None], ...]
    _streams: list[EventStream]
    _stopped: trio.Event
    _wall_offset: float  # Unix time minus trio time, fixed when the queue opens

    def _init_events(self) -> None:
        self._hooks = ()
        self._submit_hooks = ()
        self._attempt_hooks = ()
        self._listeners = ()
        self._streams = []
        if logger.isEnabledFor(logging.DEBUG):
            # Lifecycle logging is a listener, so a queue without any pays nothing for it.
            self.add_listener(_log_event)

    def add_listener(self, listener: Callable[[TaskEvent], None]) -> None:
        """Call ``listener(event)`` synchronously on every `TaskEvent`. Not a checkpoint.

        A listener must be quick and must not block; one that raises is
        logged and otherwise ignored. It runs synchronously, so it acts on
        the queue through the synchronous forms (``cancel_nowait``,
        ``submit_nowait``, ...); to await, `subscribe` in a task instead.

        Raises:
            TypeError: If *listener* is not callable, or is an async function.
        """
        if not callable(listener):
            raise TypeError(f"listener must be callable, got {listener!r}")
        if inspect.iscoroutinefunction(listener) or inspect.iscoroutinefunction(
            getattr(listener, "__call__", None)  # noqa: B004 - an async __call__ method
        ):
            raise TypeError(
                f"listeners are called synchronously, and {listener!r} is an async function: "
                "use `async with queue.subscribe() as events` in a task to await per event"
            )
        if not self._listeners:
            self.add_hook(self._deliver_event)
        self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: Callable[[TaskEvent], None]) -> None:
        """Stop calling *listener*. Not a checkpoint.

        Raises:
            ValueError: If it was not added.
        """
        self._listeners = _without(self._listeners, listener, "a listener")
        if not self._listeners:
            self.remove_hook(self._deliver_event)

    @asynccontextmanager
    async def subscribe(self, max_buffer_size: int = 1000) -> AsyncGenerator[EventStream, None]:
        """Receive lifecycle events as an async iterator, inside an ``async with`` block.

        The stream buffers up to *max_buffer_size* events; when a slow
        consumer lets it fill up, newer events are dropped and counted in
        `EventStream.dropped` (the queue never waits for a consumer).
        Entering is a checkpoint.
        """
        size = int(check_count("max_buffer_size", max_buffer_size, minimum=1, allow_inf=False))
        await trio.lowlevel.checkpoint()
        # The source feeds its streams through their private ends (same module).
        stream = EventStream(size)
        self.add_listener(stream._deliver)  # pyright: ignore[reportPrivateUsage]
        self._streams.append(stream)
        if self._stopped.is_set():
            stream._close()  # pyright: ignore[reportPrivateUsage]
        try:
            yield stream
        finally:
            self.remove_listener(stream._deliver)  # pyright: ignore[reportPrivateUsage]
            self._streams.remove(stream)
            stream._close()  # pyright: ignore[reportPrivateUsage]

    def wall_time(self, trio_time: float) -> datetime:
        """The wall-clock time (aware UTC) of a time on this queue's trio clock.

        Converts `TaskEvent.time`, or any `trio.current_time` of the run
        that owns the queue, with the offset fixed when the queue opened.
        Not a checkpoint.
        """
        return datetime.fromtimestamp(self._wall_offset + trio_time, timezone.utc)

    def add_hook(self, hook: Hook) -> None:
        """Call ``hook(kind, task, when, was_running)`` on every status change. Not a checkpoint.

        Internal, but stable for trio_workq's own integrations
        (`trio_workq.prometheus`, `trio_workq.otel`, the dashboard):
        applications should use `add_listener`, which gets a `TaskEvent`.
        A hook is called synchronously, during the transition, with the
        event's kind, the task's record, the trio time of the change, and
        whether the change ended a running attempt; no event object is
        built for it. The record's fields are current: hooks read ``id``,
        ``name``, ``status``, ``attempts``, ``last_error``, ``queued_time``
        and ``started_time`` (trio times), which both queues' records
        offer. A hook must be quick and must not block; one that raises is
        logged and otherwise ignored.
        """
        self._hooks = (*self._hooks, hook)

    def remove_hook(self, hook: Hook) -> None:
        """Stop calling *hook*. Internal, like `add_hook`. Not a checkpoint.

        Raises:
            ValueError: If it was not added.
        """
        self._hooks = _without(self._hooks, hook, "a hook")

    def add_submit_hook(self, hook: SubmitHook) -> None:
        """Store what ``hook()`` returns with every task submitted from now on. Not a checkpoint.

        Internal, but stable for trio_workq's own integrations
        (`trio_workq.otel` stores the submitter's trace context this way).
        Every ``submit``, ``submit_many`` and ``schedule`` (and their
        ``_nowait`` forms) calls each submit hook synchronously, in the
        submitting task (``submit_many`` may call it once for all its
        tasks), and merges the
        mappings they return (a later hook's key wins) into the new tasks'
        headers (`TaskRecord.headers`): a durable queue stores them with
        the task, so the process that runs it reads them; the in-memory
        queue keeps them on the task's record. A hook must be quick and
        must not block; one that raises, or returns anything but ``None``
        or a mapping of ``str`` to ``str``, is logged and its result left
        out.
        """
        if not callable(hook):
            raise TypeError(f"hook must be callable, got {hook!r}")
        self._submit_hooks = (*self._submit_hooks, hook)

    def remove_submit_hook(self, hook: SubmitHook) -> None:
        """Stop calling *hook*. Internal, like `add_submit_hook`. Not a checkpoint.

        Raises:
            ValueError: If it was not added.
        """
        self._submit_hooks = _without(self._submit_hooks, hook, "a submit hook")

    def _submit_headers(self) -> Mapping[str, str]:
        """The headers of a task submitted now: the submit hooks' mappings, merged."""
        merged: dict[str, str] | None = None
        for hook in self._submit_hooks:
            try:
                headers = hook()
                if headers is None:
                    continue
                if not isinstance(headers, Mapping) or not all(
                    isinstance(key, str) and isinstance(value, str)
                    for key, value in headers.items()
                ):
                    raise TypeError(
                        "a submit hook must return a mapping of str to str or None,"
                        f" not {headers!r:.80}"
                    )
            except Exception:
                log_listener_error(hook)
                continue
            if headers:
                if merged is None:
                    merged = {}
                merged.update(headers)
        return NO_HEADERS if merged is None else merged

    def add_attempt_hook(self, hook: AttemptHook) -> None:
        """Call ``hook(signal, task, when)`` on the `AttemptSignal` of attempts. Not a checkpoint.

        Internal, but stable for trio_workq's own integrations, like
        `add_hook`: for a hook that follows an attempt from its ``started``
        event, these say where the worker's part ends (`AttemptSignal.RAN`,
        in the worker's own task, while an ending event may be delivered
        from another task) and that an attempt ended with no ending event
        (given back, lease lost, outcome not written). Only a durable queue
        sends them, for the attempts its workers started; the in-memory
        queue delivers every ending event in the worker, and never drops an
        attempt, so it sends none. Called synchronously; a hook that raises
        is logged and otherwise ignored.
        """
        if not callable(hook):
            raise TypeError(f"hook must be callable, got {hook!r}")
        self._attempt_hooks = (*self._attempt_hooks, hook)

    def remove_attempt_hook(self, hook: AttemptHook) -> None:
        """Stop calling *hook*. Internal, like `add_attempt_hook`. Not a checkpoint.

        Raises:
            ValueError: If it was not added.
        """
        self._attempt_hooks = _without(self._attempt_hooks, hook, "an attempt hook")

    def _signal_attempt(self, signal: AttemptSignal, task: TaskRecord, when: float) -> None:
        for hook in self._attempt_hooks:
            try:
                hook(signal, task, when)
            except Exception:
                log_listener_error(hook)

    def _call_hooks(
        self, kind: EventKind, task: TaskRecord, when: float, was_running: bool
    ) -> None:
        for hook in self._hooks:
            try:
                hook(kind, task, when, was_running)
            except Exception:
                log_listener_error(hook)

    def _deliver_event(
        self, kind: EventKind, task: TaskRecord, when: float, was_running: bool
    ) -> None:
        """The hook of the public listeners: one `TaskEvent` for all of them."""
        event = TaskEvent(kind, task, when, was_running)
        for listener in self._listeners:
            try:
                returned = listener(event)
            except Exception:
                log_listener_error(listener)
            else:
                if returned is not None and inspect.iscoroutine(returned):
                    _refuse_coroutine(listener, returned)

    def _close_streams(self) -> None:
        for stream in self._streams:
            # Consumers' iteration ends once they have read the rest.
            stream._close()  # pyright: ignore[reportPrivateUsage]


def _without(hooks: tuple[_H, ...], hook: _H, what: str) -> tuple[_H, ...]:
    try:
        index = hooks.index(hook)
    except ValueError:
        raise ValueError(f"{hook!r} is not {what} of this queue") from None
    return hooks[:index] + hooks[index + 1 :]


def log_listener_error(listener: object) -> None:
    """A listener or hook raised: log it; the queue carries on."""
    logger.exception("event listener %r raised; the queue carries on", listener)


def _refuse_coroutine(listener: object, coroutine: Coroutine[Any, Any, Any]) -> None:
    """A listener returned a coroutine (``lambda e: queue.cancel(e.task_id)``): it never runs."""
    coroutine.close()  # closed here, so no "never awaited" warning hides the cause
    logger.error(
        "event listener %r returned a coroutine, which does not run: listeners are "
        "synchronous; call the _nowait forms (e.g. queue.cancel_nowait) or use subscribe()",
        listener,
    )


def _log_event(event: TaskEvent) -> None:
    logger.debug("task %s (%s) %s", event.task_id, event.name, event.kind)
