# SPDX-License-Identifier: MIT
"""7. Prometheus-instrumented queue against a plain one."""

from __future__ import annotations

from ._core import Comparison, Metrics, Target, Variant
from ._throughput import THROUGHPUT_COLUMNS, task_count, workq


def _plain(quick: bool) -> Metrics:
    return workq(task_count(quick), prometheus=False)


def _instrumented(quick: bool) -> Metrics:
    return workq(task_count(quick), prometheus=True)


COMPARISON = Comparison(
    title="7. Prometheus instrumentation",
    about=(
        "As 1 (200,000 no-op tasks through `await submit`), with "
        "`trio_workq.prometheus.instrument(queue, registry=CollectorRegistry())` against "
        "the same without it (prometheus_client imported in both). The instrumented run "
        "checks the completed counter."
    ),
    variants=(
        Variant("plain", "trio_workq, plain", _plain),
        Variant("instrumented", "trio_workq, Prometheus-instrumented", _instrumented),
    ),
    columns=THROUGHPUT_COLUMNS,
    reference="plain",
    ratio_metric="us_per_task",
    targets=(
        Target(
            "instrumented / plain throughput",
            "instrumented",
            "tasks_per_s",
            "plain",
            op=">=",
            limit=0.8,
            unit="ratio of tasks/s",
        ),
    ),
)
