# SPDX-License-Identifier: MIT
"""The timer heap: scheduled and retrying tasks ordered by due time.

Its tasks are the queue's records (`MemoryTaskHandle`): it reads their private
slots as the queue does, with a ``reportPrivateUsage`` waiver on each line.
"""

from __future__ import annotations

import heapq
from typing import Any

from .._core.status import RETRYING, SCHEDULED, TaskStatus
from .handle import MemoryTaskHandle


class TimerHeap:
    """A min-heap of waiting tasks keyed by (due time, -priority, submit order).

    Cancelled tasks stay in the heap and are skipped when reached; when they
    outnumber the live ones the heap is rebuilt, so a cancel-heavy workload
    does not grow it without bound.
    """

    __slots__ = ("_heap", "live")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int, MemoryTaskHandle[Any]]] = []
        self.live = 0

    def push(self, task: MemoryTaskHandle[Any], due: float) -> bool:
        """Add *task*, due at trio time *due*. Returns True if it is now the earliest."""
        entry = (due, -task._options.priority, task._seq, task)  # pyright: ignore[reportPrivateUsage]
        heapq.heappush(self._heap, entry)
        self.live += 1
        return self._heap[0] is entry

    def next_due(self) -> float:
        """The trio time of the earliest live task, or infinity."""
        heap = self._heap
        while heap and not _waiting(heap[0][3]):
            heapq.heappop(heap)
        return heap[0][0] if heap else float("inf")

    def pop_due(self, now: float) -> MemoryTaskHandle[Any] | None:
        """Remove and return the earliest live task due at or before *now*."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            task = heapq.heappop(heap)[3]
            if _waiting(task):
                self.live -= 1
                return task
        return None

    def discard(self, task: MemoryTaskHandle[Any]) -> None:
        """Account for a waiting task that was cancelled in place."""
        self.live -= 1
        if len(self._heap) > 64 and self.live < len(self._heap) // 2:
            self._heap = [entry for entry in self._heap if _waiting(entry[3])]
            heapq.heapify(self._heap)

    def waiting(self, status: TaskStatus | None = None) -> list[MemoryTaskHandle[Any]]:
        """The live tasks (only those in *status*, if given), earliest first; they stay in place."""
        return [
            entry[3]
            for entry in sorted(self._heap)
            if _waiting(entry[3]) and (status is None or entry[3].status is status)
        ]

    def forget(self, task: MemoryTaskHandle[Any]) -> None:
        """Remove the entries a cancelled task left in place, before it waits again.

        A linear scan, for `WorkQueue.retry`; without it an old entry would
        fire at the task's old due time.
        """
        heap = [entry for entry in self._heap if entry[3] is not task]
        if len(heap) != len(self._heap):
            heapq.heapify(heap)
            self._heap = heap


def _waiting(task: MemoryTaskHandle[Any]) -> bool:
    return task.status is SCHEDULED or task.status is RETRYING
