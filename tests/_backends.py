# SPDX-License-Identifier: MIT
"""The backends of the queue-behaviour suite, and one async API over both queues.

`BACKENDS` names every queue the suite runs against; a test takes the
`backend` fixture (and `clock`, which pytest-trio hands to ``trio.run``)
and runs once per entry. A new backend is one line in `BACKENDS`: a store
factory (what to pass as ``open_work_queue(store=...)``) and whether the
backend may run under a virtual clock.

`Backend.open` yields the queue itself, typed as `trio_workq.TaskQueue`:
the suite's tests are written against the public protocol, with no
adapter, so they run unchanged on every backend. Every behavioural
difference left is asserted per backend.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Callable, Generator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TypeVar

import attrs
import pytest
import trio
import trio.testing

from trio_workq import (
    EventKind,
    RetryPolicy,
    Store,
    TaskInfo,
    TaskQueue,
    TaskStatus,
    open_work_queue,
)
from trio_workq._stores.urls import store_from_url
from trio_workq.testing import MemoryStore

T = TypeVar("T")

#: What ``open_work_queue(store=...)`` takes: nothing (in memory), a URL, or a `Store`.
StoreTarget = Store | str | None

#: Seconds between a durable queue's polls of the store: short, so that the
#: suite runs in real time without waiting on polls.
DURABLE_POLL = 0.05

#: How early, on trio's clock, a durable task may fall due. A durable queue
#: keeps due times as float Unix seconds, whose step near 2026 is 2**-22 s
#: (0.24 us): under a virtual clock, where no real time passes, "0.3 s from
#: now" may become due 0.24 us before 0.3 s of trio time.
UNIX_TIME_STEP = 1e-6


def _no_store(tmp_path: Path) -> Generator[StoreTarget]:
    yield None


def _sqlite(tmp_path: Path) -> Generator[StoreTarget]:
    yield f"sqlite:///{tmp_path}/suite.db"


def _postgres(tmp_path: Path) -> Generator[StoreTarget]:
    # Imported here: psycopg is an optional dependency.
    import psycopg
    from _pg import PG_URL, require_postgres
    from psycopg import sql

    require_postgres()
    schema = f"twq_suite_{uuid.uuid4().hex[:12]}"
    yield f"{PG_URL}{'&' if '?' in PG_URL else '?'}schema={schema}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def memory_store(tmp_path: Path) -> Generator[StoreTarget]:
    # trio_workq.testing's: it follows trio's clock, so the suite runs in virtual time.
    yield MemoryStore()


@attrs.frozen
class BackendKind:
    """One entry of `BACKENDS`.

    Attributes:
        name: The test id.
        store: Yields the store target for one test (a fresh database), and
            cleans it up after; every queue the test opens uses that target.
        virtual_time: Whether the tests run under an autojumping
            `trio.testing.MockClock`. The SQLite and PostgreSQL stores work in
            threads, which race a virtual clock: they run in real time.
    """

    name: str
    store: Callable[[Path], Generator[StoreTarget]]
    virtual_time: bool

    @property
    def durable(self) -> bool:
        return self.store is not _no_store


BACKENDS: dict[str, BackendKind] = {
    kind.name: kind
    for kind in [
        BackendKind("memory", _no_store, virtual_time=True),
        BackendKind("sqlite", _sqlite, virtual_time=False),
        BackendKind("postgres", _postgres, virtual_time=False),
        BackendKind("memorystore", memory_store, virtual_time=True),
    ]
}


# ---------------------------------------------------------------- helpers


async def counts(queue: TaskQueue) -> dict[TaskStatus, int]:
    """Tasks per status, from `TaskQueue.statistics` (it has a field per status)."""
    stats = await queue.statistics()
    return {status: getattr(stats, status.value) for status in TaskStatus}


async def wait_for_status(
    queue: TaskQueue, task_id: str, status: TaskStatus, *, within: float = 5.0
) -> TaskInfo:
    """Poll until the task has *status*; fail after *within* seconds."""
    with trio.fail_after(within):
        while True:
            info = await queue.get_info(task_id)
            if info.status is status:
                return info
            await trio.sleep(0.01)


async def wait_until(condition: Callable[[], bool], *, within: float = 5.0) -> None:
    """Poll *condition* until it holds; fail after *within* seconds. Always a checkpoint."""
    await trio.lowlevel.checkpoint()
    with trio.fail_after(within):
        while True:
            if condition():
                return
            await trio.sleep(0.005)


class Backend:
    """One backend, for one test: opens queues on a fresh store target."""

    def __init__(self, kind: BackendKind, target: StoreTarget) -> None:
        self.kind = kind
        self.target = target

    @property
    def name(self) -> str:
        return self.kind.name

    @property
    def durable(self) -> bool:
        return self.kind.durable

    @asynccontextmanager
    async def open(
        self,
        *,
        workers: int = 4,
        retry: RetryPolicy | None = None,
        wrap_store: Callable[[Store], Store] | None = None,
    ) -> AsyncGenerator[TaskQueue]:
        """``open_work_queue`` on this backend (both halves block, as there).

        *wrap_store*, for a durable backend, wraps its store (e.g. in a fake
        that delays some calls); it does not apply to the in-memory queue.
        """
        if self.target is None:
            async with open_work_queue(workers=workers, retry=retry) as queue:
                yield queue
        else:
            store = self.target
            if wrap_store is not None:
                wrap = store_from_url(store) if isinstance(store, str) else store
                store = wrap_store(wrap)
            async with open_work_queue(
                store=store, workers=workers, retry=retry, poll_interval=DURABLE_POLL
            ) as durable:
                yield durable


# ---------------------------------------------------------------- fixtures
# A test module imports them (``from _backends import backend as backend``).


@pytest.fixture(params=list(BACKENDS))
def backend_kind(request: pytest.FixtureRequest) -> BackendKind:
    return BACKENDS[request.param]


@pytest.fixture
def clock(backend_kind: BackendKind) -> trio.abc.Clock | None:
    """The test's clock: autojumping for the backends that allow it, else trio's real clock.

    pytest-trio runs a test under a `trio.abc.Clock` among its arguments: a
    test takes this fixture next to `backend`.
    """
    return trio.testing.MockClock(autojump_threshold=0) if backend_kind.virtual_time else None


@pytest.fixture
def backend(backend_kind: BackendKind, tmp_path: Path) -> Iterator[Backend]:
    with contextmanager(backend_kind.store)(tmp_path) as target:
        yield Backend(backend_kind, target)


#: Event kinds, for short assertions.
SUBMITTED, SCHEDULED, STARTED, RETRYING, COMPLETED, FAILED, CANCELLED = (
    EventKind.SUBMITTED,
    EventKind.SCHEDULED,
    EventKind.STARTED,
    EventKind.RETRYING,
    EventKind.COMPLETED,
    EventKind.FAILED,
    EventKind.CANCELLED,
)
