# SPDX-License-Identifier: MIT
"""OpenTelemetry tracing for any trio_workq queue: ``pip install 'trio_workq[otel]'``.

`instrument` works on any `~trio_workq.TaskQueue`: a `~trio_workq.WorkQueue`
and a `~trio_workq.DurableWorkQueue` alike. It does two things:

* **At submit**, it stores the submitter's trace context with each new task:
  a submit hook injects the current context as headers (``traceparent``,
  ``tracestate`` and ``baggage``), through the global propagator
  (`opentelemetry.propagate.inject`), so a propagator configured by the
  application applies. A durable queue stores them in the task's row, so
  every worker process reads them; the in-memory queue keeps them on the
  task's record.
* **Around each attempt**, in the worker, a span named
  ``trio_workq.task <name>`` (kind ``CONSUMER``) starts right before the
  task's function runs and is the current span there, so spans the task
  creates become its children; it ends when the attempt ends (completed,
  failed, retrying or cancelled; on a durable queue also given back at
  shutdown, lease lost, or outcome not recorded). Spans carry the task's
  id, name and attempt number and the queue's name; a failed attempt
  records its exception and an error status.

Each attempt span is the root of a trace of its own, with a *link* to the
span that was current when the task was submitted (none if there was none,
or if the stored headers cannot be read). Not its child: an attempt may
start long after the submit (a schedule, a retry backoff, a queue that
waited days), in another process, and a task may run many attempts; as
children they would stretch the submitting trace far beyond the request
that submitted it. The OpenTelemetry messaging conventions make the link
to the creation context the rule for consumer spans, the parent optional.
Baggage stored at submit is current while the task runs.

Only the OpenTelemetry API is needed; configure an SDK (exporters, sampling)
as usual, or pass a ``tracer_provider``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import TracebackType

import trio
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from ._core.info import TaskRecord
from ._core.status import EventKind
from ._durable.queue import DurableWorkQueue
from ._memory.queue import WorkQueue
from ._runtime.api import TaskQueue
from ._runtime.events import AttemptHook, AttemptSignal, Hook, SubmitHook

__all__ = ["TracingInstrumentation", "instrument"]

_logger = logging.getLogger("trio_workq.otel")

_ENDS_ATTEMPT = frozenset(
    {EventKind.COMPLETED, EventKind.FAILED, EventKind.RETRYING, EventKind.CANCELLED}
)
# How an attempt ended that no ending event announces: its status attribute, and
# the error status description (None: not an error, the task runs again).
_DROPPED: dict[AttemptSignal, tuple[str, str | None]] = {
    AttemptSignal.GIVEN_BACK: ("given_back", None),
    AttemptSignal.LOST: ("lease_lost", "the lease was lost; another worker may run the task"),
    AttemptSignal.UNRECORDED: ("unrecorded", "the outcome of the attempt could not be recorded"),
}


class _Open:
    """An attempt's span while it runs, and the worker context to restore."""

    __slots__ = ("span", "task", "token")

    def __init__(self, span: trace.Span, token: object, task: trio.lowlevel.Task) -> None:
        self.span = span
        self.token: object | None = token  # None once detached
        self.task = task  # the worker's trio task, whose context the token belongs to


class TracingInstrumentation:
    """What `instrument` returns; `uninstrument` (or leaving ``with``) stops tracing.

    Attributes:
        queue_name: The value of the ``trio_workq.queue`` span attribute.
    """

    def __init__(
        self, queue: WorkQueue | DurableWorkQueue, tracer: trace.Tracer, queue_name: str
    ) -> None:
        self.queue_name = queue_name
        self._queue: WorkQueue | DurableWorkQueue | None = queue
        self._tracer = tracer
        self._wall_offset = queue.wall_time(0.0).timestamp()  # trio time -> Unix time
        # Attempts in flight, by their task record.
        self._open: dict[TaskRecord, _Open] = {}
        self._tracing = True
        self._hook: Hook = self._on_change
        self._attempt_hook: AttemptHook = self._on_attempt
        self._submit_hook: SubmitHook | None = _inject
        queue.add_hook(self._hook)
        queue.add_attempt_hook(self._attempt_hook)
        queue.add_submit_hook(_inject)

    def uninstrument(self) -> None:
        """Stop tracing new attempts and storing trace context with new tasks. Not a checkpoint.

        Attempts already running keep their span until they end (their
        worker's context must be restored then), after which the hooks
        leave the queue. Calling it again does nothing.
        """
        self._tracing = False
        if self._submit_hook is not None and self._queue is not None:
            self._queue.remove_submit_hook(self._submit_hook)
            self._submit_hook = None
        self._leave_when_idle()

    def _leave_when_idle(self) -> None:
        if not self._tracing and not self._open and self._queue is not None:
            self._queue.remove_hook(self._hook)
            self._queue.remove_attempt_hook(self._attempt_hook)
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

    # ------------------------------------------------------------- the hooks

    def _on_change(self, kind: EventKind, task: TaskRecord, when: float, was_running: bool) -> None:
        if kind is EventKind.STARTED:
            if self._tracing:
                self._start(task, when)
        elif kind in _ENDS_ATTEMPT and was_running:
            opened = self._open.pop(task, None)
            if opened is not None:  # else started before instrument() was called
                self._end(opened, kind, task, when)

    def _on_attempt(self, signal: AttemptSignal, task: TaskRecord, when: float) -> None:
        if signal is AttemptSignal.RAN:
            opened = self._open.get(task)
            if opened is not None:
                _restore(opened)
            return
        opened = self._open.pop(task, None)
        if opened is None:
            return
        status, error = _DROPPED[signal]
        span = opened.span
        _restore(opened)
        span.set_attribute("trio_workq.task.status", status)
        if error is not None:
            span.set_status(trace.Status(trace.StatusCode.ERROR, error))
        span.end(end_time=self._nanoseconds(when))
        self._leave_when_idle()

    # ------------------------------------------------------------- spans

    def _start(self, task: TaskRecord, when: float) -> None:
        # The worker's context, with what the submitter's headers carry (baggage).
        base = otel_context.get_current()
        links: list[trace.Link] = []
        headers = task.headers
        if headers:
            base, link = _extract(headers, base)
            if link is not None:
                links.append(link)
        name = task.name
        span = self._tracer.start_span(
            f"trio_workq.task {name}",
            # A root: the submitting span is linked, not a parent (see the module's doc).
            context=trace.set_span_in_context(trace.INVALID_SPAN, base),
            kind=trace.SpanKind.CONSUMER,
            links=links,
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
        token = otel_context.attach(trace.set_span_in_context(span, base))
        self._open[task] = _Open(span, token, trio.lowlevel.current_task())

    def _end(self, opened: _Open, kind: EventKind, task: TaskRecord, when: float) -> None:
        span = opened.span
        _restore(opened)
        span.set_attribute("trio_workq.task.status", kind.value)
        error = task.last_error if kind is not EventKind.COMPLETED else None
        if error is not None and kind is not EventKind.CANCELLED:
            span.record_exception(error)
            span.set_status(trace.Status(trace.StatusCode.ERROR, repr(error)))
        elif kind is EventKind.COMPLETED:
            span.set_status(trace.Status(trace.StatusCode.OK))
        span.end(end_time=self._nanoseconds(when))
        if not self._tracing:
            self._leave_when_idle()

    def _nanoseconds(self, trio_time: float) -> int:
        return int((self._wall_offset + trio_time) * 1e9)


def _inject() -> dict[str, str] | None:
    """The submit hook: the current trace context as headers, by the global propagator."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


def _extract(
    headers: Mapping[str, str], base: otel_context.Context
) -> tuple[otel_context.Context, trace.Link | None]:
    """*base* with what *headers* carry, and a link to the submitting span (None if none)."""
    try:
        extracted = propagate.extract(headers, context=base)
    except Exception:  # a propagator that chokes on damaged headers: run the task unlinked
        _logger.debug("cannot extract a trace context from %r", headers, exc_info=True)
        return base, None
    remote = trace.get_current_span(extracted).get_span_context()
    return extracted, (trace.Link(remote) if remote.is_valid else None)


def _restore(opened: _Open) -> None:
    """Detach the attempt's context in its worker, if this is the worker and not done yet.

    On a durable queue a completion is announced by the task that writes it,
    not the worker: the worker restored its context already (`AttemptSignal.RAN`).
    A context token belongs to the trio task that attached it; another task
    must never detach it.
    """
    token = opened.token
    if token is not None and trio.lowlevel.current_task() is opened.task:
        opened.token = None
        otel_context.detach(token)  # type: ignore[arg-type]


def instrument(
    queue: TaskQueue,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    queue_name: str = "default",
) -> TracingInstrumentation:
    """Trace every attempt of every task of *queue* as an OpenTelemetry span. Not a checkpoint.

    Also stores the current trace context with every task submitted to
    *queue* from now on, so that each attempt's span links to the span
    that submitted it (in any process, for a durable queue whose
    processes are all instrumented).

    Args:
        queue: The queue to trace: any `~trio_workq.TaskQueue` that
            `~trio_workq.open_work_queue` opened.
        tracer_provider: Where spans go; the global provider by default.
        queue_name: The ``trio_workq.queue`` attribute of every span.

    Raises:
        TypeError: If *queue* is not a `~trio_workq.WorkQueue` or a
            `~trio_workq.DurableWorkQueue`, or *queue_name* is not a string.
    """
    if not isinstance(queue, WorkQueue | DurableWorkQueue):
        raise TypeError(
            "queue must be a trio_workq.TaskQueue (a WorkQueue or a DurableWorkQueue), "
            f"not {type(queue).__name__}"
        )
    if not isinstance(queue_name, str):
        raise TypeError(f"queue_name must be a str, not {type(queue_name).__name__}")
    tracer = trace.get_tracer("trio_workq", tracer_provider=tracer_provider)
    return TracingInstrumentation(queue, tracer, queue_name)
