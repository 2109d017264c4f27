# SPDX-License-Identifier: MIT
"""OpenTelemetry tracing for a `~trio_workq.WorkQueue`: ``pip install 'trio_workq[otel]'``.

`instrument` adds a listener that wraps every attempt of every task in a span.
The span starts in the worker right before the task's function runs and is
made the current span there, so spans the task creates itself become its
children; it ends when the attempt ends (completed, failed, retrying or
cancelled). Spans carry the task's id, name and attempt number, and the
queue's name; a failed attempt records its exception and an error status.

Only the OpenTelemetry API is needed; configure an SDK (exporters, sampling)
as usual, or pass a ``tracer_provider``.
"""

from __future__ import annotations

import logging
from types import TracebackType

from opentelemetry import context as otel_context
from opentelemetry import trace

from ._core.info import TaskRecord
from ._core.status import EventKind
from ._memory.queue import WorkQueue
from ._runtime.events import Hook

__all__ = ["TracingInstrumentation", "instrument"]

_logger = logging.getLogger("trio_workq.otel")

_ENDS_ATTEMPT = frozenset(
    {EventKind.COMPLETED, EventKind.FAILED, EventKind.RETRYING, EventKind.CANCELLED}
)


class TracingInstrumentation:
    """What `instrument` returns; `uninstrument` (or leaving ``with``) stops tracing.

    Attributes:
        queue_name: The value of the ``trio_workq.queue`` span attribute.
    """

    def __init__(self, queue: WorkQueue, tracer: trace.Tracer, queue_name: str) -> None:
        self.queue_name = queue_name
        self._queue: WorkQueue | None = queue
        self._tracer = tracer
        self._wall_offset = queue.wall_time(0.0).timestamp()  # trio time -> Unix time
        # Attempts in flight: their span and the context token to restore.
        self._open: dict[TaskRecord, tuple[trace.Span, object]] = {}
        self._tracing = True
        self._hook: Hook = self._on_change
        queue.add_hook(self._hook)

    def uninstrument(self) -> None:
        """Stop tracing new attempts. Not a checkpoint.

        Attempts already running keep their span until they end (their
        worker's context must be restored then), after which the listener
        leaves the queue. Calling it again does nothing.
        """
        self._tracing = False
        self._leave_when_idle()

    def _leave_when_idle(self) -> None:
        if not self._tracing and not self._open and self._queue is not None:
            self._queue.remove_hook(self._hook)
            self._queue = None

    def __enter__(self) -> TracingInstrumentation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.uninstrument()

    def _on_change(self, kind: EventKind, task: TaskRecord, when: float, was_running: bool) -> None:
        if kind is EventKind.STARTED:
            if self._tracing:
                self._start(task, when)
        elif kind in _ENDS_ATTEMPT and was_running:
            self._end(kind, task, when)
            if not self._tracing:
                self._leave_when_idle()

    def _start(self, task: TaskRecord, when: float) -> None:
        name = task.name
        span = self._tracer.start_span(
            f"trio_workq.task {name}",
            kind=trace.SpanKind.CONSUMER,
            start_time=self._nanoseconds(when),
            attributes={
                "trio_workq.queue": self.queue_name,
                "trio_workq.task.id": task.id,
                "trio_workq.task.name": name,
                "trio_workq.task.attempt": task.attempts,
            },
        )
        # The STARTED event is delivered in the worker, right before the task's
        # function runs there: attaching here makes the span current for it.
        token = otel_context.attach(trace.set_span_in_context(span))
        self._open[task] = (span, token)

    def _end(self, kind: EventKind, task: TaskRecord, when: float) -> None:
        opened = self._open.pop(task, None)
        if opened is None:  # started before instrument() was called
            return
        span, token = opened
        # Every attempt-ending event is delivered in the same worker task as
        # its STARTED event, so the context token belongs to this context.
        otel_context.detach(token)  # type: ignore[arg-type]
        span.set_attribute("trio_workq.task.status", kind.value)
        error = task.last_error if kind is not EventKind.COMPLETED else None
        if error is not None and kind is not EventKind.CANCELLED:
            span.record_exception(error)
            span.set_status(trace.Status(trace.StatusCode.ERROR, repr(error)))
        elif kind is EventKind.COMPLETED:
            span.set_status(trace.Status(trace.StatusCode.OK))
        span.end(end_time=self._nanoseconds(when))

    def _nanoseconds(self, trio_time: float) -> int:
        return int((self._wall_offset + trio_time) * 1e9)


def instrument(
    queue: WorkQueue,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    queue_name: str = "default",
) -> TracingInstrumentation:
    """Trace every attempt of every task of *queue* as an OpenTelemetry span. Not a checkpoint.

    Args:
        queue: An open `~trio_workq.WorkQueue`.
        tracer_provider: Where spans go; the global provider by default.
        queue_name: The ``trio_workq.queue`` attribute of every span.

    Raises:
        TypeError: If *queue* is not a `~trio_workq.WorkQueue` or
            *queue_name* is not a string.
    """
    if not isinstance(queue, WorkQueue):
        raise TypeError(f"queue must be a WorkQueue, not {type(queue).__name__}")
    if not isinstance(queue_name, str):
        raise TypeError(f"queue_name must be a str, not {type(queue_name).__name__}")
    tracer = trace.get_tracer("trio_workq", tracer_provider=tracer_provider)
    return TracingInstrumentation(queue, tracer, queue_name)
