# SPDX-License-Identifier: MIT
# The runtime's services share `_Attempt` (this package's record of a task: each writes
# the private times and errors of the attempts it ends) and the queue's event source;
# events and hooks read the record through `TaskRecord`. This module waives the rule.
# pyright: reportPrivateUsage=false
"""The executor: the worker loop, one claimed attempt at a time in a reused cancel scope.

Each worker takes a claimed attempt, runs it in its cancel scope (timeout,
cancel requests, a lost lease and shutdown all cancel that scope), and
decides from how the attempt ended which outcome the completer writes.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Awaitable, Callable
from typing import Any, cast

import trio

from .._core.errors import TaskTimeout
from .._core.outcomes import split_attempt_error
from .._core.registry import TaskDefinition, lookup
from .._core.status import RUNNING
from .._core.transitions import Ending
from .._runtime.events import AttemptSignal, logger, set_current
from .attempt import _Attempt
from .completer import Completer
from .runtime import CLEANUP_TIMEOUT, Runtime
from .serialize import load_arguments

if sys.version_info < (3, 11):  # pragma: no cover - trio depends on the backport there
    from exceptiongroup import BaseExceptionGroup


class Executor:
    """Runs claimed attempts (`run` is one worker) and hands their outcomes to the completer."""

    def __init__(self, rt: Runtime, completer: Completer) -> None:
        self._rt = rt
        self._completer = completer

    def _next_attempt(self) -> _Attempt | None:
        """A claimed attempt for a free worker, or None (none ready, or shutting down)."""
        rt = self._rt
        ready = rt.ready
        while ready and not rt.closing:
            attempt = ready.popleft()
            if not attempt.lost:
                return attempt
        return None

    async def run(self) -> None:  # noqa: ASYNC910 - private; runs until cancelled
        """Run claimed attempts, each in the worker's cancel scope, and record their outcomes.

        One cancel scope serves many attempts (a fresh scope per task is
        slow); it is replaced once a cancellation or a timeout has used it.
        The outcome is written while the scope is entered but no longer
        reachable: ``attempt.scope`` is cleared and the deadline reset first.
        """
        rt = self._rt
        attempt: _Attempt | None = None
        try:
            while True:
                scope = trio.CancelScope()
                raced: tuple[_Attempt, Any, Exception | None] | None = None
                # Errors raised next to the Cancelled that stopped the task (its cleanup failed).
                cleanup_errors: Exception | None = None
                with scope:
                    while True:
                        attempt = self._next_attempt()
                        if attempt is None:
                            rt.worker_idle.set()
                            await rt.idle.wait(None)
                            continue
                        started = rt.clock.current_time()
                        call = self._prepare(attempt, started)
                        if call is None:  # cancelled before it started, or cannot run
                            await self._finish_unrunnable(attempt)
                            attempt = None
                            continue
                        rt.busy += 1
                        timeout = attempt.timeout
                        if timeout is not None:
                            scope.deadline = started + timeout
                        attempt.scope = scope
                        set_current(attempt)
                        rt.set_status(attempt, RUNNING)
                        value: Any = None
                        error: Exception | None = None
                        try:
                            value = await call()
                        except Exception as exc:
                            error = exc
                        except BaseExceptionGroup as group:
                            # Cancelled beside the task's own errors (a child's finally):
                            # only the Cancelled goes on, and this scope catches it if it
                            # is its own (timeout, cancel, lost lease, shutdown): the task
                            # ends below. KeyboardInterrupt & co. go on as they are.
                            to_raise, cleanup_errors = split_attempt_error(group)
                            if to_raise is None or cleanup_errors is None:
                                raise
                            raise to_raise from None
                        finally:
                            # In this worker's task, whatever ended the call (integrations
                            # that set context at `started` restore it here).
                            if rt.events._attempt_hooks:
                                rt.signal(attempt, AttemptSignal.RAN)
                        attempt.scope = None
                        if timeout is not None:
                            scope.deadline = math.inf
                        rt.busy -= 1
                        if scope.cancel_called:
                            # A cancellation raced the task's end: write outside this scope.
                            raced = (attempt, value, error)
                            break
                        await self._finish(attempt, value, error)
                        attempt = None
                if raced is not None:
                    await self._finish(*raced)
                elif attempt is not None:
                    # The scope caught the Cancelled: lost lease, cancel, shutdown or timeout.
                    attempt.scope = None
                    rt.busy -= 1
                    await self._finish_cancelled(attempt, cleanup_errors)
                attempt = None
        except BaseException:
            # Cancelled from outside (the enclosing nursery) or KeyboardInterrupt & co:
            # give the running task back to the store, so that another worker runs it soon.
            if attempt is not None and rt.held.get(attempt.id) is attempt:
                if attempt.scope is not None:
                    attempt.scope = None
                    rt.busy -= 1
                with trio.CancelScope(shield=True, deadline=trio.current_time() + CLEANUP_TIMEOUT):
                    await self._completer.release(attempt)
            raise

    def _prepare(self, attempt: _Attempt, started: float) -> Callable[[], Awaitable[Any]] | None:
        """Start *attempt*: its function and arguments, or None if it must not run."""
        attempt._started = started
        attempt._due = None
        if attempt.cancel_requested:
            return None
        definition = lookup(attempt.name)
        try:
            if definition is None:
                raise LookupError(
                    f"no task named {attempt.name!r} is registered in this process "
                    "(import the module that defines it in every worker)"
                )
            attempt.definition = definition
            return self._load_call(definition, attempt.payload)
        except Exception as exc:
            attempt._last_error = exc
            return None

    async def _finish_unrunnable(self, attempt: _Attempt) -> None:
        if attempt.cancel_requested:
            await self._completer.record_cancelled(attempt)
        else:
            # Nothing to run (unknown name, bad arguments): retrying cannot help.
            assert attempt._last_error is not None
            self._rt.set_status(attempt, RUNNING)
            error = cast("Exception", attempt._last_error)
            await self._completer.record_failure(attempt, error, Ending.UNRETRYABLE)

    async def _finish(  # noqa: ASYNC910 - private; a lost attempt records nothing
        self, attempt: _Attempt, value: Any, error: Exception | None
    ) -> None:
        """Record how an attempt that ran to its end (value or exception) ended."""
        completer = self._completer
        if attempt.lost:
            self._rt.unhold(attempt)
            self._rt.signal(attempt, AttemptSignal.LOST)
        elif error is not None:
            if attempt.interrupted and not attempt.cancel_requested:
                await completer.release(attempt)  # it failed because shutdown interrupted it
            else:
                # A task that fails while being cancelled is not retried: it ends
                # failed with its error, as in the in-memory queue.
                ending = (
                    Ending.RAISED_WHILE_CANCELLED if attempt.cancel_requested else Ending.RAISED
                )
                await completer.record_failure(attempt, error, ending)
        else:
            await completer.record_success(attempt, value)

    async def _finish_cancelled(  # noqa: ASYNC910 - private
        self, attempt: _Attempt, cleanup_errors: Exception | None = None
    ) -> None:
        """Record an attempt whose cancel scope caught the Cancelled.

        *cleanup_errors* are errors the task raised while being cancelled:
        they become the cause of its `TaskTimeout`, or are logged with its
        cancellation (as the in-memory queue does).
        """
        completer = self._completer
        if attempt.lost:
            self._rt.unhold(attempt)
            self._rt.signal(attempt, AttemptSignal.LOST)
        elif attempt.cancel_requested:
            if cleanup_errors is not None:
                logger.warning(
                    "task %s (%s) was cancelled and raised errors while unwinding",
                    attempt.id,
                    attempt.name,
                    exc_info=cleanup_errors,
                )
            await completer.record_cancelled(attempt)
        elif attempt.interrupted:
            await completer.release(attempt)
        else:
            timeout = TaskTimeout(f"task timed out after {attempt.timeout}s")
            timeout.__cause__ = cleanup_errors
            await completer.record_failure(attempt, timeout, Ending.RAISED)

    def _load_call(
        self, definition: TaskDefinition, payload: bytes
    ) -> Callable[[], Awaitable[Any]]:
        if payload == self._rt.no_arguments:
            return definition.fn
        # Damaged or foreign bytes raise ValueError: this task fails, not the worker.
        args, kwargs = load_arguments(self._rt.serializer, payload)
        return functools.partial(definition.fn, *args, **kwargs)
