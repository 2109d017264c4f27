# SPDX-License-Identifier: MIT
"""3. Tasks with one checkpoint (``await trio.sleep(0)``): trio_workq against raw trio."""

from __future__ import annotations

from ._core import Comparison, Metrics, Target, Variant
from ._throughput import THROUGHPUT_COLUMNS, task_count, trio_channel, workq


def _trio_raw(quick: bool) -> Metrics:
    return trio_channel(task_count(quick), kind="checkpoint")


def _workq(quick: bool) -> Metrics:
    return workq(task_count(quick), kind="checkpoint")


COMPARISON = Comparison(
    title="3. One-checkpoint tasks",
    about=(
        "As 1, but every task does `await trio.sleep(0)`: the worker really suspends "
        "inside the task."
    ),
    variants=(
        Variant("trio_raw", "raw trio: memory channel, `await send`, 10 workers", _trio_raw),
        Variant("workq", "trio_workq: `await queue.submit(checkpoint_task)`", _workq),
    ),
    columns=THROUGHPUT_COLUMNS,
    reference="trio_raw",
    ratio_metric="us_per_task",
    targets=(
        Target(
            "await submit / raw trio", "workq", "us_per_task", "trio_raw", unit="ratio of µs/task"
        ),
    ),
)
