# SPDX-License-Identifier: MIT
"""What the demo's tests share: reading its summary table, and the statuses to expect."""

from __future__ import annotations

import itertools
import re
from collections import Counter

from trio_workq import TaskStatus
from trio_workq._cli.demo_run import FINAL_STATUSES
from trio_workq._cli.demo_workload import Workload

SUMMARY_ROW = re.compile(r"^(\w+) +(\d+) +(\d+) +(\d+) +(\d+)$", re.MULTILINE)


def summary_rows(output: str) -> dict[str, tuple[int, int, int, int]]:
    """The summary table: name -> (completed, failed, cancelled, total), ``total`` included."""
    rows: dict[str, tuple[int, int, int, int]] = {}
    for match in SUMMARY_ROW.finditer(output):
        name, *counts = match.groups()
        completed, failed, cancelled, total = map(int, counts)
        rows[name] = (completed, failed, cancelled, total)
    return rows


def expected_final(seed: int, tasks: int) -> dict[str, Counter[TaskStatus]]:
    """The final statuses the scripts of the workload's first *tasks* tasks lead to."""
    final: dict[str, Counter[TaskStatus]] = {}
    for _, planned in itertools.islice(Workload(seed), tasks):
        final.setdefault(planned.job.kind, Counter())[planned.expected] += 1
    return final


def expected_rows(seed: int, tasks: int) -> dict[str, tuple[int, int, int, int]]:
    """The summary table a complete run of *tasks* tasks with *seed* prints, as `summary_rows`."""
    final = expected_final(seed, tasks)
    rows: dict[str, tuple[int, int, int, int]] = {}
    totals: Counter[TaskStatus] = Counter()
    for name, counts in final.items():
        totals.update(counts)
        completed, failed, cancelled = (counts[status] for status in FINAL_STATUSES)
        rows[name] = (completed, failed, cancelled, sum(counts.values()))
    completed, failed, cancelled = (totals[status] for status in FINAL_STATUSES)
    rows["total"] = (completed, failed, cancelled, sum(totals.values()))
    return rows
