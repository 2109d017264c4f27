# SPDX-License-Identifier: MIT
# The runtime's services share `_Attempt` (this package's record of a task: each writes
# the private times and errors of the attempts it ends) and the queue's event source;
# events and hooks read the record through `TaskRecord`. This module waives the rule.
# pyright: reportPrivateUsage=false
"""The state the durable queue's services share, in one object with an owner per field.

The services (intake, fetcher, executor, completer, maintenance) each keep
their own state; what more than one of them reads or writes lives here, in
`Runtime`, so that every shared field is visible in one place. All of it is
used from trio tasks of one thread: no locks, but a field may change at any
checkpoint of its writer.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Final

import trio

from .._core.status import EVENT_FOR_STATUS, RUNNING, EventKind, TaskStatus
from .._runtime.events import AttemptSignal, EventSource
from .._runtime.waiters import Waiters
from .._stores.protocol import Store, StoredTask, StoreError
from .attempt import _Attempt, record_of_row
from .errors import StoreUnavailable
from .handle import FinishWaiters, QueueRef
from .serialize import Serializer

#: Bound on each cleanup write (releasing a task) made while being cancelled.
CLEANUP_TIMEOUT: Final = 5.0


def default_owner() -> str:
    """A worker process's owner id: ``hostname:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class StoreHealth:
    """The store-failure grace: how long every store call of the workers has been failing."""

    def __init__(self, clock: trio.abc.Clock, grace: float) -> None:
        self._clock = clock
        self.grace = grace
        # Trio time of the first failed store call since the last one that worked.
        self.failing_since: float | None = None

    def ok(self) -> None:
        """A store call worked: start the count again. Not a checkpoint."""
        self.failing_since = None

    def failed(self, exc: StoreError, *, stop: bool = True) -> None:
        """Count a failed store call of the workers; past the grace period, stop the queue.

        Any call that works (`ok`) starts the count again. The upkeep loops
        (claims, renewals, maintenance), which keep calling the store, raise;
        outcome writes only count (*stop* false).

        Raises:
            StoreUnavailable: Every such call has failed for `grace` seconds.
        """
        now = self._clock.current_time()
        if self.failing_since is None:
            self.failing_since = now
        elif stop and now - self.failing_since >= self.grace:
            raise StoreUnavailable(
                f"every store operation has failed for {now - self.failing_since:.3g} s, "
                f"past the store failure grace of {self.grace:g} s; "
                f"last error: {exc}"
            ) from exc


class Runtime:
    """What the services of one `DurableWorkQueue` share.

    Set once by the queue and read-only after: ``queue`` (the facade, as
    handles and attempts know it), ``events`` (the facade too, as the
    source of lifecycle events), ``store``, ``owner``,
    ``lease``, ``poll_interval``, ``serializer``, ``no_arguments``, ``clock``,
    ``now`` (the store's clock, Unix seconds), ``wall_offset``, ``health``
    and ``finish_waiters`` (objects with their own methods).

    Shared fields, each with its writers:

    * ``held`` (task id -> attempt): claimed by this process and not
      finished. The fetcher adds (`Fetcher.hold`); `unhold` removes (the
      completer once an outcome is written, the heartbeat for a lost
      attempt that never started). Everyone reads.
    * ``ready``: held attempts waiting for a worker. The fetcher appends,
      the executor pops, shutdown empties it.
    * ``idle``: the parked workers. The executor parks, the fetcher wakes.
    * ``busy``: workers running an attempt; the executor counts.
    * ``worker_idle``: set when a worker parks (the fetcher may claim). The
      fetcher replaces it before waiting; the executor and shutdown set it.
    * ``work_hint``: set when new work may be due (the fetcher should
      claim). The fetcher replaces it before claiming; `hint` sets it (intake,
      retries, the store's wake-ups, lease recovery, shutdown).
    * ``closing`` and ``drained``: the queue's shutdown (the facade writes
      ``closing``; `unhold` sets ``drained`` once closing and nothing is held).
    """

    def __init__(
        self,
        *,
        queue: QueueRef,
        events: EventSource,
        store: Store,
        lease: float,
        poll_interval: float,
        serializer: Serializer,
        store_failure_grace: float,
    ) -> None:
        self.queue = queue
        self.events = events
        self.store = store
        self.owner = default_owner()
        self.lease = lease
        self.poll_interval = poll_interval
        self.serializer = serializer
        # Encoded once (most tasks take no arguments): stored by intake, never decoded.
        self.no_arguments = serializer.dumps({"args": []})
        self.clock = trio.lowlevel.current_clock()
        # The store's clock (Unix seconds): every time sent to or read from the
        # store is on it. Wall time for the real stores (shared across
        # processes and hosts); trio's time for trio_workq.testing.MemoryStore.
        # A store written before Store.now existed gets the wall clock.
        self.now: Callable[[], float] = getattr(store, "now", time.time)
        # trio time -> the store's clock, fixed once (as in WorkQueue).
        self.wall_offset = self.now() - self.clock.current_time()
        self.health = StoreHealth(self.clock, store_failure_grace)
        self.finish_waiters = FinishWaiters()
        self.held: dict[str, _Attempt] = {}
        # Set when the fetcher holds a task: the heartbeat sleeps on it while nothing
        # is held (no wake-ups of an idle queue, which matter under a virtual clock).
        self.holding = trio.Event()
        self.ready: deque[_Attempt] = deque()
        self.idle: Waiters[None] = Waiters()
        self.busy = 0
        self.worker_idle = trio.Event()
        self.work_hint = trio.Event()
        # Adds of this process whose submitted events are not out yet (intake
        # writes; the fetcher waits for them before a claim's tasks may start).
        self.adds_in_flight: set[trio.Event] = set()
        self.closing = False
        self.drained = trio.Event()

    def hint(self) -> None:
        """Tell the fetcher that new work may be due. Not a checkpoint."""
        self.work_hint.set()

    def unhold(self, attempt: _Attempt) -> None:
        """Forget *attempt* (its outcome is written, or it is lost). Not a checkpoint."""
        # Only this attempt: a newer attempt of the same task may be held here by now
        # (its lease expired while this one's outcome waited, and this process re-claimed it).
        if self.held.get(attempt.id) is attempt:
            del self.held[attempt.id]
            if self.closing and not self.held:
                self.drained.set()

    def record_of_row(self, row: StoredTask) -> _Attempt:
        """A record of the stored task *row*, in trio times. Not a checkpoint."""
        return record_of_row(self.queue, row, self.wall_offset)

    def emit(self, record: _Attempt, kind: EventKind, *, was_running: bool) -> None:
        """Call the queue's hooks (listeners, streams) with an event of *record*."""
        self.events._call_hooks(kind, record, self.clock.current_time(), was_running)

    def signal(self, attempt: _Attempt, signal: AttemptSignal) -> None:
        """Tell the attempt hooks about *attempt*, if a worker started it. Not a checkpoint."""
        events = self.events
        if events._attempt_hooks and attempt._started is not None:
            events._signal_attempt(signal, attempt, self.clock.current_time())

    def set_status(self, attempt: _Attempt, status: TaskStatus) -> None:
        """Change *attempt*'s status and announce it to the hooks. Not a checkpoint."""
        old = attempt.status
        attempt.status = status
        if self.events._hooks:
            kind = EVENT_FOR_STATUS.get(status)
            if kind is not None:
                self.emit(attempt, kind, was_running=old is RUNNING)
