# SPDX-License-Identifier: MIT
"""Argument checks shared by the queue's entry points."""

from __future__ import annotations

import inspect
import math
from datetime import datetime
from typing import Any

CO_COROUTINE = inspect.CO_COROUTINE


def check_async_callable(fn: object) -> None:
    """Raise `TypeError` unless *fn* looks like an async callable.

    Plain ``async def`` functions pass on a fast path. Sync functions,
    coroutine objects and non-callables are rejected; a callable whose kind
    cannot be told statically is accepted (calling it must return an
    awaitable, or the task fails with `TypeError`).
    """
    code = getattr(fn, "__code__", None)
    if code is not None and code.co_flags & CO_COROUTINE:
        return
    if inspect.iscoroutine(fn):
        fn.close()  # we own it now; closing avoids a "never awaited" warning
        raise TypeError(
            "submit() takes an async function and its arguments, not a coroutine object: "
            "write submit(fn, arg) instead of submit(fn(arg))"
        )
    if not callable(fn):
        raise TypeError(f"expected an async function, got {fn!r} ({type(fn).__name__})")
    if inspect.iscoroutinefunction(fn):
        return
    inner: Any = fn
    while hasattr(inner, "func") and hasattr(inner, "args"):  # functools.partial
        inner = inner.func
    if inspect.isclass(inner):
        raise TypeError(f"expected an async function, got the class {inner!r}")
    if inspect.isfunction(inner) or inspect.ismethod(inner) or inspect.isbuiltin(inner):
        if not inspect.iscoroutinefunction(inner):
            kind = (
                "async generator function"
                if inspect.isasyncgenfunction(inner)
                else ("synchronous function")
            )
            raise TypeError(
                f"expected an async function, got the {kind} {inner!r}; "
                "run blocking code with trio.to_thread.run_sync inside an async function"
            )
        return
    call = getattr(inner.__class__, "__call__", None)  # noqa: B004 - we want the class attribute
    if inspect.isfunction(call) and not inspect.iscoroutinefunction(call):
        raise TypeError(f"expected an async callable, but {inner!r} has a synchronous __call__")


def check_name(name: object) -> None:
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str or None, not {type(name).__name__}")


def check_priority(priority: object) -> None:
    if priority.__class__ is not int and (
        isinstance(priority, bool) or not isinstance(priority, int)
    ):
        raise TypeError(f"priority must be an int, not {type(priority).__name__}")


def check_timeout(timeout: object) -> float | None:
    """A per-task timeout: ``None``, or seconds > 0 (``math.inf`` means none)."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            f"timeout must be a number of seconds or None, not {type(timeout).__name__}"
        )
    if not timeout > 0:  # also rejects NaN
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    return None if timeout == math.inf else float(timeout)


def check_count(what: str, value: object, *, minimum: int, allow_inf: bool) -> int | float:
    """A count such as ``workers`` or ``max_buffer_size`` (``math.inf`` where allowed)."""
    if allow_inf and value == math.inf and isinstance(value, float):
        return math.inf
    if isinstance(value, bool) or not isinstance(value, int):
        extra = " or math.inf" if allow_inf else ""
        raise TypeError(f"{what} must be an int{extra}, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")
    return value


def check_aware(at: object) -> datetime:
    if not isinstance(at, datetime):
        raise TypeError(f"at must be a datetime, not {type(at).__name__}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(
            "at must be a timezone-aware datetime (a naive one is ambiguous); "
            "use e.g. datetime.now(timezone.utc) + timedelta(minutes=5)"
        )
    return at


def storable_text(text: str) -> str:
    """*text* as every store can hold it: lone surrogates and NUL characters escaped.

    Not a checkpoint. Exception messages may hold anything; PostgreSQL text
    holds no NUL character and UTF-8 no lone surrogate (``"\\ud800"``).
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode()
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode()
    return text
