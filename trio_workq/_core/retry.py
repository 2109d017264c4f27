# SPDX-License-Identifier: MIT
"""Retry policies and backoff schedules."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any, TypeAlias

import attrs

from .errors import Retry, check_seconds

#: A backoff: ``(attempt, exc) -> seconds`` to wait after failed attempt number
#: *attempt* (1 for the first run) ended with *exc*.
Backoff: TypeAlias = Callable[[int, BaseException], float]

#: A retry decision: ``(exc, attempt) -> bool``.
RetryDecision: TypeAlias = Callable[[BaseException, int], bool]


@attrs.frozen
class FixedBackoff:
    """Wait the same *delay* before every retry. Build it with `fixed`."""

    delay: float

    def __call__(self, attempt: int, exc: BaseException) -> float:
        return self.delay


@attrs.frozen
class ExponentialBackoff:
    """``initial * multiplier ** (attempt - 1)``, capped at *max_delay*.

    With *jitter*, the delay is drawn uniformly from ``[0, capped delay]``
    ("full jitter"), which spreads retries of tasks that failed together.
    Build it with `exponential`.
    """

    initial: float
    multiplier: float
    max_delay: float
    jitter: bool
    _random: Callable[[], float] = attrs.field(default=random.random, repr=False, eq=False)

    def __call__(self, attempt: int, exc: BaseException) -> float:
        capped = self.max_delay
        if self.multiplier == 1 or self.initial == 0:
            capped = min(self.initial, self.max_delay)
        elif self.initial < self.max_delay:
            # The exponent at which the cap is reached; past it, no huge power is computed.
            exponent = attempt - 1
            if exponent < math.log(self.max_delay / self.initial, self.multiplier):
                try:
                    capped = min(self.initial * self.multiplier**exponent, self.max_delay)
                except OverflowError:  # the power alone overflows for tiny initials
                    capped = self.max_delay
        if self.jitter:
            return capped * self._random()
        return capped


def fixed(delay: float) -> FixedBackoff:
    """A backoff that waits *delay* seconds before every retry.

    Raises:
        ValueError, TypeError: If *delay* is not a finite number >= 0.
    """
    return FixedBackoff(check_seconds("delay", delay))


def exponential(
    initial: float = 0.1,
    multiplier: float = 2.0,
    max_delay: float = 30.0,
    *,
    jitter: bool = True,
) -> ExponentialBackoff:
    """An exponential backoff with an upper bound and optional full jitter.

    The delay after attempt *n* is ``min(max_delay, initial * multiplier ** (n - 1))``;
    with *jitter* it is drawn uniformly between 0 and that value.

    >>> backoff = exponential(initial=1, multiplier=2, max_delay=5, jitter=False)
    >>> [backoff(n, ValueError()) for n in range(1, 6)]
    [1.0, 2.0, 4.0, 5.0, 5.0]

    Raises:
        ValueError, TypeError: For negative or non-finite delays, or a
            multiplier below 1.
    """
    initial_s = check_seconds("initial", initial)
    max_s = check_seconds("max_delay", max_delay)
    if isinstance(multiplier, bool) or not isinstance(multiplier, (int, float)):
        raise TypeError(f"multiplier must be a number, not {type(multiplier).__name__}")
    if not 1 <= multiplier < float("inf"):
        raise ValueError(f"multiplier must be finite and >= 1, got {multiplier!r}")
    if max_s < initial_s:
        raise ValueError(f"max_delay ({max_delay!r}) must be >= initial ({initial!r})")
    return ExponentialBackoff(initial_s, float(multiplier), max_s, bool(jitter))


def _check_exception_types(
    value: type[Exception] | tuple[type[Exception], ...],
) -> tuple[type[Exception], ...]:
    types = value if isinstance(value, tuple) else (value,)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, Exception)):
            raise TypeError(f"retry_on must hold Exception subclasses, got {t!r}")
    return types


def _check_max_attempts(_: object, __: object, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"max_attempts must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"max_attempts must be >= 1 (it counts the first run), got {value}")


def _check_callable(
    what: str, *, optional: bool
) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    def check(_: object, __: attrs.Attribute[Any], value: Any) -> None:
        if not ((optional and value is None) or callable(value)):
            raise TypeError(f"{what} must be callable, got {value!r}")

    return check


@attrs.frozen
class RetryPolicy:
    """When and how often a failed task runs again.

    Args:
        max_attempts: Total runs, the first one included: ``max_attempts=3``
            means one run and up to two retries.
        backoff: Seconds to wait before each retry: `fixed`, `exponential`
            or any callable ``(attempt, exc) -> seconds``.
        retry_on: Exception types that are retried (`TaskTimeout` counts as
            an ordinary failure). Others end the task ``failed`` at once.
        retry_if: Optional ``(exc, attempt) -> bool``, consulted after
            *retry_on* matched; it has the last word.

    Cancellation is never retried. A task raising `Retry` is retried while
    attempts remain, whatever *retry_on* and *retry_if* say.

    .. versionadded:: 0.1
    """

    max_attempts: int = attrs.field(default=3, validator=_check_max_attempts)
    backoff: Backoff = attrs.field(
        factory=lambda: exponential(), validator=_check_callable("backoff", optional=False)
    )
    retry_on: tuple[type[Exception], ...] = attrs.field(
        default=(Exception,), converter=_check_exception_types
    )
    retry_if: RetryDecision | None = attrs.field(
        default=None, validator=_check_callable("retry_if", optional=True)
    )

    def next_delay(self, attempt: int, exc: BaseException) -> float | None:
        """Seconds before the next attempt after *attempt* failed with *exc*, or ``None``.

        ``None`` means "do not retry". Not a checkpoint.
        """
        if attempt >= self.max_attempts:
            return None
        return retry_delay(self, attempt, exc)


def retry_delay(
    policy: RetryPolicy, attempt: int, exc: BaseException, lost: bool = False
) -> float | None:
    """`RetryPolicy.next_delay` without the attempts bound (the caller checks its own).

    *lost*: the attempt's worker died (durable). Like `Retry` without a
    delay, it is retried after the backoff, whatever *retry_on* and
    *retry_if* say. Not a checkpoint.
    """
    if isinstance(exc, Retry):
        if exc.delay is not None:
            return exc.delay
    elif not lost and (
        not isinstance(exc, policy.retry_on)
        or (policy.retry_if is not None and not policy.retry_if(exc, attempt))
    ):
        return None
    delay = policy.backoff(attempt, exc)
    return check_seconds("the backoff's delay", delay)
