# SPDX-License-Identifier: MIT
"""Prometheus metrics for a `~trio_workq.WorkQueue` or a `~trio_workq.DurableWorkQueue`:
``pip install 'trio_workq[prometheus]'``.

`instrument` adds a listener to a queue and a collector to a registry. The
listener keeps plain counts in the queue's own thread (cheap, no locks); the
collector turns them into counter and histogram families at scrape time and
reads the gauges from `~trio_workq.WorkQueue.statistics_nowait` then. A scrape from
another thread (``prometheus_client.start_http_server``) takes its snapshot in
the queue's Trio thread through `trio.from_thread.run_sync`.

A durable queue's gauges come from its store, which a scrape must not wait on:
a background task of the queue's Trio run reads the store's counts every
*gauge_interval* seconds and scrapes report the last reading.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import weakref
from bisect import bisect_left
from collections.abc import Iterator
from types import TracebackType
from typing import Final

import trio
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from ._core.errors import TaskTimeout
from ._core.info import TaskRecord
from ._core.stats import QueueStatistics
from ._core.status import EventKind
from ._durable.queue import DurableWorkQueue
from ._memory.queue import WorkQueue
from ._runtime.api import TaskQueue
from ._runtime.events import Hook

__all__ = ["QUEUE_WAIT_BUCKETS", "RUN_DURATION_BUCKETS", "Instrumentation", "instrument"]

_logger = logging.getLogger("trio_workq.prometheus")

#: Upper bounds (seconds) of the run duration histogram's buckets (``+Inf`` is added).
RUN_DURATION_BUCKETS: Final[tuple[float, ...]] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)

#: Upper bounds (seconds) of the queue wait histogram's buckets (``+Inf`` is added).
QUEUE_WAIT_BUCKETS: Final[tuple[float, ...]] = (
    0.0001,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)

_NAMESPACE_RE: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")

# Counter families: (suffix, help); the exposition adds ``_total``.
_COUNTERS: Final = (
    ("tasks_submitted", "Tasks accepted by the queue (submitted or scheduled)."),
    ("tasks_completed", "Tasks that ended completed."),
    ("tasks_failed", "Tasks that ended failed (after their last attempt)."),
    ("tasks_retried", "Failed attempts followed by a retry."),
    ("tasks_cancelled", "Tasks that ended cancelled."),
    ("tasks_timed_out", "Attempts that overran their timeout (also counted as failed or retried)."),
)

# Gauge families: (suffix, help, QueueStatistics field).
_GAUGES: Final = (
    ("tasks_queued", "Tasks waiting for a worker.", "queued"),
    ("tasks_scheduled", "Delayed tasks not yet due.", "scheduled"),
    ("tasks_retrying", "Tasks waiting out a retry backoff.", "retrying"),
    ("tasks_running", "Tasks running now.", "running"),
    ("workers_busy", "Workers running a task now.", "busy_workers"),
    ("workers", "Size of the worker pool.", "workers"),
)

_RUN_HELP: Final = "Run time of one attempt, from its start to its end (seconds)."
_WAIT_HELP: Final = "Time a task waited for a worker, from becoming queued to starting (seconds)."
_OLDEST_HELP: Final = (
    "Durable queues: how long the most overdue task has waited to run (seconds; 0 if none is due)."
)


def _bucket_labels(bounds: tuple[float, ...]) -> tuple[str, ...]:
    return (*(repr(bound) for bound in bounds), "+Inf")


def _cumulative(counts: list[int]) -> list[int]:
    total = 0
    out: list[int] = []
    for count in counts:
        total += count
        out.append(total)
    return out


class _TaskSeries:
    """The counts of one task name on one queue (written only in the queue's thread)."""

    __slots__ = (
        "cancelled",
        "completed",
        "failed",
        "retried",
        "run_counts",
        "run_sum",
        "submitted",
        "timed_out",
        "wait_counts",
        "wait_sum",
    )

    def __init__(self) -> None:
        self.submitted = 0
        self.completed = 0
        self.failed = 0
        self.retried = 0
        self.cancelled = 0
        self.timed_out = 0
        self.run_counts = [0] * (len(RUN_DURATION_BUCKETS) + 1)
        self.run_sum = 0.0
        self.wait_counts = [0] * (len(QUEUE_WAIT_BUCKETS) + 1)
        self.wait_sum = 0.0

    def snapshot(self) -> _SeriesSnapshot:
        return (
            (
                self.submitted,
                self.completed,
                self.failed,
                self.retried,
                self.cancelled,
                self.timed_out,
            ),
            (_cumulative(self.run_counts), self.run_sum),
            (_cumulative(self.wait_counts), self.wait_sum),
        )


# (counter values in _COUNTERS order, (cumulative run buckets, sum), (wait buckets, sum))
_SeriesSnapshot = tuple[tuple[int, ...], tuple[list[int], float], tuple[list[int], float]]
# (queue label, statistics or None, oldest due age or None, [(task label, series snapshot)])
_QueueSnapshot = tuple[
    str,
    "QueueStatistics | None",
    "float | None",
    list[tuple[str, _SeriesSnapshot]],
]


class _QueueData:
    """What one ``queue`` label has counted; it outlives the instrumentations that fed it."""

    def __init__(self, queue_name: str) -> None:
        self.queue_name = queue_name
        self.series: dict[str, _TaskSeries] = {}
        # The Trio run of the queue now feeding these counts (set with the owner).
        self.token: trio.lowlevel.TrioToken | None = None
        # The instrumentation now feeding these counts, if any. Weak: the queue holds
        # it (as a listener), so a queue that is dropped without uninstrument() frees it.
        self._owner: weakref.ref[Instrumentation] | None = None

    @property
    def owner(self) -> Instrumentation | None:
        return None if self._owner is None else self._owner()

    @owner.setter
    def owner(self, owner: Instrumentation | None) -> None:
        self._owner = None if owner is None else weakref.ref(owner)

    def snapshot(self, *, read_queue: bool) -> _QueueSnapshot:
        owner = self.owner
        stats = oldest = None
        if read_queue and owner is not None:
            stats = owner.current_statistics()
            oldest = owner.oldest_due_age
        series = [(name, s.snapshot()) for name, s in tuple(self.series.items())]
        return (self.queue_name, stats, oldest, series)


def _in_run(token: trio.lowlevel.TrioToken) -> bool:
    try:
        return trio.lowlevel.current_trio_token() is token
    except RuntimeError:  # not in any trio run
        return False


class _Collector:
    """One per (registry, namespace): every queue instrumented there, under its ``queue`` label."""

    def __init__(self, namespace: str) -> None:
        prefix = f"{namespace}_" if namespace else ""
        self._counter_names = [(prefix + suffix, text) for suffix, text in _COUNTERS]
        self._gauge_names = [(prefix + suffix, text, field) for suffix, text, field in _GAUGES]
        self._run_name = prefix + "task_run_duration_seconds"
        self._wait_name = prefix + "task_queue_wait_seconds"
        self._oldest_name = prefix + "oldest_due_task_age_seconds"
        self._run_le = _bucket_labels(RUN_DURATION_BUCKETS)
        self._wait_le = _bucket_labels(QUEUE_WAIT_BUCKETS)
        self._lock = threading.Lock()
        self._data: dict[str, _QueueData] = {}

    # -------------------------------------------------------- registration

    def attach(
        self, instrumentation: Instrumentation, token: trio.lowlevel.TrioToken
    ) -> _QueueData:
        queue = instrumentation.queue
        name = instrumentation.queue_name
        with self._lock:
            data = self._data.get(name)
            if data is not None and data.owner is not None:
                raise ValueError(
                    f"queue_name={name!r} is already in use in this registry by another "
                    f"queue; pick another name, or call uninstrument() on that one first"
                )
            for other in self._data.values():
                owner = other.owner
                if owner is not None and owner.queue is queue:
                    raise ValueError(
                        f"this queue is already instrumented in this registry as "
                        f"queue_name={other.queue_name!r}; call uninstrument() on that first"
                    )
            if data is None:
                data = self._data[name] = _QueueData(name)
            data.owner = instrumentation
            data.token = token
        return data

    def detach(self, data: _QueueData) -> None:
        with self._lock:
            data.owner = None
            data.token = None

    # ------------------------------------------------------------ scraping

    def describe(self) -> Iterator[Metric]:
        """The families, without samples: lets the registry reject clashing names."""
        return self._families([], describe=True)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            groups: dict[trio.lowlevel.TrioToken | None, list[_QueueData]] = {}
            for data in self._data.values():
                owner = data.owner
                token = None if owner is None else data.token
                groups.setdefault(token, []).append(data)
        snapshots: list[_QueueSnapshot] = []
        for token, group in groups.items():
            snapshots.extend(_snapshot_group(token, group))
        snapshots.sort(key=lambda snapshot: snapshot[0])
        return self._families(snapshots)

    def _families(
        self, snapshots: list[_QueueSnapshot], *, describe: bool = False
    ) -> Iterator[Metric]:
        labels = ["queue", "task"]
        counters = [CounterMetricFamily(n, text, labels=labels) for n, text in self._counter_names]
        run = HistogramMetricFamily(self._run_name, _RUN_HELP, labels=labels)
        wait = HistogramMetricFamily(self._wait_name, _WAIT_HELP, labels=labels)
        gauges = [
            (GaugeMetricFamily(n, text, labels=["queue"]), field)
            for n, text, field in self._gauge_names
        ]
        oldest_family = GaugeMetricFamily(self._oldest_name, _OLDEST_HELP, labels=["queue"])
        for queue_name, stats, oldest, series in snapshots:
            for task_name, (values, (run_buckets, run_sum), (wait_buckets, wait_sum)) in series:
                label_values = [queue_name, task_name]
                for counter, value in zip(counters, values, strict=True):
                    counter.add_metric(label_values, value)
                run.add_metric(
                    label_values, list(zip(self._run_le, run_buckets, strict=True)), run_sum
                )
                wait.add_metric(
                    label_values, list(zip(self._wait_le, wait_buckets, strict=True)), wait_sum
                )
            if stats is not None:
                for gauge, field in gauges:
                    gauge.add_metric([queue_name], getattr(stats, field))
            if oldest is not None:
                oldest_family.add_metric([queue_name], oldest)
        yield from counters
        yield run
        yield wait
        for gauge, _ in gauges:
            yield gauge
        # Only durable queues know it: in-memory-only registries keep their exposition.
        if describe or oldest_family.samples:
            yield oldest_family


def _snapshot_group(
    token: trio.lowlevel.TrioToken | None, group: list[_QueueData]
) -> list[_QueueSnapshot]:
    """Snapshot queues of one trio run, in that run's thread while it is alive."""
    if token is None:  # nothing writes to these counts any more
        return [data.snapshot(read_queue=False) for data in group]
    if _in_run(token):
        return [data.snapshot(read_queue=True) for data in group]
    try:
        return trio.from_thread.run_sync(
            lambda: [data.snapshot(read_queue=True) for data in group], trio_token=token
        )
    except trio.RunFinishedError:
        # The run is over: its listeners are silent, and statistics() needs a run.
        return [data.snapshot(read_queue=False) for data in group]


_collectors_lock = threading.Lock()
_collectors: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, _Collector]] = (
    weakref.WeakKeyDictionary()
)


def _collector_for(registry: CollectorRegistry, namespace: str) -> _Collector:
    with _collectors_lock:
        by_namespace = _collectors.setdefault(registry, {})
        collector = by_namespace.get(namespace)
        if collector is None:
            collector = _Collector(namespace)
            try:
                registry.register(collector)
            except ValueError as exc:
                raise ValueError(
                    f"cannot register trio_workq metrics with namespace={namespace!r} in this "
                    f"registry: {exc}"
                ) from exc
            by_namespace[namespace] = collector
        return collector


class Instrumentation:
    """A queue's link to a Prometheus registry, returned by `instrument`.

    Usable as a (synchronous) context manager that calls `uninstrument` on exit.

    Attributes:
        queue: The instrumented `~trio_workq.WorkQueue` or `~trio_workq.DurableWorkQueue`.
        queue_name: The value of the ``queue`` label.
        namespace: The prefix of the metric names.
        registry: The ``prometheus_client`` registry holding the metrics.
        gauge_interval: For a durable queue, seconds between two readings of
            the store's counts (``None`` for an in-memory queue).
    """

    def __init__(
        self,
        queue: WorkQueue | DurableWorkQueue,
        registry: CollectorRegistry,
        namespace: str,
        queue_name: str,
        gauge_interval: float | None = None,
    ) -> None:
        self.queue = queue
        self.queue_name = queue_name
        self.namespace = namespace
        self.registry = registry
        self.gauge_interval: float | None = (
            gauge_interval if isinstance(queue, DurableWorkQueue) else None
        )
        # A durable queue's last store reading (None until the first one, or after
        # a failed one); written in the Trio thread, read by scrapes under its token.
        self._cached: QueueStatistics | None = None
        self._oldest: float | None = None
        # Readings may overlap (the background one and refresh_gauges()): only one
        # that started after the reading shown may replace it.
        self._readings_started = 0
        self._reading_shown = 0
        self._refresher = trio.CancelScope()
        self._collector = _collector_for(registry, namespace)
        self._data = self._collector.attach(self, trio.lowlevel.current_trio_token())
        self._active = True
        self._on_event = _make_hook(self, self._data.series)
        queue.add_hook(self._on_event)
        if self.gauge_interval is not None:
            trio.lowlevel.spawn_system_task(
                self._refresh_loop, self.gauge_interval, name="trio_workq.prometheus gauges"
            )

    def current_statistics(self) -> QueueStatistics | None:
        """What the gauges show now; call it in the queue's Trio thread. Not a checkpoint.

        An in-memory queue's `~trio_workq.WorkQueue.statistics_nowait`; for a
        durable queue, the last reading of the store (``None`` before the
        first one), never a wait on the store.
        """
        queue = self.queue
        if isinstance(queue, WorkQueue):
            return queue.statistics_nowait()
        return self._cached

    @property
    def oldest_due_age(self) -> float | None:
        """For a durable queue, the age of its oldest due task at the last reading.

        Seconds since that task fell due, ``0.0`` if none was due; ``None``
        before the first reading, after a failed one, and for an in-memory
        queue.
        """
        return self._oldest

    async def refresh_gauges(self) -> None:
        """Read a durable queue's counts from its store now. Always a checkpoint.

        The background refresh does this every *gauge_interval* seconds; call
        it to have the next scrape show the store as it is (tests, a scrape
        handler that may wait). Does nothing more for an in-memory queue.
        Errors of the store propagate.
        """
        queue = self.queue
        if isinstance(queue, WorkQueue):
            await trio.lowlevel.checkpoint()
            return
        self._readings_started += 1
        reading = self._readings_started
        stats = await queue.statistics()
        oldest = await queue.store.oldest_due_age()
        if reading > self._reading_shown and self._active:
            self._reading_shown = reading
            self._cached, self._oldest = stats, (0.0 if oldest is None else max(oldest, 0.0))

    async def _refresh_loop(self, interval: float) -> None:
        # A system task (instrument() has no nursery): it ends with the run or on
        # uninstrument(), and must never raise, or the run would crash.
        with self._refresher:
            while True:
                try:
                    await self.refresh_gauges()
                except Exception:
                    # The store is down or the queue closed: show no gauges rather than stale ones.
                    self._cached = self._oldest = None
                    _logger.debug(
                        "could not read the store counts for queue_name=%r",
                        self.queue_name,
                        exc_info=True,
                    )
                await trio.sleep(interval)

    def __repr__(self) -> str:
        state = "active" if self._active else "detached"
        return (
            f"<Instrumentation queue_name={self.queue_name!r} namespace={self.namespace!r} {state}>"
        )

    @property
    def active(self) -> bool:
        """Whether the queue is still being counted (`uninstrument` not yet called)."""
        return self._active

    def uninstrument(self) -> None:
        """Stop counting this queue and drop its gauges. Not a checkpoint.

        Counters and histograms keep their values in the registry, as
        Prometheus counters should; instrumenting a queue under the same
        ``queue_name`` later continues them. Calling it again does nothing.
        """
        if not self._active:
            return
        self._active = False
        self._refresher.cancel()
        self._cached = self._oldest = None
        self.queue.remove_hook(self._on_event)
        self._collector.detach(self._data)

    def __enter__(self) -> Instrumentation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.uninstrument()


def _make_hook(instrumentation: Instrumentation, series_by_name: dict[str, _TaskSeries]) -> Hook:
    """The queue hook: called synchronously for every status change, so kept lean
    (no event object, closure variables instead of globals and attributes, a few
    increments per change).

    It refers to *instrumentation*, so the queue keeps that alive while it listens.
    """
    get = series_by_name.get
    bisect = bisect_left
    run_bounds = RUN_DURATION_BUCKETS
    wait_bounds = QUEUE_WAIT_BUCKETS
    timeout_type = TaskTimeout
    started = EventKind.STARTED
    submitted = EventKind.SUBMITTED
    scheduled = EventKind.SCHEDULED
    completed = EventKind.COMPLETED
    failed = EventKind.FAILED
    retrying = EventKind.RETRYING
    cancelled = EventKind.CANCELLED

    def on_change(kind: EventKind, task: TaskRecord, when: float, was_running: bool) -> None:
        # Called during the transition, so the task's fields are current.
        try:
            name = task.name
            series = get(name)
            if series is None:
                series = series_by_name[name] = _TaskSeries()
            if kind is started:
                wait = when - task.queued_time
                series.wait_counts[bisect(wait_bounds, wait)] += 1
                series.wait_sum += wait
                return
            if kind is submitted or kind is scheduled:
                series.submitted += 1
                return
            if kind is completed:
                series.completed += 1
            elif kind is failed:
                series.failed += 1
                if isinstance(task.last_error, timeout_type):
                    series.timed_out += 1
            elif kind is retrying:
                series.retried += 1
                if isinstance(task.last_error, timeout_type):
                    series.timed_out += 1
            elif kind is cancelled:
                series.cancelled += 1
            started_at = task.started_time
            if was_running and started_at is not None:
                duration = when - started_at
                series.run_counts[bisect(run_bounds, duration)] += 1
                series.run_sum += duration
        except Exception:  # a hook must never raise into the queue
            _logger.exception(
                "could not record %s of task %s for queue_name=%r",
                kind,
                task.id,
                instrumentation.queue_name,
            )

    return on_change


def instrument(
    queue: TaskQueue,
    registry: CollectorRegistry | None = None,
    namespace: str = "trio_workq",
    queue_name: str = "default",
    *,
    gauge_interval: float = 2.0,
) -> Instrumentation:
    """Export Prometheus metrics for *queue* through *registry*. Not a checkpoint.

    Call it in the Trio run that owns the queue, typically right after
    `~trio_workq.open_work_queue`. Counters and histograms are labelled
    ``queue`` (this *queue_name*) and ``task`` (the task's name, never its
    id); gauges are labelled ``queue`` and read from
    `WorkQueue.statistics_nowait <trio_workq.WorkQueue.statistics_nowait>` at scrape
    time. Several queues can share a registry, each under a *queue_name* of its own.

    For a `~trio_workq.DurableWorkQueue`, counters and histograms count
    this process's events (no per-process label: Prometheus tells the
    targets apart by ``instance``, and ``sum without (instance)`` adds up
    the workers). The ``tasks_*`` gauges count the whole store, as read by
    a background task every *gauge_interval* seconds (so every process
    reports the same value: aggregate them with ``max``, not ``sum``);
    ``workers`` and ``workers_busy`` are this process's. A scrape never
    waits on the store.

    Args:
        queue: The queue to instrument: any `~trio_workq.TaskQueue` that
            `~trio_workq.open_work_queue` opened.
        registry: Where the metrics are registered; ``None`` means
            ``prometheus_client.REGISTRY``.
        namespace: The prefix of every metric name (``trio_workq`` gives
            ``trio_workq_tasks_submitted_total``, ...).
        queue_name: The ``queue`` label of this queue's series.
        gauge_interval: Seconds between two readings of a durable queue's
            store (positive, finite); ignored for an in-memory queue.

    Returns:
        An `Instrumentation`; its `~Instrumentation.uninstrument` stops the
        counting.

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For a bad *namespace*, an empty *queue_name* or a
            *gauge_interval* that is not positive and finite; if
            *queue_name* is already in use in *registry* (under this
            *namespace*) or *queue* is already instrumented there; or if
            the registry holds other metrics with the same names.
        RuntimeError: If called outside a Trio run.
    """
    if not isinstance(queue, WorkQueue | DurableWorkQueue):
        raise TypeError(
            "queue must be a trio_workq.TaskQueue (a WorkQueue or a DurableWorkQueue), "
            f"not {type(queue).__name__}"
        )
    if isinstance(gauge_interval, bool) or not isinstance(gauge_interval, int | float):
        raise TypeError(f"gauge_interval must be a number, not {type(gauge_interval).__name__}")
    if not math.isfinite(gauge_interval) or gauge_interval <= 0:
        raise ValueError(f"gauge_interval must be positive and finite, got {gauge_interval!r}")
    if registry is None:
        registry = REGISTRY
    elif not isinstance(registry, CollectorRegistry):
        raise TypeError(
            f"registry must be a prometheus_client.CollectorRegistry or None, "
            f"not {type(registry).__name__}"
        )
    if not isinstance(namespace, str):
        raise TypeError(f"namespace must be a str, not {type(namespace).__name__}")
    if namespace and not _NAMESPACE_RE.match(namespace):
        raise ValueError(
            f"namespace must be a valid Prometheus metric name prefix "
            f"([a-zA-Z_:][a-zA-Z0-9_:]*), got {namespace!r}"
        )
    if not isinstance(queue_name, str):
        raise TypeError(f"queue_name must be a str, not {type(queue_name).__name__}")
    if not queue_name:
        raise ValueError("queue_name must not be empty")
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        raise RuntimeError(
            "trio_workq.prometheus.instrument() must be called inside the Trio run of the queue"
        ) from None
    return Instrumentation(queue, registry, namespace, queue_name, float(gauge_interval))
