# SPDX-License-Identifier: MIT
"""A durable queue whose store fails every call stops after ``store_failure_grace``.

Real SQLite files, made read-only with ``PRAGMA query_only`` (see
`_readonly_store`); real time, short grace periods, a `trio.fail_after` bound.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

import _readonly_store
import pytest
import trio

from trio_workq import EventKind, StoreError, StoreUnavailable, TaskEvent, open_durable_queue
from trio_workq._durable.queue import CLEANUP_TIMEOUT


async def _store_with_a_task(url: str) -> None:
    async with open_durable_queue(store=url, workers=0) as queue:
        await queue.submit(_readonly_store.noop)


async def test_read_only_store_stops_the_queue_after_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claims and upkeep all fail: the queue raises StoreUnavailable once the grace is over."""
    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    await _store_with_a_task(url)
    _readonly_store.make_read_only(monkeypatch.setattr)
    start = trio.current_time()
    with trio.fail_after(20), pytest.raises(BaseExceptionGroup) as caught:
        async with open_durable_queue(
            store=url, workers=2, lease=1, poll_interval=0.05, store_failure_grace=0.5
        ):
            await trio.sleep_forever()
    elapsed = trio.current_time() - start
    matched, rest = caught.value.split(StoreUnavailable)
    assert rest is None, caught.value
    assert matched is not None
    error = matched.exceptions[0]
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    assert isinstance(error, StoreError)  # the CLI reports StoreErrors
    assert "every store operation has failed" in str(error)
    assert "readonly" in str(error.__cause__)
    assert 0.5 <= elapsed < 10


async def test_a_working_store_call_restarts_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claims fail for three grace periods, but the upkeep works: the queue keeps serving."""
    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    with trio.fail_after(20):
        async with open_durable_queue(
            store=url, workers=1, lease=0.2, poll_interval=0.05, store_failure_grace=0.3
        ) as queue:
            store = queue.store
            claim = store.claim
            failing = True

            async def failing_claim(*args: Any) -> Any:
                if failing:
                    await trio.lowlevel.checkpoint()
                    raise StoreError("simulated: claims fail")
                return await claim(*args)

            monkeypatch.setattr(store, "claim", failing_claim)
            handle = await queue.submit(_readonly_store.noop)
            await trio.sleep(1.0)  # the reaper's calls (every lease / 2) work meanwhile
            failing = False
            await handle.result()
            assert (await handle.info()).attempts == 1  # claimed once the claims worked


@pytest.mark.parametrize("grace", [-1, float("nan"), "60"])
async def test_bad_grace_is_refused(tmp_path: Path, grace: Any) -> None:
    """store_failure_grace takes seconds (>= 0) or None, checked before the store opens."""
    with pytest.raises((TypeError, ValueError), match="store_failure_grace"):
        async with open_durable_queue(
            store=f"sqlite:///{tmp_path / 'tasks.db'}", store_failure_grace=grace
        ):
            raise AssertionError("not reached")  # pragma: no cover
    assert not (tmp_path / "tasks.db").exists()


async def test_store_lost_while_a_task_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every call fails from mid-task on: the queue stops after the grace, its cleanup bounded."""
    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    lost = math.inf
    with trio.fail_after(20), pytest.raises(BaseExceptionGroup) as caught:
        async with open_durable_queue(
            store=url, workers=2, lease=1, poll_interval=0.05, store_failure_grace=0.5
        ) as queue:
            started = trio.Event()

            def on_event(event: TaskEvent) -> None:
                if event.kind is EventKind.STARTED:
                    started.set()

            queue.add_listener(on_event)
            await queue.submit(_readonly_store.nap, 1.0)
            await started.wait()
            lost = trio.current_time()
            for method in ("claim", "renew", "complete", "complete_many", "fail", "release",
                           "finish_cancelled", "expired", "recover", "purge_finished"):  # fmt: skip
                monkeypatch.setattr(queue.store, method, _refusing(method))
            await trio.sleep_forever()
    # The grace, then at most the bounded cleanup (giving the task back fails too).
    assert trio.current_time() - lost < 0.5 + CLEANUP_TIMEOUT + 2
    matched, rest = caught.value.split(StoreUnavailable)
    assert matched is not None
    assert rest is None, caught.value


def _refusing(method: str) -> Any:
    async def refuse(*args: Any) -> Any:
        await trio.lowlevel.checkpoint()
        raise StoreError(f"simulated: {method} refused")

    return refuse
