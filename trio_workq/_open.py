# SPDX-License-Identifier: MIT
"""`open_work_queue`: an in-memory queue, or a durable one when given a store."""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Any, overload

import trio

from ._core.retry import RetryPolicy
from ._memory.queue import WorkQueue, open_memory_queue
from ._runtime.api import TaskQueue

if TYPE_CHECKING:
    from typing_extensions import TypeVarTuple

    from ._durable.queue import DurableWorkQueue
    from ._durable.serialize import Serializer
    from ._stores.protocol import Store

    Ts = TypeVarTuple("Ts")


# open_work_queue(store=...) opens a durable queue (trio_workq._durable.queue) instead.


@overload
def open_work_queue(
    nursery: trio.Nursery | None = None,
    *,
    workers: int = 10,
    max_buffer_size: int | float = 1000,
    max_scheduled: int | float = math.inf,
    retry: RetryPolicy | None = None,
    max_retained: int | float = 10_000,
    retention: float | None = 3600.0,
    shutdown_timeout: float | None = None,
    store: None = None,
) -> contextlib.AbstractAsyncContextManager[WorkQueue]: ...


@overload
def open_work_queue(
    nursery: trio.Nursery | None = None,
    *,
    store: Store | str,
    workers: int = 10,
    retry: RetryPolicy | None = None,
    lease: float = 30.0,
    poll_interval: float = 1.0,
    serializer: Serializer | None = None,
    retention: float | None = 86400.0,
    shutdown_timeout: float | None = None,
    store_failure_grace: float | None = 60.0,
) -> contextlib.AbstractAsyncContextManager[DurableWorkQueue]: ...


@overload
def open_work_queue(
    nursery: trio.Nursery | None = None,
    *,
    store: Store | str | None,
    workers: int = 10,
    retry: RetryPolicy | None = None,
    retention: float | None = ...,
    shutdown_timeout: float | None = None,
) -> contextlib.AbstractAsyncContextManager[TaskQueue]: ...


def open_work_queue(
    nursery: trio.Nursery | None = None, *, store: Store | str | None = None, **options: Any
) -> contextlib.AbstractAsyncContextManager[TaskQueue]:
    if store is None:
        return open_memory_queue(nursery, **options)
    from ._durable.queue import open_durable_queue

    return open_durable_queue(nursery, store=store, **options)


if TYPE_CHECKING:

    def _both_are_task_queues(  # pyright: ignore[reportUnusedFunction] - checked, never called
        memory: WorkQueue, durable: DurableWorkQueue
    ) -> list[TaskQueue]:
        # The type checkers prove here that both queues implement TaskQueue.
        return [memory, durable]


_DURABLE_DOC = """
    With *store* (a `Store`, or a URL such as ``sqlite:///tasks.db``), it
    opens a `DurableWorkQueue` on that store instead, which takes the options
    of `open_durable_queue`; *max_buffer_size*, *max_scheduled* and
    *max_retained* do not apply to it. See the persistence guide.

    Both kinds implement `TaskQueue`: code that takes a `TaskQueue` runs on
    either. When *store* is a variable that may be ``None``, the type
    checkers see a `TaskQueue` (only the options both kinds take are
    accepted there).
    """
open_work_queue.__doc__ = (open_memory_queue.__doc__ or "") + _DURABLE_DOC
