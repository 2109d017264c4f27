# SPDX-License-Identifier: MIT
"""The ready set: queued tasks in dispatch order (priority, then FIFO).

Its tasks are the queue's records (`MemoryTaskHandle`): it reads their private
slots as the queue does, with a ``reportPrivateUsage`` waiver on each line.
"""

from __future__ import annotations

import bisect
import heapq
from collections import deque
from collections.abc import Iterator
from typing import Any

from .._core.status import QUEUED
from .handle import MemoryTaskHandle


class ReadySet:
    """Queued tasks, highest priority first and FIFO within a priority.

    One deque per priority level, and the levels in use sorted from highest
    to lowest; emptied levels are kept for reuse (a few of them cost less
    than re-creating a level per task), so the common case (one priority)
    is a deque append and popleft. Cancelled tasks stay in place and are
    skipped when reached; `live` counts the others. Dispatch order is
    decided here and nowhere else.
    """

    __slots__ = ("_levels", "_order", "live")

    #: Drop emptied levels once more than this many exist.
    MAX_LEVELS = 32

    def __init__(self) -> None:
        self._levels: dict[int, deque[MemoryTaskHandle[Any]]] = {}
        self._order: list[int] = []  # negated priorities, ascending: highest first
        self.live = 0

    def push(self, task: MemoryTaskHandle[Any]) -> None:
        priority = task._options.priority  # pyright: ignore[reportPrivateUsage]
        level = self._levels.get(priority)
        if level is None:
            if len(self._order) >= self.MAX_LEVELS:
                self._drop_empty_levels()
            level = self._levels[priority] = deque()
            bisect.insort(self._order, -priority)
        level.append(task)
        self.live += 1

    def pop(self) -> MemoryTaskHandle[Any] | None:
        """The next queued task to run, or None. Skips cancelled entries."""
        levels = self._levels
        for negated in self._order:
            level = levels[-negated]
            while level:
                task = level.popleft()
                if task.status is QUEUED:
                    self.live -= 1
                    return task
        return None

    def _drop_empty_levels(self) -> None:
        for negated in [n for n in self._order if not self._levels[-n]]:
            del self._levels[-negated]
            self._order.remove(negated)

    def discard(self, task: MemoryTaskHandle[Any]) -> None:
        """Account for a queued task that was cancelled in place."""
        self.live -= 1

    def forget(self, task: MemoryTaskHandle[Any]) -> None:
        """Remove the entry a cancelled task left in place, before it is queued again.

        A linear scan, for `WorkQueue.retry`; without it the old entry would
        count as the task's place in line.
        """
        level = self._levels.get(task._options.priority)  # pyright: ignore[reportPrivateUsage]
        if level is not None and task in level:
            level.remove(task)

    def newest_first(self, below: int | None) -> Iterator[tuple[int, MemoryTaskHandle[Any]]]:
        """``(mark, task)`` of the queued tasks, newest first, whose mark is below *below*.

        Each level is in mark order (a task enters it as it becomes queued),
        so the listing is a merge of the levels walked backwards.
        """
        walks = [_newest_first(level, below) for level in self._levels.values()]
        return heapq.merge(*walks, reverse=True)


def _newest_first(
    level: deque[MemoryTaskHandle[Any]], below: int | None
) -> Iterator[tuple[int, MemoryTaskHandle[Any]]]:
    for task in reversed(level):
        if task.status is QUEUED and (below is None or task._mark < below):  # pyright: ignore[reportPrivateUsage]
            yield task._mark, task  # pyright: ignore[reportPrivateUsage]
