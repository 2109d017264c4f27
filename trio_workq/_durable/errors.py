# SPDX-License-Identifier: MIT
"""How the durable queue stores errors, and the errors it raises of its own.

Errors are stored as text (`error_text`), since a task may run in another
process, and come back as `StoredError`.
"""

from __future__ import annotations

import traceback
from typing import Final

from .._core.errors import QueueClosed, TaskNotFound
from .._stores.protocol import StoreError, storable_text

#: The error recorded for an attempt whose worker stopped renewing its lease.
LEASE_EXPIRED_ERROR: Final = (
    "trio_workq.LeaseExpired: the worker running this attempt stopped renewing its lease "
    "(its process died, hung, or lost the store)"
)


class StoredError(Exception):
    """A failed attempt's error as the store keeps it: text, not the exception object.

    Durable tasks may run in another process, so their exceptions are stored
    as text and come back as this type, from `DurableTaskHandle.result` and in
    `TaskInfo.errors`.

    Attributes:
        text: The whole stored text: the ``Type: message`` line, then the
            traceback when there is one.
        summary: The ``Type: message`` line (also ``str()`` of the error).
    """

    text: str
    summary: str

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text
        self.summary = text.split("\n", 1)[0]

    def __str__(self) -> str:
        return self.summary

    def __repr__(self) -> str:
        return f"StoredError({self.summary!r})"


class StoreUnavailable(StoreError):
    """Every store call of a queue's workers has failed for longer than its grace period.

    Raised out of the queue (inside an exception group when the queue runs in
    a nursery) by `open_durable_queue` with a ``store_failure_grace``: a
    store that refuses every write (a read-only file, a lost server) stops
    the workers instead of failing their claims forever. The store's last
    error is its ``__cause__``.
    """


def error_text(exc: BaseException) -> str:
    """How an exception is stored: its ``Type: message`` line, a blank line, the traceback.

    NUL characters and lone surrogates are escaped (see `storable_text`):
    a message may hold anything, a store cannot.
    """
    kind = type(exc)
    name = kind.__qualname__
    if kind.__module__ not in ("builtins", "__main__"):
        name = f"{kind.__module__}.{name}"
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not lose the error
        message = "<str() of the exception failed>"
    summary = f"{name}: {message}" if message else name
    summary = summary.split("\n", 1)[0]  # the full message is in the traceback
    if exc.__traceback__ is None and exc.__cause__ is None and exc.__context__ is None:
        return storable_text(summary)
    return storable_text(f"{summary}\n\n{''.join(traceback.format_exception(exc)).rstrip()}")


def conversion_error(exc: TypeError | ValueError, message: str) -> TypeError | ValueError:
    """A `TypeError` or `ValueError`, as *exc* is, saying *message* (caused by *exc*).

    Not ``type(exc)(message)``: some subclasses take other arguments
    (``UnicodeEncodeError`` takes five).
    """
    error = TypeError(message) if isinstance(exc, TypeError) else ValueError(message)
    error.__cause__ = exc
    return error


def closed_error() -> QueueClosed:
    """The error of a submit once shutdown has begun."""
    return QueueClosed("the queue is shutting down and accepts no new tasks")


def not_found(task_id: str) -> TaskNotFound:
    """The error of a lookup of an id the store does not hold."""
    return TaskNotFound(f"no task with id {task_id!r} in the store (unknown, or purged)")
