# SPDX-License-Identifier: MIT
"""2. No-op throughput through ``queue.submit_nowait``, against trio's nowait floor and aiojobs."""

from __future__ import annotations

from ._core import Comparison, Metrics, Target, Variant
from ._throughput import THROUGHPUT_COLUMNS, aiojobs_scheduler, task_count, trio_channel, workq


def _trio_raw(quick: bool) -> Metrics:
    return trio_channel(task_count(quick))


def _trio_raw_nowait(quick: bool) -> Metrics:
    return trio_channel(task_count(quick), nowait=True)


def _workq_nowait(quick: bool) -> Metrics:
    return workq(task_count(quick), nowait=True)


def _aiojobs_uvloop(quick: bool) -> Metrics:
    return aiojobs_scheduler(task_count(quick), loop="uvloop")


COMPARISON = Comparison(
    title="2. No-op throughput, `queue.submit_nowait`",
    about=(
        "As 1, but the producer calls `submit_nowait` and falls back to `await submit` only on "
        "`trio.WouldBlock` (a full buffer). The raw trio nowait variant uses `send_nowait` and "
        "`receive_nowait`, each falling back to the awaiting call: trio's floor."
    ),
    variants=(
        Variant("trio_raw", "raw trio: memory channel, `await send`, 10 workers", _trio_raw),
        Variant(
            "trio_raw_nowait",
            "raw trio nowait: `send_nowait` / `receive_nowait`, 10 workers",
            _trio_raw_nowait,
        ),
        Variant("workq_nowait", "trio_workq: `queue.submit_nowait(noop)`", _workq_nowait),
        Variant("aiojobs_uvloop", "aiojobs, uvloop", _aiojobs_uvloop),
    ),
    columns=THROUGHPUT_COLUMNS,
    reference="trio_raw",
    ratio_metric="us_per_task",
    targets=(
        Target(
            "submit_nowait / aiojobs (uvloop)",
            "workq_nowait",
            "us_per_task",
            "aiojobs_uvloop",
            limit=1.0,
            unit="ratio of µs/task",
        ),
        Target(
            "submit_nowait / raw trio (`await send`)",
            "workq_nowait",
            "us_per_task",
            "trio_raw",
            unit="ratio of µs/task; the issue expects about 1.45",
        ),
        Target(
            "submit_nowait / raw trio nowait",
            "workq_nowait",
            "us_per_task",
            "trio_raw_nowait",
            unit="ratio of µs/task",
        ),
    ),
)
