# SPDX-License-Identifier: MIT
"""Running a queue's tasks in a nursery, and shutting it down when its block ends (both queues)."""

from __future__ import annotations

import sys
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Protocol, cast

import trio

if sys.version_info < (3, 11):  # pragma: no cover - trio depends on the backport there
    from exceptiongroup import BaseExceptionGroup


def only_cancelled(exc: BaseException) -> bool:
    """Whether *exc* is `trio.Cancelled`, or a group of nothing else."""
    if isinstance(exc, BaseExceptionGroup):
        group = cast("BaseExceptionGroup[BaseException]", exc)
        return group.split(trio.Cancelled)[1] is None
    return isinstance(exc, trio.Cancelled)


class _RunningQueue(Protocol):
    """What `run_queue` needs of a queue (in-memory or durable).

    Private members of both queues, read only here: the queues' own side of
    their lifecycle (hence the ``reportPrivateUsage`` waivers below).
    """

    _shutdown_timeout: float | None

    @property
    def _crashed(self) -> bool: ...  # read only: the durable queue's is its supervisor's

    def _abort(self) -> None: ...

    async def shutdown(self, timeout: float | None = None) -> None: ...  # noqa: ASYNC109


@asynccontextmanager
async def run_queue(
    nursery: trio.Nursery | None,
    run: Callable[..., Awaitable[None]],
    queue: _RunningQueue,
) -> AsyncGenerator[None, None]:
    """Start ``run`` (the queue's tasks) in *nursery* or one of our own; shut down on exit.

    Leaving the block normally shuts the queue down gracefully; an exception
    or cancellation aborts it. With a nursery of our own, an exception from
    the block alone comes out as itself, not wrapped in an exception group.
    """
    if nursery is None:
        body_error: BaseException | None = None
        try:
            async with trio.open_nursery() as own_nursery:
                await own_nursery.start(run)
                try:
                    async with _shut_down_on_exit(queue):
                        yield
                except BaseException as exc:
                    body_error = exc
                    raise
        except BaseExceptionGroup:
            # The nursery is ours, not the caller's: when only the block raised,
            # its exception comes out as itself. Anything more stays a group.
            if body_error is None or queue._crashed:  # pyright: ignore[reportPrivateUsage]
                raise
        else:
            return
        assert body_error is not None
        raise body_error
    else:
        await nursery.start(run)
        async with _shut_down_on_exit(queue):
            yield


@asynccontextmanager
async def _shut_down_on_exit(queue: _RunningQueue) -> AsyncGenerator[None, None]:
    try:
        yield
    except BaseException:
        queue._abort()  # pyright: ignore[reportPrivateUsage]
        raise
    await queue.shutdown(timeout=queue._shutdown_timeout)  # pyright: ignore[reportPrivateUsage]
