# SPDX-License-Identifier: MIT
# The runtime's services share `_Attempt` (this package's record of a task: each writes
# the private times and errors of the attempts it ends) and the queue's event source;
# events and hooks read the record through `TaskRecord`. This module waives the rule.
# pyright: reportPrivateUsage=false
"""The fetcher: claims due tasks for idle workers, woken by the store or by polling."""

from __future__ import annotations

import math

import trio

from .._core.status import QUEUED
from .._runtime.events import logger
from .._stores.protocol import StoredTask, StoreError
from .attempt import _Attempt
from .completer import Completer
from .runtime import Runtime


class Fetcher:
    """Claims tasks (`run`) and relays the store's wake-ups (`listen`)."""

    def __init__(self, rt: Runtime, completer: Completer) -> None:
        self._rt = rt
        self._completer = completer

    async def run(self) -> None:  # noqa: ASYNC910 - private; runs until closing
        """Claim due tasks for idle workers: one store round trip per batch."""
        rt = self._rt
        store = rt.store
        while not rt.closing:
            if not rt.idle:
                rt.worker_idle = trio.Event()
                await rt.worker_idle.wait()
                # Workers finishing in the same batch park too: claim for all of them at once.
                await trio.lowlevel.checkpoint()
                continue
            rt.work_hint = trio.Event()  # a hint from now on means "claim again"
            limit = len(rt.idle)
            try:
                claimed = await store.claim(rt.owner, limit, rt.lease)
            except StoreError as exc:
                rt.health.failed(exc)
                logger.warning(
                    "claiming tasks failed (%s); retrying in %.3g s", exc, rt.poll_interval
                )
                await trio.sleep(rt.poll_interval)
                continue
            rt.health.ok()
            attempts = [self.hold(row) for row in claimed.tasks]
            if attempts and rt.adds_in_flight:
                # A task submitted here may be claimed before its add returned:
                # it starts only once its submitted event is out.
                for announced in list(rt.adds_in_flight):
                    await announced.wait()
            if rt.closing:
                # Shutdown began during the claim: give these back (the supervisor
                # has already released what was claimed before).
                await self._completer.release_all(attempts)
                return
            for attempt in attempts:
                rt.ready.append(attempt)
                if rt.idle:
                    rt.idle.wake_first()
            if len(claimed.tasks) < limit:
                # Nothing more is due: sleep until the next due time, a hint, or the poll.
                deadline = math.inf
                if claimed.next_due is not None:
                    wait = max(claimed.next_due - rt.now(), 0.0)
                    deadline = rt.clock.current_time() + wait
                with trio.move_on_at(deadline):
                    await rt.work_hint.wait()

    def hold(self, row: StoredTask) -> _Attempt:
        """Record a claimed task as held by this process. Not a checkpoint."""
        rt = self._rt
        attempt = rt.record_of_row(row)
        attempt.status = QUEUED  # claimed, not started: RUNNING is set (and announced) at start
        rt.held[row.id] = attempt
        rt.holding.set()
        return attempt

    async def listen(self) -> None:  # noqa: ASYNC910 - private; runs until cancelled
        """Relay the store's hints of new work to the fetcher (the poll backstop included)."""
        rt = self._rt
        while True:
            try:
                await rt.store.wait_for_work(rt.poll_interval)
            except StoreError as exc:
                logger.warning("waiting for work failed (%s)", exc)
                await trio.sleep(rt.poll_interval)
            rt.hint()
