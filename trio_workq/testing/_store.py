# SPDX-License-Identifier: MIT
"""`MemoryStore`: a durable queue in memory, on trio's clock.

Under `trio.testing.MockClock` (pytest-trio's ``autojump_clock``) delays,
backoffs, leases and timeouts of hours take no real time.
"""

from __future__ import annotations

import time

import trio

from .._stores.memory import MemoryStore as _MemoryStore


class MemoryStore(_MemoryStore):
    """A `~trio_workq.Store` in this process's memory that follows trio's clock: for tests.

    Pass it as ``open_work_queue(store=MemoryStore())``: the queue is a
    `~trio_workq.DurableWorkQueue` (tasks registered with `trio_workq.task`, arguments
    serialized, leases, retries, the same store guarantees as SQLite and
    PostgreSQL), but with no threads and no I/O. Its clock is trio's: Unix
    time is a fixed offset plus `trio.current_time`, the offset taken the
    first time the store reads its clock (inside `trio.run`). Under an
    autojumping `trio.testing.MockClock`, ``schedule(fn, delay=3600)``
    therefore runs after one virtual hour, and no real time passes.

    Every async method is a checkpoint. The tasks are held in this object
    only (gone when it is): it is for tests, not for production. One
    store may be shared by several queues of one `trio.run`, as processes
    share a database. Do not use it across calls of `trio.run`: the offset
    belongs to the first run's clock.

    Attributes:
        url: ``"memory:"``.
    """

    def __init__(self) -> None:
        # Unix time minus trio time, fixed at the first reading of the clock.
        self._offset: float | None = None
        super().__init__(clock=self._trio_clock)

    def _trio_clock(self) -> float:
        try:
            trio_now = trio.current_time()
        except RuntimeError:
            raise RuntimeError(
                "trio_workq.testing.MemoryStore follows trio's clock: use it inside trio.run"
            ) from None
        if self._offset is None:
            self._offset = time.time() - trio_now
        return self._offset + trio_now

    def __repr__(self) -> str:
        return f"<trio_workq.testing.MemoryStore {len(self._rows)} tasks>"
