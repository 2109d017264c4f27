# SPDX-License-Identifier: MIT
"""What the testing kit reads of a queue beyond `TaskQueue`.

The helpers are written against `TaskQueue` (statistics, listings,
listeners). What it does not offer is a task's function and arguments:
`TaskInfo` has neither. `call_of` reads them where each backend keeps them:
the in-memory queue's record of the task, a durable queue's store.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

import attrs
import trio

from .._core.errors import TaskNotFound
from .._core.info import TaskInfo
from .._core.stats import QueueStatistics
from .._durable.queue import DurableWorkQueue
from .._durable.serialize import Serializer
from .._durable.serialize import load_arguments as stored_arguments
from .._memory.queue import WorkQueue
from .._runtime.api import TaskQueue as TaskQueue


def in_flight(stats: QueueStatistics, *, with_scheduled: bool) -> int:
    """Work the status counts do not show yet, from the fields one backend has.

    In memory: callers blocked in ``submit`` (and ``schedule``) for room,
    whose tasks are about to be queued. Durable: tasks this process holds,
    which covers the moment between a task's outcome being written to the
    store and its event here. The other backend's fields are ``None``.
    """
    waiting = (stats.producers_waiting or 0) + (stats.held or 0)
    if with_scheduled:
        waiting += stats.schedulers_waiting or 0
    return waiting


def poll_interval_of(queue: TaskQueue) -> float | None:
    """How often to re-read a queue's statistics when no event says something changed.

    A durable queue's own poll interval: tasks of other processes sharing
    its store change the counts without an event here. ``None`` for the
    in-memory queue, whose every change is an event.
    """
    return queue.poll_interval if isinstance(queue, DurableWorkQueue) else None


@attrs.frozen
class Call:
    """What a task was submitted as: its function (in memory) or name, and arguments.

    Attributes:
        fn: The function (unwrapped from `functools.partial`) on an
            in-memory queue; ``None`` on a durable one, which keeps a name.
        args: The positional arguments, as the task receives them.
        kwargs: The keyword arguments (from a `functools.partial`).
    """

    fn: Callable[..., Awaitable[Any]] | None
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]


async def call_of(queue: object, info: TaskInfo) -> Call | None:
    """The function and arguments of the task *info* describes; ``None`` if it is gone.

    Always a checkpoint (a durable queue reads the store).

    Raises:
        TypeError: If *queue* is not one of trio_workq's queues.
    """
    if isinstance(queue, DurableWorkQueue):
        row = await queue.store.get(info.id)
        if row is None:  # purged since it was listed
            return None
        stored_args, stored_kwargs = load_arguments(queue.serializer, row.payload)
        return Call(None, stored_args, stored_kwargs)
    if isinstance(queue, WorkQueue):
        await trio.lowlevel.checkpoint()
        try:
            handle = queue.get_handle_nowait(info.id)
        except TaskNotFound:  # its record expired since it was listed
            return None
        # The handle is the queue's record of the task; its function is private to it.
        fn: object = handle._fn  # pyright: ignore[reportPrivateUsage]
        args = handle.args
        kwargs: dict[str, Any] = {}
        while isinstance(fn, functools.partial):
            args = (*fn.args, *args)
            kwargs = {**fn.keywords, **kwargs}
            fn = fn.func
        return Call(cast("Callable[..., Awaitable[Any]]", fn), args, kwargs)
    raise TypeError(f"expected a trio_workq queue, not {type(queue).__name__}")


def load_arguments(
    serializer: Serializer, payload: bytes
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments of a stored task (see `trio_workq._durable.serialize.load_arguments`).

    A payload that cannot be read gives no arguments rather than an error:
    the assertion that asked then reports a mismatch.
    """
    try:
        return stored_arguments(serializer, payload)
    except ValueError:
        return (), {}
