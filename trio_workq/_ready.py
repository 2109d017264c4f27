# SPDX-License-Identifier: MIT
"""The ready set: queued tasks in dispatch order (priority, then FIFO)."""

from __future__ import annotations

import heapq
from collections import deque
from typing import Any

from ._task import QUEUED, TaskHandle


class ReadySet:
    """Queued tasks, highest priority first and FIFO within a priority.

    One deque per priority level plus a heap of the levels in use, so the
    common case (one priority) is a deque append and popleft. Cancelled tasks
    stay in place and are skipped when reached; `live` counts the others.
    Dispatch order is decided here and nowhere else.
    """

    __slots__ = ("_levels", "_order", "live")

    def __init__(self) -> None:
        self._levels: dict[int, deque[TaskHandle[Any]]] = {}
        self._order: list[int] = []  # a heap of negated priorities
        self.live = 0

    def push(self, task: TaskHandle[Any]) -> None:
        level = self._levels.get(task._priority)
        if level is None:
            level = self._levels[task._priority] = deque()
            heapq.heappush(self._order, -task._priority)
        level.append(task)
        self.live += 1

    def pop(self) -> TaskHandle[Any] | None:
        """The next queued task to run, or None. Skips cancelled entries."""
        while self._order:
            priority = -self._order[0]
            level = self._levels[priority]
            task = level.popleft()
            if not level:
                heapq.heappop(self._order)
                del self._levels[priority]
            if task.status is QUEUED:
                self.live -= 1
                return task
        return None

    def discard(self, task: TaskHandle[Any]) -> None:
        """Account for a queued task that was cancelled in place."""
        self.live -= 1

    def drain(self) -> list[TaskHandle[Any]]:
        """Remove and return every live task, in dispatch order."""
        tasks: list[TaskHandle[Any]] = []
        while (task := self.pop()) is not None:
            tasks.append(task)
        return tasks
