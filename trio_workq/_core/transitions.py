# SPDX-License-Identifier: MIT
"""The transition decision: how an attempt ended -> the task's next status.

Both queues call `decide` when an attempt ends other than by returning (the
in-memory worker completes a task inline: its hot path makes no call), and
the durable queue calls it for every task it recovers from a dead worker.
The decision is plain data; the queues apply it (the durable queue through
its store, which only guards it: see `trio_workq._stores.protocol.Store`).
No trio, no I/O, no queue imports.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Final, NamedTuple, TypeAlias, cast

from .retry import RetryPolicy, retry_delay
from .status import CANCELLED, COMPLETED, FAILED, QUEUED, RETRYING, TaskStatus


class Ending(enum.Enum):
    """How one attempt of a task ended."""

    #: The task returned a value.
    RETURNED = "returned"
    #: The task raised an exception; a timed-out attempt ends so too, with `TaskTimeout`.
    RAISED = "raised"
    #: The task raised an exception while it was being cancelled (its ``cancel()``,
    #: or an enclosing scope: a forced shutdown). Cancellation is never retried.
    RAISED_WHILE_CANCELLED = "raised while cancelled"
    #: The attempt failed in a way no retry can help (durable: nothing to run
    #: under that name, arguments that cannot be decoded, a result the store
    #: cannot hold).
    UNRETRYABLE = "unretryable"
    #: The task was cancelled on request and the cancellation reached its top.
    CANCELLED = "cancelled"
    #: Its worker died: the lease ran out (durable). The attempt counts; it is
    #: retried while attempts remain, after the policy's backoff (whatever
    #: ``retry_on`` and ``retry_if`` say: the task did not fail, as for `Retry`).
    LOST = "lost"
    #: Shutdown interrupted it (durable): it is given back, the attempt uncounted.
    INTERRUPTED = "interrupted"


class Transition(NamedTuple):
    """The decided next state of a task.

    Attributes:
        status: ``completed``, ``retrying``, ``failed``, ``cancelled``, or
            ``queued`` for a task given back (durable: released, due now,
            its attempt not counted).
        error: The error to record as the attempt's: the task's own, or the
            exception of a broken policy (``backoff`` or ``retry_if``
            raised; its ``__context__`` is the task's error). ``None`` when
            nothing failed.
        due: For ``retrying``, when the next attempt is due (the caller's
            clock, as *now*); else ``None``.
    """

    status: TaskStatus
    error: BaseException | None
    due: float | None


_COMPLETED = Transition(COMPLETED, None, None)
_RELEASED = Transition(QUEUED, None, None)

# Module constants: an enum member read through its class costs ~0.2 us in 3.11,
# and a failure checks several (the in-memory retry path is measured).
_RAISED: Final = Ending.RAISED
_LOST: Final = Ending.LOST
_RETURNED: Final = Ending.RETURNED
_CANCELLED: Final = Ending.CANCELLED
_INTERRUPTED: Final = Ending.INTERRUPTED
# A Transition built without NamedTuple's keyword handling (half the cost).
_Fields: TypeAlias = "tuple[TaskStatus, BaseException | None, float | None]"
_new: Final = cast(
    "Callable[[type[Transition], _Fields], Transition]",
    tuple.__new__,  # pyright: ignore[reportUnknownMemberType] - typed by the cast
)


def decide(
    ending: Ending,
    error: BaseException | None,
    *,
    attempts: int,
    max_attempts: int,
    policy: RetryPolicy | None,
    now: float,
    cancel_retries: bool = False,
) -> Transition:
    """The next state of a task whose attempt number *attempts* ended as *ending*.

    Not a checkpoint; never raises for a broken policy (see `Transition.error`).

    Args:
        ending: How the attempt ended.
        error: What it raised (for `Ending.LOST`, the error to record).
        attempts: Attempts made so far, this one included.
        max_attempts: The bound that applies: the durable queue's stored
            one wins over the policy's, which may have changed since submit.
        policy: The task's retry policy, or ``None``. A lost attempt of a
            task without one is retried at once while attempts remain.
        now: The current time, in the clock `Transition.due` is wanted in.
        cancel_retries: No new attempt may start (``shutdown(cancel_queued=True)``):
            a task that would be retried ends ``cancelled`` instead.
    """
    if ending is not _RAISED and ending is not _LOST:
        if ending is _RETURNED:
            return _COMPLETED
        if ending is _CANCELLED:
            return _new(Transition, (CANCELLED, error, None))
        if ending is _INTERRUPTED:
            return _RELEASED
        # RAISED_WHILE_CANCELLED, UNRETRYABLE: never retried.
        return _new(Transition, (FAILED, error, None))
    assert error is not None
    if attempts >= max_attempts:
        return _new(Transition, (FAILED, error, None))
    lost = ending is _LOST
    if policy is None:
        if not lost:
            return _new(Transition, (FAILED, error, None))
        delay: float | None = 0.0
    else:
        try:
            delay = retry_delay(policy, attempts, error, lost)
        except Exception as policy_error:  # a broken backoff or retry_if fails the task
            policy_error.__context__ = error
            return _new(Transition, (FAILED, policy_error, None))
    if delay is None:
        return _new(Transition, (FAILED, error, None))
    if cancel_retries:
        return _new(Transition, (CANCELLED, error, None))
    return _new(Transition, (RETRYING, error, now + delay))
