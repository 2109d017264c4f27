# SPDX-License-Identifier: MIT
"""Lease recovery as a durable queue's reaper does it, for store-level tests."""

from __future__ import annotations

import time

from trio_workq._core.transitions import Ending, decide
from trio_workq._stores.protocol import Recovery, Store


async def recover_expired(store: Store, error: str, *, now: float | None = None) -> int:
    """Recover every expired lease with no retry policy; return how many rows changed.

    The store reads the expired rows, `decide` picks each target (retrying due
    now while attempts remain, else failed; cancelled if its cancellation was
    requested), and the store applies them under its guards. *now* is the
    store's wall clock (a test's fake one), by default `time.time`.
    """
    rows = await store.expired(1000)
    if now is None:
        now = time.time()
    recoveries: list[Recovery] = []
    for row in rows:
        status, _, due = decide(
            Ending.CANCELLED if row.cancel_requested else Ending.LOST,
            Exception(error),
            attempts=row.attempts,
            max_attempts=row.max_attempts,
            policy=None,
            now=now,
        )
        recoveries.append(Recovery(row.id, row.owner, row.attempts, status, error, due))
    return await store.recover(recoveries)
