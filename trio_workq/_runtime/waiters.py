# SPDX-License-Identifier: MIT
"""A FIFO of parked trio tasks, each waiting for a value."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

import outcome
import trio

P = TypeVar("P")


class Waiters(Generic[P]):
    """Trio tasks parked in arrival order, each holding a payload.

    The waker acts on the payload for the waiter before waking it
    (`trio.lowlevel.reschedule`), so a woken waiter never has to re-check and
    possibly lose a race. A cancelled waiter leaves the line, and nothing it
    carried was acted on.
    """

    __slots__ = ("_line",)

    def __init__(self) -> None:
        self._line: deque[tuple[trio.lowlevel.Task, P]] = deque()

    def __len__(self) -> int:
        return len(self._line)

    async def wait(self, payload: P) -> None:
        """Park the calling task until `wake_first` or `wake_all` wakes it.

        Always a checkpoint (a scheduling point); raises `trio.Cancelled`
        only if nobody has woken it yet.
        """
        entry = (trio.lowlevel.current_task(), payload)
        self._line.append(entry)

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            self._line.remove(entry)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def wake_first(self, error: BaseException | None = None) -> P:
        """Wake the first waiter (raising *error* in it, if given); return its payload."""
        task, payload = self._line.popleft()
        trio.lowlevel.reschedule(
            task, outcome.Value(None) if error is None else outcome.Error(error)
        )
        return payload

    def wake_payload(self, payload: P) -> None:
        """Wake the waiter holding *payload* (by identity), if it is in the line."""
        for entry in self._line:
            if entry[1] is payload:
                self._line.remove(entry)
                trio.lowlevel.reschedule(entry[0], outcome.Value(None))
                return

    def wake_all_but(self, keep: P | None, make_error: Callable[[], BaseException]) -> None:
        """Wake every waiter but the one holding *keep* (by identity) with ``make_error()``."""
        line = self._line
        kept = [entry for entry in line if entry[1] is keep]
        while line:
            task, payload = line.popleft()
            if payload is not keep:
                trio.lowlevel.reschedule(task, outcome.Error(make_error()))
        line.extend(kept)

    def wake_all(self, make_error: Callable[[], BaseException] | None = None) -> None:
        """Wake every waiter, raising ``make_error()`` in each if given."""
        while self._line:
            self.wake_first(None if make_error is None else make_error())
