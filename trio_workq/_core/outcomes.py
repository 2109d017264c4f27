# SPDX-License-Identifier: MIT
"""How a worker reads what a task attempt raised (shared by both queues)."""

from __future__ import annotations

import sys
from typing import cast

import trio

if sys.version_info < (3, 11):  # pragma: no cover - trio depends on the backport there
    from exceptiongroup import BaseExceptionGroup


def split_attempt_error(exc: BaseException) -> tuple[BaseException | None, Exception | None]:
    """Split what a task attempt raised into ``(to_raise, task_error)``. Not a checkpoint.

    *to_raise* is what the worker must re-raise, so that the cancel scopes
    sort it out; *task_error* is the task's own failure, to record.

    * An `Exception` (an `ExceptionGroup` of ordinary exceptions included):
      ``(None, exc)``, the task failed.
    * `trio.Cancelled`, or a group of nothing else: ``(exc, None)``. The
      worker's scope catches it if it was the task's ``cancel()`` or
      timeout; a cancellation of an enclosing scope goes on.
    * A group of `trio.Cancelled` *and* ordinary exceptions, e.g. a task
      whose nursery child raised in a ``finally`` while being cancelled:
      ``(the Cancelled part, the ordinary part)``. The attempt was cancelled
      (the Cancelled reached the top), and these errors were raised on the
      way out: they are the task's to record, never the queue's to raise.
    * Anything holding another `BaseException` (`KeyboardInterrupt`,
      `SystemExit`, ...): ``(exc, None)``, it must propagate as it is.
    """
    if isinstance(exc, Exception):
        return None, exc
    if not isinstance(exc, BaseExceptionGroup):
        return exc, None
    group = cast("BaseExceptionGroup[BaseException]", exc)
    cancelled, rest = group.split(trio.Cancelled)
    if cancelled is None or rest is None:
        return group, None
    errors, others = rest.split(Exception)
    if others is not None or not isinstance(errors, Exception):
        return group, None
    # (A BaseExceptionGroup of ordinary exceptions is built as an ExceptionGroup.)
    return cancelled, errors
