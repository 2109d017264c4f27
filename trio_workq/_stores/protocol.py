# SPDX-License-Identifier: MIT
"""The storage seam: what a durable queue asks of its store.

A store keeps every task as one row of plain data. The queue never reads the
store's tables; it calls the methods of `Store`, each one a single atomic
operation (one transaction), so SQLite and PostgreSQL implement the same
contract. Times are wall-clock Unix seconds (several processes and hosts share
a store, so trio's per-run clock cannot be used there).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol, cast

import attrs

from .._core.info import NO_HEADERS
from .._core.status import TaskStatus
from .._core.validate import storable_text as storable_text

#: Statuses a worker may claim a task from (once its ``due_at`` has passed).
CLAIMABLE_STATUSES = (TaskStatus.QUEUED, TaskStatus.SCHEDULED, TaskStatus.RETRYING)


class StoreError(Exception):
    """The store cannot be used: unreachable, not a task database, or a newer schema."""


class StoreDataError(StoreError):
    """The store refused the data of one call: text it cannot hold, a value out of range.

    The store itself is fine and retrying the same call cannot help, so the
    queue never retries it: the task concerned fails with this error instead.
    Stores raise it for their driver's data errors (``sqlite3.DataError``,
    ``psycopg.DataError``) and for text that cannot be encoded (a lone
    surrogate, ``"\\ud800"``).
    """


#: How the error recorded for a task whose stored row cannot be read begins.
CORRUPT_TASK_ERROR: Final = "trio_workq.CorruptTask"

# Times outside this range (about years -1200 to 5100) are not Unix times a
# queue wrote, and datetime cannot represent some of them.
_MAX_ABS_TIME: Final = 1e11
_SHOWN: Final = 80  # characters of a bad value quoted in the error


@attrs.frozen
class NewTask:
    """A task to add to a store.

    Attributes:
        name: The registered task name (see `trio_workq.task`).
        payload: The serialized arguments.
        priority: Higher runs first.
        due_at: Unix time at which it may first run. A ``queued`` task is
            due at once: a store may lower a later ``due_at`` to its now.
        max_attempts: How many runs its retry policy allows (1 without one).
        timeout: Seconds one attempt may run, or ``None``.
        status: ``queued`` (due now) or ``scheduled``.
        headers: Small metadata carried with the task for integrations,
            ``str`` to ``str`` (trace propagation: ``traceparent``,
            ``tracestate``); collected from the queue's submit hooks.
            Stored as given and read back by every read; never
            interpreted by the store.
    """

    name: str
    payload: bytes
    priority: int
    due_at: float
    max_attempts: int
    timeout: float | None
    status: TaskStatus
    headers: Mapping[str, str] = attrs.field(default=NO_HEADERS, hash=False)


@attrs.frozen
class StoredTask:
    """One task row as the store holds it.

    Attributes:
        id: The store's id for the task (unique within the store).
        attempts: Runs started so far; a claim increments it, so the claimed
            row carries the attempt number the worker is running.
        owner: Which worker process holds the task while it runs
            (``None`` in every other status).
        lease_until: When that hold expires unless renewed (``None`` when
            not running).
        cancel_requested: Someone asked to cancel it while it ran. Such a
            task never becomes claimable again: a retry, release or
            recovery ends it ``cancelled`` instead.
        result: The serialized return value of a completed task.
        errors: Text (message and traceback) of each failed attempt,
            oldest first.
        headers: The task's `NewTask.headers`. Advisory: stored headers
            that cannot be read (a corrupt row) read as none, and the task
            still runs.
    """

    id: str
    name: str
    payload: bytes
    status: TaskStatus
    priority: int
    attempts: int
    max_attempts: int
    timeout: float | None
    created_at: float
    due_at: float | None
    started_at: float | None
    finished_at: float | None
    owner: str | None
    lease_until: float | None
    cancel_requested: bool
    result: bytes | None
    errors: tuple[str, ...]
    headers: Mapping[str, str] = attrs.field(default=NO_HEADERS, hash=False)


@attrs.frozen
class Claimed:
    """What `Store.claim` returns.

    Attributes:
        tasks: The claimed tasks, now ``running`` and leased to the caller.
        next_due: The earliest ``due_at`` among claimable tasks that are
            not due yet, or ``None``: the caller may sleep until then.
    """

    tasks: tuple[StoredTask, ...]
    next_due: float | None


@attrs.frozen
class Renewal:
    """What `Store.renew` returns.

    Attributes:
        lost: Ids the caller no longer holds (lease expired and recovered,
            or finished elsewhere): stop them, never record their outcome.
        cancel_requested: Ids still held whose cancellation was requested.
    """

    lost: frozenset[str]
    cancel_requested: frozenset[str]


@attrs.frozen
class Recovery:
    """The runtime's decision for one task whose lease expired; see `Store.recover`.

    Attributes:
        task_id: The task, as `Store.expired` returned it.
        owner: The holder whose lease expired (the row's ``owner``).
        attempt: The attempt it held (the row's ``attempts``; it counts).
        status: The decided target: ``retrying``, ``failed`` or ``cancelled``.
        error: Appended to the task's errors.
        due_at: For ``retrying``, the Unix time the next attempt is due;
            ignored otherwise.
    """

    task_id: str
    owner: str | None
    attempt: int
    status: TaskStatus
    error: str
    due_at: float | None


#: The statuses `Store.recover` applies.
RECOVERY_STATUSES: Final = (TaskStatus.RETRYING, TaskStatus.FAILED, TaskStatus.CANCELLED)


@attrs.frozen
class Page:
    """A page of tasks, newest first, and the cursor of the next page (``None`` at the end)."""

    tasks: tuple[StoredTask, ...]
    next_cursor: str | None


class Store(Protocol):
    """The operations a durable queue performs on its storage.

    Every method is one atomic operation, committed before it returns, and a
    checkpoint. Methods that act for a worker take its *owner* id and the
    *attempt* it runs, and change the row only while that worker still holds
    that attempt (so a worker that lost its lease cannot overwrite a newer
    attempt).

    Who decides what: the runtime decides every transition (River's driver
    model), with ``trio_workq._core.transitions.decide``: "attempt *k* of task
    *X* becomes ``retrying`` due at *T* with this error" (or ``failed``,
    ``cancelled``, ``completed``, given back). The store only *applies* the
    target, atomically, under two guards: the row is still held by that
    owner at that attempt (else nothing changes and the call says so), and
    *cancel wins*: a task whose cancellation was requested is never made
    claimable again, so a ``retrying`` or given-back target becomes
    ``cancelled`` (terminal targets are applied as decided). Calls that can
    meet that guard return the status they wrote. Lease recovery is split
    the same way: ``expired`` reads the rows whose lease ran out, the runtime
    decides each one (its task's retry policy and backoff), and ``recover``
    applies the targets, each guarded by the expired holder (owner and
    attempt) still holding it with its lease still expired: a row renewed,
    finished or recovered by another process meanwhile is left alone, so
    concurrent recoverers are safe.

    Bad input raises `ValueError`/`TypeError` and changes nothing;
    an unusable store raises `StoreError`, and data the store cannot hold
    (text it cannot encode, say) `StoreDataError`, which is never retried.
    A row that cannot be read must not raise: reads describe it in its
    errors, and ``claim`` fails it instead of handing it out.
    """

    url: str

    def now(self) -> float:
        """The current time, in Unix seconds, of the clock this store's times use.

        Every time the runtime sends (``due_at``, ``retry_at``, ``older_than``)
        and reads back is on this clock: the runtime computes due times,
        backoffs and retention from it and maps it to trio's time once, when
        the queue opens. A store shared by processes uses the wall clock
        (`time.time`); a store for tests may follow trio's clock, so that a
        durable queue runs in virtual time. Not a checkpoint; must not block.
        """
        ...

    async def open(self) -> None:
        """Connect, create or migrate the schema, start background threads."""
        ...

    async def aclose(self) -> None:
        """Release connections and threads. Safe to call twice."""
        ...

    async def add(self, tasks: Sequence[NewTask]) -> list[str]:
        """Insert *tasks* in one transaction; return their ids, in order.

        Each task's ``headers`` are stored with it and returned by every
        read of its row (``claim``, ``get``, ``page``, ``expired``);
        headers whose keys or values are not ``str`` raise `TypeError`
        and nothing is inserted.
        """
        ...

    async def claim(self, owner: str, limit: int, lease_seconds: float) -> Claimed:
        """Take up to *limit* due tasks, highest priority first, then earliest due, then oldest.

        Each becomes ``running`` with ``attempts + 1``, ``owner`` and
        ``lease_until = now + lease_seconds``.
        """
        ...

    async def renew(self, owner: str, ids: Sequence[str], lease_seconds: float) -> Renewal:
        """Extend the leases of the running tasks *ids* held by *owner*."""
        ...

    async def complete(self, owner: str, task_id: str, attempt: int, result: bytes) -> bool:
        """Mark a running task ``completed``; False if *owner* no longer holds *attempt*."""
        ...

    async def complete_many(
        self, owner: str, completions: Sequence[tuple[str, int, bytes]]
    ) -> list[bool]:
        """`complete` for several ``(task_id, attempt, result)`` at once, in one transaction.

        Returns one flag per item, in order: False where *owner* no longer
        holds that attempt (that row is left as it is; the others are still
        completed).
        """
        ...

    async def fail(
        self, owner: str, task_id: str, attempt: int, error: str, retry_at: float | None
    ) -> TaskStatus | None:
        """Apply a failed attempt's target: ``retrying`` until *retry_at*, else ``failed``.

        *error* is appended to the task's errors (a store keeps at least the
        last 10). Cancel wins: a task whose cancellation was requested ends
        ``cancelled`` instead of ``retrying`` (a ``failed`` target stays
        ``failed``). Returns the status written, or ``None`` (nothing
        changed) if *owner* no longer holds *attempt*.
        """
        ...

    async def finish_cancelled(self, owner: str, task_id: str, attempt: int) -> bool:
        """Mark a running task that was cancelled ``cancelled``; False if no longer held."""
        ...

    async def release(self, owner: str, task_id: str, attempt: int) -> TaskStatus | None:
        """Give back a running task interrupted by shutdown: ``queued``, due now.

        The interrupted attempt is not counted (``attempts - 1``), owner and
        lease are cleared. Cancel wins: a task whose cancellation was
        requested ends ``cancelled`` instead. Returns the status written, or
        ``None`` (nothing changed) if *owner* no longer holds *attempt*.
        """
        ...

    async def cancel(self, task_id: str) -> TaskStatus | None:
        """Cancel a task from anywhere.

        A queued, scheduled or retrying task becomes ``cancelled`` at once;
        a running one gets ``cancel_requested`` (its owner stops it and
        calls `finish_cancelled`). Returns the status the task had, or
        ``None`` if the id is unknown; a finished task is left as it is.
        """
        ...

    async def requeue(self, task_id: str) -> TaskStatus | None:
        """Run a ``failed`` or ``cancelled`` task again, as one more attempt, due now.

        It becomes ``queued``; its attempts and errors are kept, its
        ``cancel_requested`` is cleared, and ``max_attempts`` is raised to
        ``attempts + 1`` if it was used up (so one more attempt is allowed).
        Returns the status it had (unchanged unless it was failed or
        cancelled), or ``None`` if the id is unknown.
        """
        ...

    async def get(self, task_id: str) -> StoredTask | None:
        """The task with this id, or ``None`` (also for an id this store would never make)."""
        ...

    async def page(
        self,
        *,
        status: TaskStatus | None,
        name: str | None,
        limit: int,
        cursor: str | None,
    ) -> Page:
        """Tasks newest first (by id), optionally of one status and/or name.

        *limit* is 1..1000 (else `ValueError`). *cursor* is ``None`` for the
        first page, then the previous page's ``next_cursor``; a cursor this
        store did not make raises `ValueError`.
        """
        ...

    async def counts(self) -> dict[TaskStatus, int]:
        """How many tasks the store holds in each status (every status is a key)."""
        ...

    async def oldest_due_age(self) -> float | None:
        """How long the most overdue task has been waiting to run, in seconds.

        The store's now minus the earliest ``due_at`` among claimable tasks
        (queued, scheduled, retrying) that are due by the store's clock;
        ``None`` when no task is due. A corrupt ``due_at`` is left out.
        """
        ...

    async def expired(self, limit: int) -> tuple[StoredTask, ...]:
        """Up to *limit* running tasks whose lease has run out (their worker died), oldest first.

        Changes nothing: the runtime decides each one's target and passes it
        to `recover`. *limit* is 1..1000 (else `ValueError`).
        """
        ...

    async def recover(self, recoveries: Sequence[Recovery]) -> int:
        """Apply decided targets to tasks whose lease expired, in one transaction.

        Each target is applied only while its row is still ``running``, held
        by the expired *owner* at *attempt*, with its lease still expired
        (re-checked in the statement that changes it, so a task renewed,
        finished, re-claimed or recovered elsewhere meanwhile is left alone);
        cancel wins as in `fail`. The error is appended to the task's errors.
        Returns how many rows changed.
        """
        ...

    async def purge_finished(self, older_than: float) -> int:
        """Delete finished tasks whose ``finished_at`` is before *older_than*; return the count."""
        ...

    async def wait_for_work(self, timeout: float) -> None:
        """Return when new tasks may have arrived (a hint from elsewhere), or after *timeout*."""
        ...


# ------------------------------------------------------------ reading rows

_STATUS_BY_VALUE: Final = {status.value: status for status in TaskStatus}


def _is_int(value: object) -> bool:
    return type(value) is int


def _is_time(value: object) -> bool:
    # Also false for NaN and infinities.
    return (
        isinstance(value, (int, float))
        and type(value) is not bool
        and (-_MAX_ABS_TIME < value < _MAX_ABS_TIME)
    )


def read_row(row: Sequence[Any]) -> tuple[StoredTask, str | None]:
    """A `StoredTask` from a row's 18 column values, and what was wrong with them.

    Not a checkpoint. Both stores read every row through this, so that one
    corrupt row (edited by hand, written by an old bug) never stops a
    worker, a listing or the dashboard. Values of the wrong type are
    replaced (numbers by 0 or 1, optional values by ``None``, times by 0,
    unreadable errors by none) and described in the second item, the
    ``trio_workq.CorruptTask: ...`` error text, or ``None`` for a sound
    row. That text is also appended to the task's errors (unless it is
    already the last one), so listings show it. A store's ``claim`` must
    not hand out a corrupt row: it fails it instead (`fail_corrupt`).

    The columns, in order: id, name, payload, status, priority, attempts,
    max_attempts, timeout, created_at, due_at, started_at, finished_at,
    owner, lease_until, cancel_requested, result, errors (a JSON list as
    text, or a sequence of str), headers (a JSON object as text, a mapping,
    or NULL). Headers that cannot be read are left out (`read_headers`):
    they never make a row corrupt.
    """
    (
        task_id,
        name,
        payload,
        status_value,
        priority,
        attempts,
        max_attempts,
        timeout,
        created_at,
        due_at,
        started_at,
        finished_at,
        owner,
        lease_until,
        cancel_requested,
        result,
        errors_value,
        headers_value,
    ) = row
    bad: list[str] = []
    if type(name) is not str:
        _wrong(bad, "name", name, "text")
        name = str(name)[:_SHOWN]
    if type(payload) is not bytes:
        _wrong(bad, "payload", payload, "bytes")
        payload = b""
    status = _STATUS_BY_VALUE.get(status_value) if type(status_value) is str else None
    if status is None:
        _wrong(bad, "status", status_value, "a status")
        status = TaskStatus.FAILED
    if not _is_int(priority):
        _wrong(bad, "priority", priority, "an integer")
        priority = 0
    if not _is_int(attempts):
        _wrong(bad, "attempts", attempts, "an integer")
        attempts = 0
    if not _is_int(max_attempts):
        _wrong(bad, "max_attempts", max_attempts, "an integer")
        max_attempts = 1
    if timeout is not None and not ((type(timeout) is float or _is_int(timeout)) and timeout > 0):
        # NaN and zero fail "> 0": a deadline can be neither.
        _wrong(bad, "timeout", timeout, "a number of seconds > 0 or NULL")
        timeout = None
    if not _is_time(created_at):
        _wrong(bad, "created_at", created_at, "a Unix time")
        created_at = 0.0
    if not _is_time(due_at):
        _wrong(bad, "due_at", due_at, "a Unix time")
        due_at = 0.0
    if started_at is not None and not _is_time(started_at):
        _wrong(bad, "started_at", started_at, "a Unix time or NULL")
        started_at = None
    if finished_at is not None and not _is_time(finished_at):
        _wrong(bad, "finished_at", finished_at, "a Unix time or NULL")
        finished_at = None
    if owner is not None and type(owner) is not str:
        _wrong(bad, "owner", owner, "text or NULL")
        owner = None
    if lease_until is not None and not _is_time(lease_until):
        _wrong(bad, "lease_until", lease_until, "a Unix time or NULL")
        lease_until = None
    if type(cancel_requested) is not bool:
        if _is_int(cancel_requested):  # SQLite's 0 and 1
            cancel_requested = bool(cancel_requested)
        else:
            _wrong(bad, "cancel_requested", cancel_requested, "a boolean")
            cancel_requested = False
    if result is not None and type(result) is not bytes:
        _wrong(bad, "result", result, "bytes or NULL")
        result = None
    errors = _read_errors(errors_value)
    if errors is None:
        _wrong(bad, "errors", errors_value, "a list of error texts")
        errors = ()
    problem = None
    if bad:
        problem = (
            f"{CORRUPT_TASK_ERROR}: the stored row of task {task_id} cannot be read: "
            + "; ".join(bad)
        )
        if not errors or errors[-1] != problem:
            errors = (*errors, problem)
    task = StoredTask(
        id=str(task_id),
        name=name,
        payload=payload,
        status=status,
        priority=priority,
        attempts=attempts,
        max_attempts=max_attempts,
        timeout=timeout,
        created_at=created_at,
        due_at=due_at,
        started_at=started_at,
        finished_at=finished_at,
        owner=owner,
        lease_until=lease_until,
        cancel_requested=cancel_requested,
        result=result,
        errors=errors,
        headers=read_headers(headers_value),
    )
    return task, problem


def read_headers(value: object) -> Mapping[str, str]:
    """The headers a ``headers`` column holds: JSON text, a mapping, or NULL. Not a checkpoint.

    Anything else (text that is not a JSON object, keys or values that are
    not strings) reads as no headers: they are advisory metadata, and a
    task whose headers are damaged still runs.
    """
    if value is None:
        return NO_HEADERS
    if type(value) is str:
        try:
            value = json.loads(value)
        except ValueError:
            return NO_HEADERS
    if not isinstance(value, dict):
        return NO_HEADERS
    items = cast("dict[object, object]", value)
    if not items or not all(type(k) is str and type(v) is str for k, v in items.items()):
        return NO_HEADERS
    return cast("dict[str, str]", items)


def _wrong(bad: list[str], column: str, value: object, expected: str) -> None:
    shown = repr(value)
    if len(shown) > _SHOWN:
        shown = shown[:_SHOWN] + "..."
    bad.append(f"{column} holds {shown}, not {expected}")


def _read_errors(value: object) -> tuple[str, ...] | None:
    """The error texts of an ``errors`` column (JSON text or a sequence), or None if unreadable."""
    if type(value) is str:
        if value == "[]":
            return ()
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, (list, tuple)):
        return None
    items = tuple(cast("Sequence[object]", value))
    if not all(type(item) is str for item in items):
        return None
    return cast("tuple[str, ...]", items)
