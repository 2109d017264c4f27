# SPDX-License-Identifier: MIT
"""Finished task records of one terminal status, oldest first, seekable by mark."""

from __future__ import annotations

import operator
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from ._task import TaskHandle

_mark_of: Callable[[TaskHandle[Any]], int] = operator.attrgetter("_mark")


class FinishedRecords:
    """A list with a moving head: appends at the end, expiry from the front.

    Records are appended as tasks finish, so they are in mark order and a
    listing finds its cursor by bisection on a plain list (a deque would
    walk its blocks for every probe). The consumed head is cut off once it
    is the larger part of the list.
    """

    __slots__ = ("_head", "_tasks", "append")

    def __init__(self) -> None:
        self._tasks: list[TaskHandle[Any]] = []
        self._head = 0
        #: Add a record (the list's own method: one call less per finished task).
        self.append = self._tasks.append

    def __len__(self) -> int:
        return len(self._tasks) - self._head

    def popleft(self) -> TaskHandle[Any]:
        task = self._tasks[self._head]
        self._head += 1
        if self._head * 2 > len(self._tasks):
            del self._tasks[: self._head]  # in place: `append` stays bound to this list
            self._head = 0
        return task

    def remove(self, task: TaskHandle[Any]) -> None:
        """Remove one record (a linear scan: for rare operator actions)."""
        index = self._tasks.index(task, self._head)
        del self._tasks[index]

    def newest_first(self, below: int | None) -> Iterator[tuple[int, TaskHandle[Any]]]:
        """``(mark, task)`` pairs, newest first, of the records whose mark is below *below*."""
        tasks = self._tasks
        end = len(tasks) if below is None else bisect_left(tasks, below, self._head, key=_mark_of)
        for index in range(end - 1, self._head - 1, -1):
            task = tasks[index]
            yield task._mark, task
