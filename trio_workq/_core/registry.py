# SPDX-License-Identifier: MIT
"""Named tasks: the ``@trio_workq.task`` decorator and the process-wide registry.

A durable store keeps a task as its registered *name* and its serialized
arguments; the process that runs it finds the function again by that name.
So only functions another process can import are registered: module-level
``async def`` functions, not lambdas, closures, nested functions or methods.
"""

from __future__ import annotations

import enum
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar, cast, overload

import attrs

from .info import task_name
from .retry import RetryPolicy
from .validate import storable_text

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


class _Unset(enum.Enum):
    """The type of `QUEUE_DEFAULT`."""

    UNSET = "UNSET"


#: ``retry=`` left out: the queue's default policy applies.
QUEUE_DEFAULT: Final = _Unset.UNSET


@attrs.frozen
class TaskDefinition:
    """One registration: a name, the function it runs, and its retry policy.

    Attributes:
        name: The name stored with each task.
        fn: The async function.
        retry: Its `RetryPolicy`, ``None`` for no retries, or
            `QUEUE_DEFAULT` for the queue's default.
    """

    name: str
    fn: Callable[..., Awaitable[Any]]
    retry: RetryPolicy | _Unset | None


def policy_for(
    definition: TaskDefinition | None, default: RetryPolicy | None
) -> RetryPolicy | None:
    """The retry policy that applies to a task: its definition's, else the queue's *default*.

    *definition* is ``None`` for a name this process does not know (a task
    recovered from a dead worker may be one). Not a checkpoint.
    """
    if definition is None or definition.retry is QUEUE_DEFAULT:
        return default
    return definition.retry


# name -> definition, and function -> its definitions (one function may have several names).
_by_name: dict[str, TaskDefinition] = {}
_by_function: dict[Callable[..., Awaitable[Any]], list[TaskDefinition]] = {}

#: The registered functions (a live, read-only view): ``fn in REGISTERED_FUNCTIONS`` is the
#: in-memory queue's cheap test on its hot path before it calls `registration_of`.
REGISTERED_FUNCTIONS: Final = _by_function.keys()


@overload
def task(fn: F, /) -> F: ...


@overload
def task(
    *, name: str | None = None, retry: RetryPolicy | _Unset | None = QUEUE_DEFAULT
) -> Callable[[F], F]: ...


def task(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    retry: RetryPolicy | _Unset | None = QUEUE_DEFAULT,
) -> F | Callable[[F], F]:
    """Register an async function as a named task that durable queues can store and run.

    Use it bare (``@trio_workq.task``) or with options
    (``@trio_workq.task(name="send_email", retry=RetryPolicy(max_attempts=5))``).
    The function is returned unchanged, so it can still be called directly.
    Every process that runs the task must import the module that registers it.

    The same function may be registered under several names (each with its
    own retry policy); its first name is the default at submit.
    Registering the same module-level function again under the same name
    (a module imported twice, or reloaded) replaces the registration.

    Args:
        name: The name stored with each task; defaults to the function's
            ``module:qualname``. Choose a stable name if the function may
            move: stored tasks find their function by it.
        retry: The task's `RetryPolicy`, ``None`` for no retries, or left
            out for the queue's default policy.

    Raises:
        TypeError: For something that cannot be stored by name: not an
            async function, a lambda, a nested function or closure, or a
            method; or bad option types.
        ValueError: If *name* is empty, holds a NUL character or a lone
            surrogate (no store could hold it), or is already registered to
            a different function.
    """
    if name is not None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str or None, not {type(name).__name__}")
        if not name.strip():
            raise ValueError("name must not be empty")
        if name != storable_text(name):
            # Every stored task carries it: a store that cannot hold it fails every submit.
            raise ValueError(f"name must not hold NUL characters or lone surrogates: {name!r}")
    if retry is not QUEUE_DEFAULT and retry is not None and not isinstance(retry, RetryPolicy):
        raise TypeError(f"retry must be a RetryPolicy or None, not {type(retry).__name__}")

    def register(fn: F) -> F:
        _check_storable(fn)
        definition = TaskDefinition(name if name is not None else task_name(fn), fn, retry)
        _add(definition)
        return fn

    if fn is not None:
        return register(fn)
    return register


def _check_storable(fn: object) -> None:
    if inspect.ismethod(fn):
        raise TypeError(
            f"cannot register the bound method {fn!r} as a task: another process cannot "
            "rebuild its object; register a module-level async function"
        )
    if not inspect.isfunction(fn):
        raise TypeError(
            f"only module-level async functions can be registered as tasks, got {fn!r} "
            f"({type(fn).__name__})"
        )
    if fn.__name__ == "<lambda>":
        raise TypeError(
            "a lambda cannot be registered as a task: another process cannot import it; "
            "define a module-level async function"
        )
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(f"{fn.__qualname__} is not an async function (async def)")
    if "<locals>" in fn.__qualname__:
        raise TypeError(
            f"{fn.__qualname__} is nested in a function (a closure or local function): "
            "another process cannot import it; define it at module level"
        )


def _add(definition: TaskDefinition) -> None:
    existing = _by_name.get(definition.name)
    if existing is not None and existing.fn is not definition.fn:
        if task_name(existing.fn) != task_name(definition.fn):
            raise ValueError(
                f"the task name {definition.name!r} is already registered to "
                f"{task_name(existing.fn)}; choose another name for {task_name(definition.fn)}"
            )
        # The same module-level function from a second import or a reload: the newer wins.
        _forget(existing)
    elif existing is not None:
        _forget(existing)
    _by_name[definition.name] = definition
    _by_function.setdefault(definition.fn, []).append(definition)


def _forget(definition: TaskDefinition) -> None:
    del _by_name[definition.name]
    definitions = _by_function[definition.fn]
    definitions.remove(definition)
    if not definitions:
        del _by_function[definition.fn]


def definition_for(fn: object, name: str | None) -> TaskDefinition:
    """The registration to store a submit of *fn* under (its first name, or *name*).

    Raises:
        TypeError: If *fn* is not a registered task (with a hint why).
        ValueError: If *name* is not one of *fn*'s registered names.
    """
    definitions: list[TaskDefinition] | None
    try:
        definitions = _by_function.get(cast("Callable[..., Awaitable[Any]]", fn))
    except TypeError:  # unhashable
        definitions = None
    if not definitions:
        raise TypeError(_not_registered_message(fn))
    if name is None:
        return definitions[0]
    for definition in definitions:
        if definition.name == name:
            return definition
    names = ", ".join(repr(d.name) for d in definitions)
    raise ValueError(f"{task_name(fn)} is registered as {names}, not as {name!r}")


def registration_of(fn: object, name: str | None) -> TaskDefinition | None:
    """The registration a submit of *fn* (or of a `functools.partial` of it) uses, if any.

    For the in-memory queue, which runs any async function: a registered one
    takes its registration's name (the first, or *name* if it is one of
    them) and retry policy, as on a durable queue. ``None`` for a function
    that is not registered, or a *name* it is not registered under (a
    free label in memory). Not a checkpoint.
    """
    definitions: list[TaskDefinition] | None
    try:
        definitions = _by_function.get(cast("Callable[..., Awaitable[Any]]", fn))
    except TypeError:  # unhashable
        return None
    if definitions is None:
        if not isinstance(fn, functools.partial):
            return None
        return registration_of(fn.func, name)  # pyright: ignore[reportUnknownMemberType]
    if name is None:
        return definitions[0]
    for definition in definitions:
        if definition.name == name:
            return definition
    return None


def _not_registered_message(fn: object) -> str:
    if inspect.iscoroutine(fn):
        fn.close()  # we own it now; closing avoids a "never awaited" warning
        return (
            "submit() takes a task function and its arguments, not a coroutine object: "
            "write submit(fn, arg) instead of submit(fn(arg))"
        )
    if getattr(fn, "__name__", None) == "<lambda>":
        return (
            "a lambda cannot be stored: a durable queue stores tasks by name; "
            "define a module-level async function decorated with @trio_workq.task"
        )
    if inspect.isfunction(fn) and "<locals>" in fn.__qualname__:
        return (
            f"{fn.__qualname__} is a nested function or closure and cannot be stored; "
            "define a module-level async function decorated with @trio_workq.task"
        )
    return (
        f"{task_name(fn)} is not a registered task: decorate it with @trio_workq.task "
        "so that a durable queue can store it by name"
    )


def lookup(name: str) -> TaskDefinition | None:
    """The registration for a stored task's *name*, or ``None`` if this process has none."""
    return _by_name.get(name)


def registered_names() -> list[str]:
    """Every registered task name, sorted."""
    return sorted(_by_name)
