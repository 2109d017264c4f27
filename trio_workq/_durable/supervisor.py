# SPDX-License-Identifier: MIT
# The runtime's services share `_Attempt` (this package's record of a task: each writes
# the private times and errors of the attempts it ends) and the queue's event source;
# events and hooks read the record through `TaskRecord`. This module waives the rule.
# pyright: reportPrivateUsage=false
"""The durable queue's task tree: starts the services, and stops them on shutdown."""

from __future__ import annotations

import math

import trio

from .._runtime.lifecycle import only_cancelled
from .completer import Completer
from .executor import Executor
from .fetcher import Fetcher
from .maintenance import Maintenance
from .runtime import CLEANUP_TIMEOUT, Runtime


class Supervisor:
    """Runs the services' tasks (`run`) and drives the shutdown (`begin_shutdown`, `abort`).

    Owns the shutdown's state: the deadline, the grace scope, and whether
    the tree has started, stopped or crashed.
    """

    def __init__(
        self,
        rt: Runtime,
        workers: int,
        *,
        completer: Completer,
        executor: Executor,
        fetcher: Fetcher,
        maintenance: Maintenance,
    ) -> None:
        self._rt = rt
        self._workers = workers
        self._completer = completer
        self._executor = executor
        self._fetcher = fetcher
        self._maintenance = maintenance
        self._closing_event = trio.Event()
        self._shutdown_deadline = math.inf
        self._grace_scope: trio.CancelScope | None = None
        self.started = False
        self.stopped = trio.Event()
        self.crashed = False

    def shorten_deadline(self, timeout: float) -> None:
        """Running tasks are cancelled *timeout* seconds from now, or sooner. Not a checkpoint."""
        self._shutdown_deadline = min(
            self._shutdown_deadline, self._rt.clock.current_time() + timeout
        )
        if self._grace_scope is not None:
            self._grace_scope.deadline = self._shutdown_deadline

    def begin_shutdown(self) -> None:
        """Stop claiming; let running tasks finish. Not a checkpoint."""
        rt = self._rt
        if not rt.closing:
            rt.closing = True
            self._closing_event.set()
            rt.hint()
            rt.worker_idle.set()
            if not rt.held:
                rt.drained.set()

    def abort(self) -> None:
        """Stop every running task now; each is given back to the store."""
        self._shutdown_deadline = -math.inf
        self.begin_shutdown()
        if self._grace_scope is not None:
            self._grace_scope.cancel()
        for attempt in list(self._rt.held.values()):
            attempt.interrupted = True
            if attempt.scope is not None:
                attempt.scope.cancel()

    async def _supervise(self) -> None:
        await self._closing_event.wait()
        # Claimed tasks no worker has started go back at once (workers take no more).
        rt = self._rt
        unstarted = [a for a in rt.ready if not a.lost]
        rt.ready.clear()
        await self._completer.release_all(unstarted)
        with trio.CancelScope(deadline=self._shutdown_deadline) as self._grace_scope:
            await rt.drained.wait()
        self._grace_scope = None
        if not rt.drained.is_set():
            self.abort()
            await rt.drained.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The queue's tasks, until shutdown has stopped them all (`run_queue` starts it)."""
        self.started = True
        try:
            async with trio.open_nursery() as nursery:
                if self._workers:
                    for _ in range(self._workers):
                        nursery.start_soon(self._executor.run)
                    nursery.start_soon(self._fetcher.run)
                    nursery.start_soon(self._completer.run)
                    nursery.start_soon(self._fetcher.listen)
                    nursery.start_soon(self._maintenance.heartbeat)
                    nursery.start_soon(self._maintenance.reaper)
                task_status.started()
                await self._supervise()
                # Nothing is held any more: stop the workers and the upkeep.
                nursery.cancel_scope.cancel()
        except BaseException as exc:
            self.crashed = not only_cancelled(exc)
            raise
        finally:
            rt = self._rt
            rt.closing = True
            # Cancelled from outside: claimed tasks no worker started go back now
            # (running ones are given back by their workers as they unwind).
            unstarted = [a for a in rt.held.values() if a._started is None]
            completer = self._completer
            completed, completer.completed = completer.completed, []
            if unstarted or completed:
                with trio.CancelScope(shield=True, deadline=trio.current_time() + CLEANUP_TIMEOUT):
                    try:
                        # Results not written yet: write them rather than leave tasks
                        # that ran to run again once their lease expires.
                        if completed:
                            await completer.record_completions(completed)
                    finally:
                        await completer.release_all(unstarted)
            self.stopped.set()
            rt.events._close_streams()
