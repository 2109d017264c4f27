# SPDX-License-Identifier: MIT
"""`QueueStatistics`: one shape of counters for every kind of queue."""

from __future__ import annotations

import attrs


@attrs.frozen
class QueueStatistics:
    """Counters of a queue, from `TaskQueue.statistics`.

    The same class for every backend. A field that one kind of queue cannot
    know is ``None`` there (said below), never missing. The status counts
    are the queue's own for an in-memory queue, and the whole store's (every
    process sharing it) for a durable one; the worker counts are always this
    process's.

    Attributes:
        workers: Size of this process's worker pool.
        busy_workers: This process's workers running a task now.
        queued: Tasks waiting for a worker.
        scheduled: Delayed tasks not yet due.
        retrying: Tasks waiting out a retry backoff.
        running: Tasks running now (in any process, for a durable queue).
        completed: Finished tasks in this status whose records are still
            kept: in memory, up to ``max_retained`` and ``retention``; in a
            store, until purged after ``retention``.
        failed: As *completed*.
        cancelled: As *completed*.
        closed: Whether this queue's shutdown has begun.
        submitted: Tasks accepted since the queue opened (in memory;
            ``None`` for a durable queue, whose store is shared).
        retained: Finished task records kept (in memory; ``None`` for a
            durable queue: the sum of the three finished counts).
        buffer_capacity: ``max_buffer_size`` (in memory; ``None`` for a
            durable queue, whose store is the buffer).
        producers_waiting: Callers blocked in ``submit`` for room (in
            memory; ``None`` for a durable queue, which never blocks them).
        schedulers_waiting: Callers blocked in ``schedule`` for room (in
            memory; ``None`` for a durable queue).
        held: Tasks this process has claimed and not finished: running,
            claimed and about to run, or finished with the outcome not yet
            written (durable; ``None`` in memory).
        owner: This process's owner id in the store (durable; ``None`` in
            memory).
    """

    workers: int
    busy_workers: int
    queued: int
    scheduled: int
    retrying: int
    running: int
    completed: int
    failed: int
    cancelled: int
    closed: bool
    submitted: int | None = None
    retained: int | None = None
    buffer_capacity: int | float | None = None
    producers_waiting: int | None = None
    schedulers_waiting: int | None = None
    held: int | None = None
    owner: str | None = None
