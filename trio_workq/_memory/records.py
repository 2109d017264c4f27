# SPDX-License-Identifier: MIT
"""Finished task records: kept for lookups, forgotten by count and age in batches.

Its tasks are the queue's records (`MemoryTaskHandle`): it reads their private
slots as the queue does, with a ``reportPrivateUsage`` waiver on each line.
"""

from __future__ import annotations

import operator
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from typing import Any

from .._core.status import CANCELLED, COMPLETED, FAILED, TaskStatus
from .handle import MemoryTaskHandle

_mark_of: Callable[[MemoryTaskHandle[Any]], int] = operator.attrgetter("_mark")
_finished_of: Callable[[MemoryTaskHandle[Any]], float] = operator.attrgetter("_finished")

#: Records beyond the limits are forgotten in batches of at most this many.
MAX_SLACK = 1024


class RetainedRecords:
    """Finished tasks, oldest first, with one list per terminal status for listings.

    A record is kept until there are more than *max_count* newer ones or it
    is older than *max_age* seconds. Forgetting one record per finished task
    would cost the hot path a call and a few list operations each time, so
    records are forgotten in batches: up to 1/16 of *max_count* (at most
    `MAX_SLACK`) extra records may wait before a batch is cut. Every read
    calls `trim` first, so lookups always see exactly what the limits allow.

    All lists are in finish order, which is also mark order and order of
    ``_finished`` times, so cuts are slices and cursors are bisections.
    """

    __slots__ = (
        "_by_status",
        "_max_age",
        "_max_count",
        "_order",
        "_registry",
        "_slack",
        "_trim_at",
    )

    def __init__(
        self,
        registry: dict[int, MemoryTaskHandle[Any]],
        max_count: int | float,
        max_age: float | None,
    ) -> None:
        self._registry = registry  # the queue's id index: forgotten records leave it too
        self._max_count = max_count
        self._max_age = max_age
        self._order: list[MemoryTaskHandle[Any]] = []
        self._by_status: dict[TaskStatus, list[MemoryTaskHandle[Any]]] = {
            COMPLETED: [],
            FAILED: [],
            CANCELLED: [],
        }
        self._slack = 0 if max_count < 16 else int(min(MAX_SLACK, max_count // 16))
        self._trim_at = self._slack

    def __len__(self) -> int:
        return len(self._order)

    def add(self, task: MemoryTaskHandle[Any]) -> None:
        """Keep a task that has just reached its terminal status (``_finished`` set)."""
        self._by_status[task.status].append(task)
        order = self._order
        order.append(task)
        if len(order) >= self._trim_at:
            self.trim(task._finished)  # type: ignore[arg-type]

    def trim(self, now: float) -> None:
        """Forget every record the limits no longer allow, as of *now*."""
        order = self._order
        excess = len(order) - self._max_count
        cut = int(excess) if excess > 0 else 0
        if self._max_age is not None:
            cut = max(cut, bisect_right(order, now - self._max_age, key=_finished_of))
        if cut:
            counts = dict.fromkeys(self._by_status, 0)
            registry = self._registry
            for task in order[:cut]:
                counts[task.status] += 1
                del registry[task._seq]  # pyright: ignore[reportPrivateUsage]
            del order[:cut]
            for status, count in counts.items():
                if count:
                    del self._by_status[status][:count]
        self._trim_at = len(order) + self._slack

    def kept(self, status: TaskStatus) -> int:
        """How many records of tasks that ended in this terminal status are kept."""
        return len(self._by_status[status])

    def remove(self, task: MemoryTaskHandle[Any]) -> None:
        """Take one record out (a linear scan: for rare operator actions)."""
        self._order.remove(task)
        self._by_status[task.status].remove(task)

    def newest_first(
        self, status: TaskStatus, below: int | None
    ) -> Iterator[tuple[int, MemoryTaskHandle[Any]]]:
        """``(mark, task)`` pairs of one status, newest first, whose mark is below *below*."""
        tasks = self._by_status[status]
        end = len(tasks) if below is None else bisect_left(tasks, below, key=_mark_of)
        for index in range(end - 1, -1, -1):
            task = tasks[index]
            yield task._mark, task  # pyright: ignore[reportPrivateUsage]
