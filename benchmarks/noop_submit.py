# SPDX-License-Identifier: MIT
"""1. No-op throughput through ``await queue.submit``, against raw trio and the asyncio peers."""

from __future__ import annotations

from ._core import Comparison, Metrics, Target, Variant
from ._throughput import (
    THROUGHPUT_COLUMNS,
    aiojobs_scheduler,
    asyncio_queue,
    task_count,
    trio_channel,
    workq,
)


def _trio_raw(quick: bool) -> Metrics:
    return trio_channel(task_count(quick))


def _workq(quick: bool) -> Metrics:
    return workq(task_count(quick))


def _aiojobs_default(quick: bool) -> Metrics:
    return aiojobs_scheduler(task_count(quick), loop="default")


def _aiojobs_uvloop(quick: bool) -> Metrics:
    return aiojobs_scheduler(task_count(quick), loop="uvloop")


def _asyncio_default(quick: bool) -> Metrics:
    return asyncio_queue(task_count(quick), loop="default")


def _asyncio_uvloop(quick: bool) -> Metrics:
    return asyncio_queue(task_count(quick), loop="uvloop")


COMPARISON = Comparison(
    title="1. No-op throughput, `await queue.submit`",
    about=(
        "200,000 no-op tasks, 10 workers, buffer 1,000; the producer awaits every submit; "
        "timed from the first submit until the last task has completed (the queue's "
        "`shutdown()` has returned)."
    ),
    variants=(
        Variant("trio_raw", "raw trio: memory channel, `await send`, 10 workers", _trio_raw),
        Variant("workq", "trio_workq: `await queue.submit(noop)`", _workq),
        Variant("aiojobs_default", "aiojobs, asyncio default loop", _aiojobs_default),
        Variant("aiojobs_uvloop", "aiojobs, uvloop", _aiojobs_uvloop),
        Variant(
            "asyncio_default", "asyncio.Queue(1000) + 10 workers, default loop", _asyncio_default
        ),
        Variant("asyncio_uvloop", "asyncio.Queue(1000) + 10 workers, uvloop", _asyncio_uvloop),
    ),
    columns=THROUGHPUT_COLUMNS,
    reference="trio_raw",
    ratio_metric="us_per_task",
    targets=(
        Target(
            "await submit / raw trio",
            "workq",
            "us_per_task",
            "trio_raw",
            limit=1.0,
            unit="ratio of µs/task",
        ),
        Target(
            "await submit / aiojobs (default loop)",
            "workq",
            "us_per_task",
            "aiojobs_default",
            unit="ratio of µs/task",
        ),
        Target(
            "await submit / aiojobs (uvloop)",
            "workq",
            "us_per_task",
            "aiojobs_uvloop",
            unit="ratio of µs/task",
        ),
    ),
)
