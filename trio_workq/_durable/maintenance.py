# SPDX-License-Identifier: MIT
"""Upkeep of the held tasks and the store: lease renewal, lease recovery, purge."""

from __future__ import annotations

from typing import Final

import trio

from .._core.registry import lookup, policy_for
from .._core.retry import RetryPolicy
from .._core.transitions import Ending, decide
from .._runtime.events import logger
from .._stores.protocol import Recovery, StoreError
from .errors import LEASE_EXPIRED_ERROR, StoredError, error_text
from .runtime import Runtime

#: Longest gap between two lease renewals, which is also how soon a running
#: task sees a cancellation requested from another process.
MAX_RENEW_INTERVAL: Final = 1.0

#: Seconds between two purges of finished tasks past their retention.
PURGE_INTERVAL: Final = 60.0

#: How many expired leases one store call reads (the reaper repeats while full).
RECOVER_BATCH: Final = 500


class Maintenance:
    """The heartbeat (renews this process's leases) and the reaper (recovers, purges)."""

    def __init__(self, rt: Runtime, retention: float | None, retry: RetryPolicy | None) -> None:
        self._rt = rt
        self._retention = retention
        self._retry = retry  # the queue's default policy, for recovered tasks

    async def heartbeat(self) -> None:  # noqa: ASYNC910 - private; runs until cancelled
        """Renew the leases of held tasks; stop those lost or asked to cancel."""
        rt = self._rt
        interval = min(rt.lease / 3, MAX_RENEW_INTERVAL)
        while True:
            if not rt.held:
                if rt.holding.is_set():
                    rt.holding = trio.Event()
                await rt.holding.wait()
            await trio.sleep(interval)
            if not rt.held:
                continue
            ids = list(rt.held)
            try:
                renewal = await rt.store.renew(rt.owner, ids, rt.lease)
            except StoreError as exc:
                rt.health.failed(exc)
                logger.warning("renewing leases failed (%s); retrying", exc)
                continue
            rt.health.ok()
            for task_id in renewal.lost:
                attempt = rt.held.get(task_id)
                # An attempt whose outcome is being written is not stopped: the
                # write is conditional anyway (and may have just committed).
                if attempt is None or (attempt.scope is None and attempt.started_time is not None):
                    continue
                logger.warning(
                    "task %s (%s): this process lost its lease (the store re-queued it); "
                    "stopping it here",
                    task_id,
                    attempt.name,
                )
                attempt.lost = True
                if attempt.scope is not None:
                    attempt.scope.cancel()
                else:
                    rt.unhold(attempt)  # never started: a worker will skip it
            for task_id in renewal.cancel_requested:
                attempt = rt.held.get(task_id)
                if attempt is not None and not attempt.cancel_requested:
                    attempt.request_cancel()

    async def reaper(self) -> None:  # noqa: ASYNC910 - private; runs until cancelled
        """Re-queue tasks whose worker died, and purge finished tasks past their retention."""
        rt = self._rt
        next_purge = rt.clock.current_time()
        while True:
            try:
                if await self.recover_expired():
                    rt.hint()
                if self._retention is not None and rt.clock.current_time() >= next_purge:
                    next_purge = rt.clock.current_time() + PURGE_INTERVAL
                    await rt.store.purge_finished(rt.now() - self._retention)
            except StoreError as exc:
                rt.health.failed(exc)
                logger.warning("store maintenance failed (%s); retrying", exc)
            else:
                rt.health.ok()
            await trio.sleep(rt.lease / 2)

    async def recover_expired(self) -> int:
        """Recover tasks whose worker died: each as `decide` says, applied by the store.

        A lost attempt counts and goes through its task's retry policy,
        backoff included (the registry's definition for its name, else this
        queue's default; the stored ``max_attempts`` wins). Returns how many
        rows the store changed. Always a checkpoint.
        """
        store = self._rt.store
        recovered = 0
        while True:
            rows = await store.expired(RECOVER_BATCH)
            if not rows:
                return recovered
            now = self._rt.now()
            lost = StoredError(LEASE_EXPIRED_ERROR)
            recoveries: list[Recovery] = []
            for row in rows:
                status, error, due = decide(
                    Ending.CANCELLED if row.cancel_requested else Ending.LOST,
                    lost,
                    attempts=row.attempts,
                    max_attempts=row.max_attempts,
                    policy=policy_for(lookup(row.name), self._retry),
                    now=now,
                )
                text = LEASE_EXPIRED_ERROR if error is lost or error is None else error_text(error)
                recoveries.append(Recovery(row.id, row.owner, row.attempts, status, text, due))
            changed = await store.recover(recoveries)
            recovered += changed
            if len(rows) < RECOVER_BATCH or not changed:
                return recovered
