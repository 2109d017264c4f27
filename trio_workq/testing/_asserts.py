# SPDX-License-Identifier: MIT
"""`assert_submitted` and `assert_not_submitted`: what was submitted to a queue."""

from __future__ import annotations

import functools
import reprlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, cast

import attrs

from .._core.info import MAX_PAGE_SIZE, TaskInfo
from .._core.registry import names_of
from .._core.status import TaskStatus
from .._durable.queue import DurableWorkQueue
from .._memory.queue import WorkQueue
from ._queue import Call, TaskQueue, call_of

#: At most this many submitted tasks are listed in a failed assertion's message.
MAX_LISTED = 20

TaskRef = Callable[..., Awaitable[Any]] | str
StatusFilter = TaskStatus | str | Iterable[TaskStatus | str]


@attrs.frozen
class _Filter:
    """One assertion's expectations, checked and normalized."""

    fn: Callable[..., Awaitable[Any]] | None
    names: frozenset[str] | None  # None: any name
    args: tuple[Any, ...] | None
    kwargs: Mapping[str, Any] | None
    statuses: frozenset[TaskStatus] | None
    priority: int | None
    label: str  # the expectation, for messages

    @property
    def needs_call(self) -> bool:
        """Whether matching reads the task's function or arguments."""
        return self.fn is not None or self.args is not None or self.kwargs is not None

    def matches_info(self, info: TaskInfo) -> bool:
        if self.names is not None and info.name not in self.names:
            return False
        if self.statuses is not None and info.status not in self.statuses:
            return False
        return self.priority is None or info.priority == self.priority

    def matches_call(self, call: Call | None) -> bool:
        if call is None:
            return False
        if self.fn is not None and call.fn is not self.fn:
            return False
        if self.args is not None and not _same(self.args, call.args):
            return False
        return self.kwargs is None or _same(dict(self.kwargs), dict(call.kwargs))


def _same(expected: object, actual: object) -> bool:
    """Equality, except that a tuple and a list with equal items are the same.

    A JSON store gives tuples back as lists; comparing this way, an
    assertion passes or fails alike on every backend. Items compare with
    ``==`` (so `unittest.mock.ANY` matches anything).
    """
    if isinstance(expected, (list, tuple)) and isinstance(actual, (list, tuple)):
        left = cast("Sequence[object]", expected)
        right = cast("Sequence[object]", actual)
        return len(left) == len(right) and all(map(_same, left, right))
    if isinstance(expected, dict) and isinstance(actual, dict):
        left_map = cast("dict[object, object]", expected)
        right_map = cast("dict[object, object]", actual)
        return left_map.keys() == right_map.keys() and all(
            _same(value, right_map[key]) for key, value in left_map.items()
        )
    return expected == actual


def _statuses(status: StatusFilter | None) -> frozenset[TaskStatus] | None:
    if status is None:
        return None
    items: Iterable[object] = [status] if isinstance(status, str) else status
    if not isinstance(items, Iterable):
        raise TypeError(f"status must be a TaskStatus, a str or several, not {status!r}")
    statuses: set[TaskStatus] = set()
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"status must be a TaskStatus or str, not {type(item).__name__}")
        try:
            statuses.add(TaskStatus(item))
        except ValueError:
            known = ", ".join(s.value for s in TaskStatus)
            raise ValueError(f"unknown status {item!r}; expected one of {known}") from None
    if not statuses:
        raise ValueError("status must name at least one status")
    return frozenset(statuses)


def _make_filter(
    queue: object,
    task: TaskRef | None,
    args: Sequence[Any] | None,
    kwargs: Mapping[str, Any] | None,
    status: StatusFilter | None,
    priority: int | None,
) -> _Filter:
    if not isinstance(queue, (WorkQueue, DurableWorkQueue)):
        raise TypeError(f"expected a trio_workq queue, not {type(queue).__name__}")
    fn: Callable[..., Awaitable[Any]] | None = None
    names: frozenset[str] | None = None
    if task is None:
        label = "any task"
    elif isinstance(task, str):
        names = frozenset([task])
        label = repr(task)
    elif isinstance(task, functools.partial):
        raise TypeError(
            "pass the task's function, and its arguments as args= and kwargs=, "
            "not a functools.partial"
        )
    elif callable(task):
        label = getattr(task, "__qualname__", repr(task))
        if isinstance(queue, DurableWorkQueue):
            # A durable queue stores a task by name: any of the function's names.
            registered = names_of(task)
            if not registered:
                raise TypeError(
                    f"{label} is not a registered task (@trio_workq.task), so a durable "
                    "queue cannot hold it; pass a registered function or a task name"
                )
            names = frozenset(registered)
        else:
            fn = task
    else:
        raise TypeError(f"task must be a function, a task name or None, not {task!r}")
    if args is not None:
        if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
            raise TypeError(f"args must be a tuple or list of arguments, not {args!r}")
        args = tuple(args)
        label += f" args={_short(args)}"
    if kwargs is not None:
        if not isinstance(kwargs, Mapping):
            raise TypeError(f"kwargs must be a mapping, not {kwargs!r}")
        label += f" kwargs={_short(dict(kwargs))}"
    statuses = _statuses(status)
    if statuses is not None:
        label += " status=" + "|".join(sorted(s.value for s in statuses))
    if priority is not None:
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"priority must be an int or None, not {type(priority).__name__}")
        label += f" priority={priority}"
    return _Filter(fn, names, args, kwargs, statuses, priority, label)


_repr = reprlib.Repr()
_repr.maxstring = 40
_repr.maxother = 40


def _short(value: object) -> str:
    return _repr.repr(value)


async def _listing(queue: TaskQueue, name: str | None) -> list[TaskInfo]:
    """Every task the queue holds (with this name), oldest submitted first; pages through all."""
    infos: list[TaskInfo] = []
    cursor: str | None = None
    while True:
        page = await queue.list_tasks(name=name, limit=MAX_PAGE_SIZE, cursor=cursor)
        infos.extend(page.tasks)
        cursor = page.next_cursor
        if cursor is None:
            break
    infos.reverse()
    return infos


async def _matching(queue: TaskQueue, expected: _Filter) -> list[TaskInfo]:
    name = next(iter(expected.names)) if expected.names and len(expected.names) == 1 else None
    found: list[TaskInfo] = []
    for info in await _listing(queue, name):
        if not expected.matches_info(info):
            continue
        if expected.needs_call and not expected.matches_call(await call_of(queue, info)):
            continue
        found.append(info)
    return found


async def _describe_all(queue: TaskQueue) -> str:
    """The tasks the queue holds, one a line, for a failed assertion's message."""
    infos = await _listing(queue, None)
    if not infos:
        return "No task was submitted (or all have expired from the queue's records)."
    lines = [f"Submitted ({len(infos)}, oldest first):"]
    for info in infos[:MAX_LISTED]:
        call = await call_of(queue, info)
        if call is None:
            arguments = "(?)"
        else:
            parts = [_short(arg) for arg in call.args]
            parts += [f"{key}={_short(value)}" for key, value in call.kwargs.items()]
            arguments = f"({', '.join(parts)})"
        lines.append(
            f"  {info.id}: {info.name}{arguments} {info.status.value}, priority {info.priority}"
        )
    if len(infos) > MAX_LISTED:
        lines.append(f"  ... and {len(infos) - MAX_LISTED} more")
    return "\n".join(lines)


async def assert_submitted(
    queue: TaskQueue,
    task: TaskRef | None = None,
    /,
    *,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    status: StatusFilter | None = None,
    priority: int | None = None,
    count: int | None = None,
) -> list[TaskInfo]:
    """Assert that *queue* holds tasks like this; return their snapshots.

    The model is River's ``rivertest.RequireInserted`` and Oban's
    ``assert_enqueued``: each argument given narrows what matches, and
    the assertion fails with a list of what *was* submitted (ids, names,
    arguments, statuses). Always a checkpoint.

    It looks at every task the queue still holds, in any status unless
    *status* says otherwise: the in-memory queue forgets finished tasks
    after its ``retention`` (or beyond ``max_retained``); a durable queue
    purges them after its own. On a durable queue that is the whole store,
    whichever process submitted the task.

    Args:
        queue: Any trio_workq queue: in memory, or durable on any store.
        task: The task's function, or its name (`~trio_workq.TaskInfo.name`), or
            ``None`` for any task. On the in-memory queue a function
            matches the tasks that run it, whatever their name; on a
            durable queue it matches its registered names.
        args: The positional arguments, compared with ``==``, except that
            tuples and lists with equal items are the same on every backend
            (a JSON store gives tuples back as lists). ``None``: any.
            ``unittest.mock.ANY`` stands for any one argument.
        kwargs: The keyword arguments (a task submitted as a
            `functools.partial` has them); ``None``: any, ``{}``: none.
        status: A `~trio_workq.TaskStatus` (or its value), or several: the task is in
            one of them now. ``None``: any.
        priority: The task's priority. ``None``: any.
        count: How many tasks must match exactly. ``None``: at least one.

    Returns:
        The `~trio_workq.TaskInfo` of each matching task, oldest submitted first.

    Raises:
        AssertionError: If no task matches, or not *count* of them.
        TypeError: For a *task* that a durable queue cannot hold (not a
            registered task), or arguments of the wrong type.
        ValueError: For an unknown status or a negative *count*.
    """
    expected = _make_filter(queue, task, args, kwargs, status, priority)
    if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
        raise TypeError(f"count must be an int or None, not {type(count).__name__}")
    if count is not None and count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    found = await _matching(queue, expected)
    if (count is None and found) or len(found) == count:
        return found
    wanted = "at least one task" if count is None else f"{count} task(s)"
    raise AssertionError(
        f"expected {wanted} matching {expected.label}; found {len(found)}.\n"
        + await _describe_all(queue)
    )


async def assert_not_submitted(
    queue: TaskQueue,
    task: TaskRef | None = None,
    /,
    *,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    status: StatusFilter | None = None,
    priority: int | None = None,
) -> None:
    """Assert that *queue* holds no task like this. Always a checkpoint.

    A task matches if it matches every argument given, as for
    `assert_submitted`; one that differs in any of them does not (River's
    ``RequireNotInserted``). With no argument but *queue*, the queue must
    hold no task at all.

    Raises:
        AssertionError: If a task matches; the message lists what was
            submitted.
        TypeError, ValueError: As for `assert_submitted`.
    """
    expected = _make_filter(queue, task, args, kwargs, status, priority)
    found = await _matching(queue, expected)
    if not found:
        return
    ids = ", ".join(info.id for info in found)
    raise AssertionError(
        f"expected no task matching {expected.label}; found {len(found)} (ids {ids}).\n"
        + await _describe_all(queue)
    )
