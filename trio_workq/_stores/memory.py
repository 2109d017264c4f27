# SPDX-License-Identifier: MIT
"""`MemoryStore`: the `Store` protocol in the memory of one process, for tests.

No threads and no I/O: every method runs synchronously between two
checkpoints, so it is atomic for trio. Every time it writes comes from one
clock function given at construction, so a test can pass a function of
trio's clock and run a durable queue under ``autojump_clock``.

The claim takes from two heaps: *delayed* (by ``due_at``) holds claimable
tasks not yet due, *ready* (by priority, due time, id) the due ones; a claim
first moves what has fallen due from one to the other. Heap entries are
dropped lazily: an entry counts only while its task's ``_Row.entry`` is that
very entry.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final

import trio

from .._core.info import MAX_ERROR_HISTORY, MAX_PAGE_SIZE, NO_HEADERS
from .._core.status import TaskStatus
from .checks import (
    INT64_MAX,
    check_bytes,
    check_headers,
    check_held,
    check_int,
    check_new_task,
    check_owner,
    check_page,
    check_recovery,
    check_seconds,
    check_text,
    check_time,
    parse_id,
)
from .protocol import (
    CLAIMABLE_STATUSES,
    Claimed,
    NewTask,
    Page,
    Recovery,
    Renewal,
    StoredTask,
    StoreError,
)

#: Failed attempts whose error text a task keeps (the oldest are dropped).
MAX_ERRORS: Final = MAX_ERROR_HISTORY
#: The largest page `MemoryStore.page` returns.
MAX_PAGE: Final = MAX_PAGE_SIZE

_CLAIMABLE: Final = frozenset(CLAIMABLE_STATUSES)
_FINISHED: Final = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})
_REQUEUEABLE: Final = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED})

QUEUED, RUNNING, RETRYING = TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.RETRYING
FAILED, CANCELLED, COMPLETED = TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.COMPLETED

# A heap entry: (due_at, id) in the delayed heap, (-priority, due_at, id) in the ready one.
_Entry = tuple[float, int] | tuple[int, float, int]


class _Row:
    """One task as the store holds it (mutable; `StoredTask` is its snapshot)."""

    __slots__ = (
        "attempts",
        "cancel_requested",
        "created_at",
        "due_at",
        "entry",
        "errors",
        "finished_at",
        "headers",
        "id",
        "lease_until",
        "max_attempts",
        "name",
        "owner",
        "payload",
        "priority",
        "result",
        "started_at",
        "status",
        "timeout",
    )

    def __init__(self, number: int, task: NewTask, now: float) -> None:
        self.id = number
        self.name = task.name
        self.payload = task.payload
        self.status = task.status
        self.priority = task.priority
        self.attempts = 0
        self.max_attempts = task.max_attempts
        self.timeout = None if task.timeout is None else float(task.timeout)
        self.created_at = now
        # A queued task is due at once: its due_at is at most now.
        self.due_at = float(min(task.due_at, now) if task.status is QUEUED else task.due_at)
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.owner: str | None = None
        self.lease_until: float | None = None
        self.cancel_requested = False
        self.result: bytes | None = None
        self.errors: tuple[str, ...] = ()
        # A copy, made when checked: later changes to the caller's mapping are not stored.
        headers = check_headers(task.headers)
        self.headers: Mapping[str, str] = NO_HEADERS if headers is None else headers
        # The heap entry that stands for this row while it is claimable, else None.
        self.entry: _Entry | None = None

    def snapshot(self) -> StoredTask:
        return StoredTask(
            id=str(self.id),
            name=self.name,
            payload=self.payload,
            status=self.status,
            priority=self.priority,
            attempts=self.attempts,
            max_attempts=self.max_attempts,
            timeout=self.timeout,
            created_at=self.created_at,
            due_at=self.due_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            owner=self.owner,
            lease_until=self.lease_until,
            cancel_requested=self.cancel_requested,
            result=self.result,
            errors=self.errors,
            headers=self.headers if self.headers is NO_HEADERS else dict(self.headers),
        )


# --- the one rule a store keeps: cancel wins -------------------------------------------
# The runtime decides where a task goes when its attempt ends without a result (see
# `trio_workq._core.transitions.decide`); the store applies that target, guarded.


def _guarded(row: _Row, status: TaskStatus, due_at: float) -> tuple[TaskStatus, float, bool]:
    """A decided target as (status, due_at, finished), with cancel winning over re-queueing.

    A ``retrying`` or ``queued`` target is due at *due_at*, or ``cancelled``
    if the task's cancellation was requested; a terminal target keeps the
    row's due time and is applied as decided.
    """
    if status is RETRYING or status is QUEUED:
        if row.cancel_requested:
            return CANCELLED, due_at, True
        return status, due_at, False
    return status, row.due_at, True


class MemoryStore:
    """A `Store` held in this process's memory: for tests, gone when the process ends.

    It keeps every guarantee of the `Store` protocol (owner and attempt
    guards, a requested cancel wins, due times, paging, the same errors for
    bad input), without threads or I/O. Every method except the constructor
    is a checkpoint; one that raises `trio.Cancelled` changed nothing.

    Its tasks live in the object: a store may be opened again after
    `aclose` and still holds them, and several queues may share one open
    store (as processes share a database), each `open` matched by one
    `aclose`. ``wait_for_work`` is woken by every write that makes a task
    claimable.

    Args:
        clock: The wall clock every time the store writes comes from, in
            seconds (default `time.time`). Pass a function of trio's clock
            to run a durable queue in virtual time.

    Attributes:
        url: ``"memory:"``.
    """

    url: str

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        if not callable(clock):
            raise TypeError(f"clock must be a callable, not {type(clock).__name__}")
        self.url = "memory:"
        self._clock = clock
        self._opens = 0
        self._rows: dict[int, _Row] = {}  # by id, oldest first
        self._last_id = 0
        self._delayed: list[tuple[float, int]] = []
        self._ready: list[tuple[int, float, int]] = []
        self._running: set[int] = set()
        self._counts = dict.fromkeys(TaskStatus, 0)
        self._work_added = trio.Event()

    def now(self) -> float:
        """The *clock* given at construction, in Unix seconds. Not a checkpoint."""
        return self._clock()

    def __repr__(self) -> str:
        return f"<MemoryStore {len(self._rows)} tasks>"

    # --- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        """Make the store usable; it keeps the tasks it held before. Checkpoints."""
        await trio.lowlevel.checkpoint()
        self._opens += 1

    async def aclose(self) -> None:
        """Match one `open`; the last one makes the store refuse calls. Checkpoints.

        Safe to call twice, and before `open`. The tasks are kept.
        """
        await trio.lowlevel.checkpoint()
        self._opens = max(self._opens - 1, 0)

    # --- helpers -------------------------------------------------------------

    async def _enter(self) -> float:
        """The checkpoint before an operation, then its ``now``; StoreError when closed."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if not self._opens:
            raise StoreError("the memory store is not open")
        return self._clock()

    def _set_status(self, row: _Row, status: TaskStatus) -> None:
        self._counts[row.status] -= 1
        self._counts[status] += 1
        row.status = status
        if status is RUNNING:
            self._running.add(row.id)
        else:
            self._running.discard(row.id)

    def _make_claimable(self, row: _Row, status: TaskStatus, due_at: float, now: float) -> None:
        self._set_status(row, status)
        row.due_at = due_at
        row.finished_at = None
        if due_at <= now:
            self._push_ready(row)
        else:
            entry = (due_at, row.id)
            heapq.heappush(self._delayed, entry)
            row.entry = entry
        self._work_added.set()

    def _push_ready(self, row: _Row) -> None:
        entry = (-row.priority, row.due_at, row.id)
        heapq.heappush(self._ready, entry)
        row.entry = entry

    def _end_attempt(self, row: _Row, decision: tuple[TaskStatus, float, bool], now: float) -> None:
        """Apply a decision to a row that was running: owner and lease are cleared."""
        status, due_at, finished = decision
        row.owner = None
        row.lease_until = None
        if status in _CLAIMABLE:
            self._make_claimable(row, status, due_at, now)
        else:
            self._set_status(row, status)
            row.due_at = due_at
            row.finished_at = now if finished else None

    def _held(self, owner: str, task_id: str, attempt: int) -> _Row | None:
        number = check_held(owner, task_id, attempt, max_attempts=INT64_MAX)
        row = None if number is None else self._rows.get(number)
        if row is None or row.status is not RUNNING or row.owner != owner:
            return None
        return row if row.attempts == attempt else None

    def _add_error(self, row: _Row, error: str) -> None:
        row.errors = (*row.errors, error)[-MAX_ERRORS:]

    # --- Store methods -------------------------------------------------------

    async def add(self, tasks: Sequence[NewTask]) -> list[str]:
        """Insert *tasks* at once; return their ids, in order. Checkpoints.

        Raises:
            ValueError, TypeError: A task is malformed; nothing is inserted.
            StoreDataError: A name holds a lone surrogate; nothing is inserted.
        """
        if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Sequence):
            raise TypeError(f"tasks must be a sequence of NewTask, not {type(tasks).__name__}")
        checked = [check_new_task(task, max_attempts=INT64_MAX) for task in tasks]
        now = await self._enter()
        ids: list[str] = []
        for task in checked:
            self._last_id += 1
            row = _Row(self._last_id, task, now)
            self._rows[row.id] = row
            self._counts[row.status] += 1
            self._make_claimable(row, row.status, row.due_at, now)
            ids.append(str(row.id))
        await trio.lowlevel.cancel_shielded_checkpoint()
        return ids

    async def claim(self, owner: str, limit: int, lease_seconds: float) -> Claimed:
        """Take up to *limit* due tasks, highest priority first, then earliest due, then oldest.

        Checkpoints.
        """
        check_owner(owner)
        check_int("limit", limit, minimum=1, maximum=INT64_MAX)
        check_seconds("lease_seconds", lease_seconds)
        now = await self._enter()
        rows = self._rows
        delayed, ready = self._delayed, self._ready
        while delayed and delayed[0][0] <= now:
            entry = heapq.heappop(delayed)
            row = rows.get(entry[1])
            if row is not None and row.entry is entry:
                self._push_ready(row)
        claimed: list[StoredTask] = []
        while ready and len(claimed) < limit:
            ready_entry = heapq.heappop(ready)
            row = rows.get(ready_entry[2])
            if row is None or row.entry is not ready_entry:
                continue  # the task changed since: a stale entry
            if row.due_at > now:  # the clock went back since it fell due
                row.entry = (row.due_at, row.id)
                heapq.heappush(delayed, row.entry)
                continue
            row.entry = None
            self._set_status(row, RUNNING)
            row.attempts += 1
            row.owner = owner
            row.started_at = now
            row.lease_until = now + lease_seconds
            claimed.append(row.snapshot())
        next_due = None
        while delayed:
            entry = delayed[0]
            row = rows.get(entry[1])
            if row is not None and row.entry is entry:
                next_due = entry[0]
                break
            heapq.heappop(delayed)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return Claimed(tuple(claimed), next_due)

    async def renew(self, owner: str, ids: Sequence[str], lease_seconds: float) -> Renewal:
        """Extend the leases of the running tasks *ids* held by *owner*. Checkpoints.

        Ids that are unknown, not running or held by another owner are
        reported ``lost``.
        """
        check_owner(owner)
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
            raise TypeError(f"ids must be a sequence of str, not {type(ids).__name__}")
        check_seconds("lease_seconds", lease_seconds)
        numbers = {task_id: parse_id(task_id) for task_id in ids}
        now = await self._enter()
        lost: set[str] = set()
        cancel_requested: set[str] = set()
        for task_id, number in numbers.items():
            row = None if number is None else self._rows.get(number)
            if row is None or row.status is not RUNNING or row.owner != owner:
                lost.add(task_id)
                continue
            row.lease_until = now + lease_seconds
            if row.cancel_requested:
                cancel_requested.add(task_id)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return Renewal(frozenset(lost), frozenset(cancel_requested))

    async def complete(self, owner: str, task_id: str, attempt: int, result: bytes) -> bool:
        """Mark a running task ``completed``; False if *owner* no longer holds *attempt*.

        Checkpoints.
        """
        check_bytes("result", result)
        row = self._held(owner, task_id, attempt)
        now = await self._enter()
        if row is not None:
            self._complete(row, result, now)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return row is not None

    def _complete(self, row: _Row, result: bytes, now: float) -> None:
        self._set_status(row, COMPLETED)
        row.result = result
        row.finished_at = now
        row.owner = None
        row.lease_until = None

    async def complete_many(
        self, owner: str, completions: Sequence[tuple[str, int, bytes]]
    ) -> list[bool]:
        """`complete` for several ``(task_id, attempt, result)`` at once. Checkpoints.

        Returns one flag per item, in order: False where *owner* no longer
        holds that attempt.

        Raises:
            ValueError, TypeError: An item is malformed; nothing is changed.
        """
        check_owner(owner)
        items: list[tuple[tuple[str, int], bytes]] = []
        for task_id, attempt, result in completions:
            check_bytes("result", result)
            self._held(owner, task_id, attempt)  # checks the arguments
            items.append(((task_id, attempt), result))
        now = await self._enter()
        flags: list[bool] = []
        for (task_id, attempt), result in items:
            # Looked up again: an earlier item of this call may have completed it.
            row = self._held(owner, task_id, attempt)
            if row is not None:
                self._complete(row, result, now)
            flags.append(row is not None)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return flags

    async def fail(
        self, owner: str, task_id: str, attempt: int, error: str, retry_at: float | None
    ) -> TaskStatus | None:
        """Apply a failed attempt's target: ``retrying`` until *retry_at*, else ``failed``.

        *error* is appended to the task's errors (the last `MAX_ERRORS` are
        kept). Cancel wins: a task whose cancellation was requested ends
        ``cancelled`` instead of retrying (a ``failed`` target stays
        ``failed``). Checkpoints. Returns the status written, or ``None``
        (and nothing changed) if *owner* no longer holds *attempt*.

        Raises:
            StoreDataError: *error* holds a lone surrogate.
        """
        check_text("error", error)
        if retry_at is not None:
            check_time("retry_at", retry_at)
        row = self._held(owner, task_id, attempt)
        now = await self._enter()
        written = None
        if row is not None:
            self._add_error(row, error)
            if retry_at is None:
                self._end_attempt(row, _guarded(row, FAILED, row.due_at), now)
            else:
                self._end_attempt(row, _guarded(row, RETRYING, float(retry_at)), now)
            written = row.status
        await trio.lowlevel.cancel_shielded_checkpoint()
        return written

    async def finish_cancelled(self, owner: str, task_id: str, attempt: int) -> bool:
        """Mark a running task that was cancelled ``cancelled``; False if no longer held.

        Checkpoints.
        """
        row = self._held(owner, task_id, attempt)
        now = await self._enter()
        if row is not None:
            self._end_attempt(row, (CANCELLED, row.due_at, True), now)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return row is not None

    async def release(self, owner: str, task_id: str, attempt: int) -> TaskStatus | None:
        """Give back a running task interrupted by shutdown: ``queued``, due now.

        The interrupted attempt is not counted. Cancel wins: a task whose
        cancellation was requested ends ``cancelled``. Checkpoints. Returns
        the status written, or ``None`` if *owner* no longer holds *attempt*.
        """
        row = self._held(owner, task_id, attempt)
        now = await self._enter()
        written = None
        if row is not None:
            row.attempts -= 1
            self._end_attempt(row, _guarded(row, QUEUED, now), now)
            written = row.status
        await trio.lowlevel.cancel_shielded_checkpoint()
        return written

    async def cancel(self, task_id: str) -> TaskStatus | None:
        """Cancel a task from anywhere; return the status it had, or ``None`` if unknown.

        A queued, scheduled or retrying task becomes ``cancelled``; a running
        one gets ``cancel_requested``; a finished one is left alone.
        Checkpoints.
        """
        number = parse_id(task_id)
        now = await self._enter()
        row = None if number is None else self._rows.get(number)
        status = None if row is None else row.status
        if row is not None:
            if status in _CLAIMABLE:
                row.entry = None
                self._set_status(row, CANCELLED)
                row.finished_at = now
            elif status is RUNNING:
                row.cancel_requested = True
        await trio.lowlevel.cancel_shielded_checkpoint()
        return status

    async def requeue(self, task_id: str) -> TaskStatus | None:
        """Run a ``failed`` or ``cancelled`` task again, as one more attempt, due now.

        Its attempts and errors are kept; ``max_attempts`` is raised to
        ``attempts + 1`` if it was used up. Returns the status it had
        (unchanged unless failed or cancelled), or ``None`` if unknown.
        Checkpoints.
        """
        number = parse_id(task_id)
        now = await self._enter()
        row = None if number is None else self._rows.get(number)
        status = None if row is None else row.status
        if row is not None and status in _REQUEUEABLE:
            row.cancel_requested = False
            row.result = None
            row.max_attempts = max(row.max_attempts, row.attempts + 1)
            self._make_claimable(row, QUEUED, now, now)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return status

    async def get(self, task_id: str) -> StoredTask | None:
        """The task with this id, or ``None`` (also for an id this store never makes).

        Checkpoints.
        """
        number = parse_id(task_id)
        await self._enter()
        row = None if number is None else self._rows.get(number)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return None if row is None else row.snapshot()

    async def page(
        self,
        *,
        status: TaskStatus | None,
        name: str | None,
        limit: int,
        cursor: str | None,
    ) -> Page:
        """Tasks newest first (by id), optionally of one status and/or name. Checkpoints.

        Raises:
            ValueError: *limit* is not in 1..`MAX_PAGE`, or *cursor* is not
                one this store returned.
            TypeError: *status* is not a `TaskStatus`, or *name* not a str.
        """
        before = check_page(status, name, limit, cursor) or INT64_MAX
        await self._enter()
        found: list[_Row] = []
        # Newest first; a scan, which is fine for the store of a test.
        for number in reversed(self._rows):
            if number >= before:
                continue
            row = self._rows[number]
            if (status is None or row.status is status) and (name is None or row.name == name):
                found.append(row)
                if len(found) > limit:  # one more row tells whether a next page exists
                    break
        tasks = tuple(row.snapshot() for row in found[:limit])
        await trio.lowlevel.cancel_shielded_checkpoint()
        return Page(tasks, tasks[-1].id if len(found) > limit else None)

    async def counts(self) -> dict[TaskStatus, int]:
        """How many tasks the store holds in each status (every status is a key). Checkpoints."""
        await self._enter()
        counts = dict(self._counts)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return counts

    async def oldest_due_age(self) -> float | None:
        """Seconds since the earliest due time of a due claimable task, or ``None``. Checkpoints.

        Scans the rows: this store is for tests.
        """
        now = await self._enter()
        oldest = min(
            (
                row.due_at
                for row in self._rows.values()
                if row.status in _CLAIMABLE and math.isfinite(row.due_at) and row.due_at <= now
            ),
            default=None,
        )
        await trio.lowlevel.cancel_shielded_checkpoint()
        return None if oldest is None else now - oldest

    async def expired(self, limit: int) -> tuple[StoredTask, ...]:
        """Up to *limit* running tasks whose lease has run out, oldest lease first.

        Changes nothing (see `recover`). *limit* is 1..`MAX_PAGE`. Checkpoints.
        """
        check_int("limit", limit, minimum=1, maximum=MAX_PAGE)
        now = await self._enter()
        expired = sorted(
            (row.lease_until, row.id)
            for row in map(self._rows.__getitem__, self._running)
            if row.lease_until is not None and row.lease_until < now
        )[:limit]
        tasks = tuple(self._rows[number].snapshot() for _, number in expired)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return tasks

    async def recover(self, recoveries: Sequence[Recovery]) -> int:
        """Apply decided targets to tasks whose lease expired, all at once.

        Each applies only while its row is still running, held by the
        expired owner at that attempt, with its lease still expired; cancel
        wins as in `fail`. Returns how many rows changed. Checkpoints.

        Raises:
            ValueError, TypeError: A recovery is malformed; nothing is changed.
        """
        items: list[tuple[int, Recovery, float]] = []
        for raw in recoveries:
            item, due = check_recovery(raw, max_attempts=INT64_MAX)
            number = parse_id(item.task_id)
            if number is not None:
                items.append((number, item, math.nan if due is None else due))
        now = await self._enter()
        recovered = 0
        for number, item, due in items:
            row = self._rows.get(number)
            if (
                row is None
                or row.status is not RUNNING
                or row.owner != item.owner
                or row.attempts != item.attempt
                or row.lease_until is None
                or not row.lease_until < now
            ):
                continue  # renewed, finished, re-claimed or recovered since `expired`
            self._add_error(row, item.error)
            self._end_attempt(row, _guarded(row, item.status, due), now)
            recovered += 1
        await trio.lowlevel.cancel_shielded_checkpoint()
        return recovered

    async def purge_finished(self, older_than: float) -> int:
        """Delete finished tasks whose ``finished_at`` is before *older_than*; return the count.

        Checkpoints.
        """
        check_time("older_than", older_than)
        await self._enter()
        old = [
            row
            for row in self._rows.values()
            if row.status in _FINISHED
            and row.finished_at is not None
            and row.finished_at < older_than
        ]
        for row in old:
            del self._rows[row.id]
            self._counts[row.status] -= 1
        await trio.lowlevel.cancel_shielded_checkpoint()
        return len(old)

    async def wait_for_work(self, timeout: float) -> None:  # noqa: ASYNC109 - Store's poll interval
        """Return when a task became claimable since the last wake-up, or after *timeout* seconds.

        A wake-up is kept until a waiter returns, so work added between a
        claim and this call is not missed. *timeout* is in trio's time.
        Checkpoints.

        Raises:
            ValueError: *timeout* is negative or NaN.
        """
        check_seconds("timeout", timeout, allow_zero=True, allow_inf=True)
        await self._enter()
        event = self._work_added
        with trio.move_on_after(timeout):
            await event.wait()
        if event.is_set() and event is self._work_added:
            self._work_added = trio.Event()
