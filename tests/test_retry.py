# SPDX-License-Identifier: MIT
"""Retries: RetryPolicy, fixed/exponential backoff, Retry, timeouts, cancellation and TaskInfo."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_workq
from trio_workq import (
    ExponentialBackoff,
    Retry,
    RetryPolicy,
    TaskStatus,
    TaskTimeout,
    exponential,
    fixed,
)


async def noop() -> None:
    await trio.lowlevel.checkpoint()


class Flaky:
    """An async job that fails its first *failures* runs, recording when each run starts."""

    def __init__(
        self,
        failures: int | float = math.inf,
        error: Callable[[int], BaseException] = lambda n: ValueError(f"attempt {n}"),
        run_for: float = 0,
    ) -> None:
        self.failures = failures
        self.error = error
        self.run_for = run_for
        self.starts: list[float] = []

    async def __call__(self) -> str:
        self.starts.append(trio.current_time())
        attempt = len(self.starts)
        if self.run_for:
            await trio.sleep(self.run_for)
        else:
            await trio.lowlevel.checkpoint()
        if attempt <= self.failures:
            raise self.error(attempt)
        return f"ok after {attempt}"

    def offsets(self) -> list[float]:
        """Start times relative to the first run."""
        return [t - self.starts[0] for t in self.starts]


# ------------------------------------------------------------------ backoff functions


def test_fixed_backoff_is_constant() -> None:
    """fixed(d) returns d for every attempt and exception."""
    backoff = fixed(2.5)
    assert [backoff(n, ValueError()) for n in (1, 2, 3, 100, 10**9)] == [2.5] * 5
    assert fixed(0)(1, OSError()) == 0.0


def test_exponential_sequence_without_jitter() -> None:
    """exponential(jitter=False) gives initial * multiplier**(n-1), capped at max_delay."""
    backoff = exponential(initial=1, multiplier=2, max_delay=5, jitter=False)
    assert [backoff(n, ValueError()) for n in range(1, 7)] == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    tripling = exponential(initial=0.5, multiplier=3, max_delay=100, jitter=False)
    assert [tripling(n, ValueError()) for n in range(1, 6)] == [0.5, 1.5, 4.5, 13.5, 40.5]
    default = exponential(jitter=False)
    assert [default(n, ValueError()) for n in range(1, 4)] == pytest.approx([0.1, 0.2, 0.4])
    assert default(50, ValueError()) == 30.0


def test_exponential_huge_attempt_is_capped() -> None:
    """A huge attempt number gives max_delay, without overflow."""
    backoff = exponential(initial=1, multiplier=10, max_delay=60, jitter=False)
    assert backoff(10**12, ValueError()) == 60.0
    assert exponential(initial=7, multiplier=2, max_delay=7, jitter=False)(5000, ValueError()) == 7


def _capped(initial: float, multiplier: float, max_delay: float, attempt: int) -> float:
    """Reference for min(max_delay, initial * multiplier ** (attempt - 1)), overflow-safe."""
    if initial >= max_delay:
        return max_delay
    if initial == 0:
        return 0.0
    log_raw = math.log(initial) + (attempt - 1) * math.log(multiplier)
    if log_raw >= math.log(max_delay):
        return max_delay
    return min(max_delay, math.exp(log_raw))


# Subnormal delays are left out: 5e-324 * 1.25 rounds back to 5e-324, so no float
# implementation can follow the exact formula there.
delays = st.floats(min_value=0, max_value=1e6, allow_subnormal=False)
multipliers = st.floats(min_value=1, max_value=100, allow_nan=False, allow_infinity=False)


@given(
    initial=delays,
    extra=delays,
    multiplier=multipliers,
    attempt=st.integers(min_value=1, max_value=100_000),
    draw=st.floats(min_value=0, max_value=1, exclude_max=True),
)
@settings(deadline=None)
def test_jitter_within_capped_delay(
    initial: float, extra: float, multiplier: float, attempt: int, draw: float
) -> None:
    """With jitter, the delay is always within [0, capped delay] (random source injected)."""
    max_delay = initial + extra
    plain = exponential(initial, multiplier, max_delay, jitter=False)(attempt, ValueError())
    jittered = attrs.evolve(exponential(initial, multiplier, max_delay), random=lambda: draw)
    assert isinstance(jittered, ExponentialBackoff)
    assert jittered.jitter
    delay = jittered(attempt, ValueError())
    assert 0 <= delay <= plain <= max_delay
    assert plain == pytest.approx(_capped(initial, multiplier, max_delay, attempt), rel=1e-6)
    assert delay == pytest.approx(plain * draw, rel=1e-9, abs=1e-300)


@given(
    initial=st.floats(min_value=1e-6, max_value=1e3),
    extra=st.floats(min_value=0, max_value=1e6),
    multiplier=st.floats(min_value=1.5, max_value=1e300),
    attempt=st.integers(min_value=1, max_value=2**62),
)
@settings(deadline=None)
def test_jitter_within_capped_delay_any_attempt(
    initial: float, extra: float, multiplier: float, attempt: int
) -> None:
    """With the real random source and any attempt number, jitter stays within [0, capped delay]."""
    max_delay = initial + extra
    capped = _capped(initial, multiplier, max_delay, attempt)
    backoff = exponential(initial, multiplier, max_delay)  # jitter=True by default
    for _ in range(5):
        delay = backoff(attempt, ValueError())
        assert 0 <= delay <= max_delay
        assert delay <= capped * (1 + 1e-9)


@given(
    initial=delays,
    extra=delays,
    multiplier=multipliers,
    attempt=st.integers(min_value=1, max_value=10_000),
)
@settings(deadline=None)
def test_unjittered_delay_never_decreases(
    initial: float, extra: float, multiplier: float, attempt: int
) -> None:
    """Without jitter, the delay after attempt n+1 is never shorter than after attempt n."""
    backoff = exponential(initial, multiplier, initial + extra, jitter=False)
    assert backoff(attempt, ValueError()) <= backoff(attempt + 1, ValueError())


# ------------------------------------------------------------------ bad arguments


@pytest.mark.parametrize(
    ("delay", "error", "message"),
    [
        (-1, ValueError, ">= 0"),
        (math.nan, ValueError, "finite"),
        (math.inf, ValueError, "finite"),
        (True, TypeError, "number of seconds"),
        ("1", TypeError, "number of seconds"),
        (None, TypeError, "number of seconds"),
    ],
)
def test_fixed_rejects_bad_delay(delay: Any, error: type[Exception], message: str) -> None:
    """fixed() rejects negative, non-finite and non-numeric delays."""
    with pytest.raises(error, match=message):
        fixed(delay)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"initial": -0.5}, ValueError, "initial must be >= 0"),
        ({"initial": math.nan}, ValueError, "initial must be finite"),
        ({"initial": "1"}, TypeError, "initial must be a number"),
        ({"max_delay": -1}, ValueError, "max_delay must be >= 0"),
        ({"max_delay": math.inf}, ValueError, "max_delay must be finite"),
        ({"multiplier": 0.5}, ValueError, "multiplier must be finite and >= 1"),
        ({"multiplier": 0}, ValueError, "multiplier must be finite and >= 1"),
        ({"multiplier": -2}, ValueError, "multiplier must be finite and >= 1"),
        ({"multiplier": math.inf}, ValueError, "multiplier must be finite and >= 1"),
        ({"multiplier": math.nan}, ValueError, "multiplier must be finite and >= 1"),
        ({"multiplier": True}, TypeError, "multiplier must be a number"),
        ({"multiplier": "2"}, TypeError, "multiplier must be a number"),
        ({"initial": 10, "max_delay": 5}, ValueError, r"max_delay \(5\) must be >= initial \(10\)"),
    ],
)
def test_exponential_rejects_bad_arguments(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    """exponential() rejects bad delays, a multiplier below 1 and max_delay < initial."""
    with pytest.raises(error, match=message):
        exponential(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_attempts": 0}, ValueError, "max_attempts must be >= 1"),
        ({"max_attempts": -3}, ValueError, "max_attempts must be >= 1"),
        ({"max_attempts": True}, TypeError, "max_attempts must be an int, not bool"),
        ({"max_attempts": False}, TypeError, "max_attempts must be an int, not bool"),
        ({"max_attempts": "3"}, TypeError, "max_attempts must be an int, not str"),
        ({"max_attempts": 3.0}, TypeError, "max_attempts must be an int, not float"),
        ({"max_attempts": None}, TypeError, "max_attempts must be an int"),
        ({"retry_on": "ValueError"}, TypeError, "retry_on must hold Exception subclasses"),
        ({"retry_on": ValueError()}, TypeError, "retry_on must hold Exception subclasses"),
        ({"retry_on": (ValueError, 3)}, TypeError, "retry_on must hold Exception subclasses"),
        ({"retry_on": int}, TypeError, "retry_on must hold Exception subclasses"),
        ({"retry_on": KeyboardInterrupt}, TypeError, "retry_on must hold Exception subclasses"),
        ({"retry_on": (trio.Cancelled,)}, TypeError, "retry_on must hold Exception subclasses"),
        ({"backoff": 5}, TypeError, "backoff must be callable"),
        ({"backoff": "fixed"}, TypeError, "backoff must be callable"),
        ({"retry_if": True}, TypeError, "retry_if must be callable"),
        ({"retry_if": "yes"}, TypeError, "retry_if must be callable"),
    ],
)
def test_retry_policy_rejects_bad_arguments(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    """RetryPolicy rejects bad max_attempts, non-exception retry_on and non-callable hooks."""
    with pytest.raises(error, match=message):
        RetryPolicy(**kwargs)


def test_retry_policy_rejects_none_backoff() -> None:
    """backoff=None is rejected when the policy is built, not at the first failure."""
    with pytest.raises(TypeError, match="backoff must be callable"):
        RetryPolicy(backoff=None)  # type: ignore[arg-type]


def test_retry_policy_accepts_good_arguments() -> None:
    """A single exception type is normalised to a tuple; retry_if=None is allowed."""
    policy = RetryPolicy(
        max_attempts=1,
        backoff=fixed(1),
        retry_on=OSError,  # pyright: ignore[reportArgumentType]
        retry_if=None,
    )
    assert policy.retry_on == (OSError,)
    assert policy.max_attempts == 1
    assert RetryPolicy().max_attempts == 3


@pytest.mark.parametrize(
    ("delay", "error", "message"),
    [
        (-1, ValueError, ">= 0"),
        (math.inf, ValueError, "finite"),
        ("1", TypeError, "number of seconds"),
    ],
)
def test_retry_exception_rejects_bad_delay(
    delay: Any, error: type[Exception], message: str
) -> None:
    """Retry(delay=...) validates its delay."""
    with pytest.raises(error, match=message):
        Retry(delay=delay)


def test_next_delay_decisions() -> None:
    """next_delay is None when attempts are used up, retry_on does not match or retry_if says no."""
    policy = RetryPolicy(
        max_attempts=3,
        backoff=fixed(4),
        retry_on=(OSError,),
        retry_if=lambda exc, attempt: "fatal" not in str(exc),
    )
    assert policy.next_delay(1, OSError()) == 4
    assert policy.next_delay(2, OSError()) == 4
    assert policy.next_delay(3, OSError()) is None
    assert policy.next_delay(1, ValueError()) is None
    assert policy.next_delay(1, OSError("fatal")) is None
    assert policy.next_delay(1, Retry(delay=9)) == 9
    assert policy.next_delay(1, Retry()) == 4
    assert policy.next_delay(3, Retry(delay=9)) is None


async def test_queue_rejects_non_policy_retry() -> None:
    """retry= must be a RetryPolicy or None, for the queue and for each task; nothing is queued."""
    with pytest.raises(TypeError, match="retry must be a RetryPolicy or None"):
        async with trio_workq.open_work_queue(retry=3):  # type: ignore[call-overload]
            pass  # pragma: no cover
    async with trio_workq.open_work_queue() as queue:
        with pytest.raises(TypeError, match="retry must be a RetryPolicy or None"):
            await queue.submit(noop, retry=fixed(1))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="retry must be a RetryPolicy or None"):
            await queue.schedule(noop, delay=1, retry=3)  # type: ignore[arg-type]
        assert queue.statistics_nowait().submitted == 0


# ------------------------------------------------------------------ timing of attempts


async def test_fixed_backoff_attempt_times(autojump_clock: trio.testing.MockClock) -> None:
    """fixed(2.5), max_attempts=4: attempts start at t=0, 2.5, 5, 7.5, then the task fails."""
    job = Flaky()
    async with trio_workq.open_work_queue() as queue:
        handle = await queue.submit(job, retry=RetryPolicy(max_attempts=4, backoff=fixed(2.5)))
        with pytest.raises(ValueError, match=r"^attempt 4$"):
            await handle.result()
    assert job.offsets() == [0, 2.5, 5, 7.5]
    assert handle.status is TaskStatus.FAILED
    assert handle.attempts == 4


async def test_exponential_backoff_attempt_times(autojump_clock: trio.testing.MockClock) -> None:
    """exponential(1, 2, 5, jitter=False) spaces attempts 1, 2, 4, 5, 5 seconds apart."""
    job = Flaky()
    policy = RetryPolicy(max_attempts=6, backoff=exponential(1, 2, 5, jitter=False))
    async with trio_workq.open_work_queue() as queue:
        handle = await queue.submit(job, retry=policy)
        await handle.wait()
    assert job.offsets() == [0, 1, 3, 7, 12, 17]
    assert handle.status is TaskStatus.FAILED


async def test_backoff_counts_from_the_failure(autojump_clock: trio.testing.MockClock) -> None:
    """The backoff starts when an attempt fails, not when it started."""
    job = Flaky(failures=2, run_for=3)
    async with trio_workq.open_work_queue() as queue:
        handle = await queue.submit(job, retry=RetryPolicy(max_attempts=3, backoff=fixed(2)))
        assert await handle.result() == "ok after 3"
    assert job.offsets() == [0, 5, 10]


async def test_backoff_receives_attempt_and_error(autojump_clock: trio.testing.MockClock) -> None:
    """A custom backoff gets (attempt, exc) of the attempt that failed, and its delay is used."""
    calls: list[tuple[int, str]] = []

    def backoff(attempt: int, exc: BaseException) -> float:
        calls.append((attempt, str(exc)))
        return 10 * attempt

    job = Flaky()
    async with trio_workq.open_work_queue() as queue:
        handle = await queue.submit(job, retry=RetryPolicy(max_attempts=4, backoff=backoff))
        await handle.wait()
    assert calls == [(1, "attempt 1"), (2, "attempt 2"), (3, "attempt 3")]
    assert job.offsets() == [0, 10, 30, 60]


async def test_jittered_backoff_stays_in_bounds(autojump_clock: trio.testing.MockClock) -> None:
    """With the default (jittered) exponential backoff, each gap is within [0, capped delay]."""
    job = Flaky()
    policy = RetryPolicy(max_attempts=8, backoff=exponential(initial=1, multiplier=2, max_delay=10))
    async with trio_workq.open_work_queue() as queue:
        handle = await queue.submit(job, retry=policy)
        await handle.wait()
    gaps = [b - a for a, b in zip(job.starts, job.starts[1:], strict=False)]
    assert len(gaps) == 7
    for attempt, gap in enumerate(gaps, start=1):
        assert 0 <= gap <= min(10, 2 ** (attempt - 1)) + 1e-9


async def test_retry_timer_wakes_the_scheduler(autojump_clock: trio.testing.MockClock) -> None:
    """A retry due before every scheduled task fires at its own time."""
    job = Flaky(failures=1)
    async with trio_workq.open_work_queue() as queue:
        late = await queue.schedule(noop, delay=1000)
        await trio.sleep(1)
        handle = await queue.submit(job, retry=RetryPolicy(max_attempts=2, backoff=fixed(5)))
        await handle.result()
        late.cancel_nowait()
    assert job.offsets() == [0, 5]


# ------------------------------------------------------------------ max_attempts and matching


@pytest.mark.parametrize("max_attempts", [1, 2, 5])
async def test_max_attempts_counts_the_first_run(
    max_attempts: int, autojump_clock: trio.testing.MockClock
) -> None:
    """max_attempts=n means exactly n runs in total, the first included."""
    job = Flaky()
    policy = RetryPolicy(max_attempts=max_attempts, backoff=fixed(1))
    async with trio_workq.open_work_queue() as queue:
        handle = await queue.submit(job, retry=policy)
        await handle.wait()
        await trio.sleep(100)
    assert len(job.starts) == max_attempts
    info = handle.info_nowait()
    assert (info.status, info.attempts, info.max_attempts) == (
        TaskStatus.FAILED,
        max_attempts,
        max_attempts,
    )


async def test_success_stops_retrying(autojump_clock: trio.testing.MockClock) -> None:
    """A task that succeeds on a retry ends completed; its failed attempts stay recorded."""
    job = Flaky(failures=2)
    async with trio_workq.open_work_queue() as queue:
        handle = await queue.submit(job, retry=RetryPolicy(max_attempts=5, backoff=fixed(1)))
        assert await handle.result() == "ok after 3"
        await trio.sleep(100)
    info = handle.info_nowait()
    assert (info.status, info.attempts) == (TaskStatus.COMPLETED, 3)
    assert [str(e) for e in info.errors] == ["attempt 1", "attempt 2"]
    assert info.last_error is info.errors[-1]
    assert len(job.starts) == 3


async def test_retry_on_not_matching_fails_at_once(autojump_clock: trio.testing.MockClock) -> None:
    """An exception outside retry_on ends the task failed after one attempt."""
    job = Flaky()
    policy = RetryPolicy(max_attempts=5, backoff=fixed(1), retry_on=(OSError, KeyError))
    async with trio_workq.open_work_queue() as queue:
        handle = await queue.submit(job, retry=policy)
        with pytest.raises(ValueError, match=r"^attempt 1$"):
            await handle.result()
        await trio.sleep(100)
    assert len(job.starts) == 1
    assert (handle.status, handle.attempts) == (TaskStatus.FAILED, 1)


async def test_retry_on_matches_subclasses(autojump_clock: trio.testing.MockClock) -> None:
    """A subclass of a retry_on type is retried."""
    job = Flaky(failures=2, error=lambda n: ConnectionResetError(f"reset {n}"))
    policy = RetryPolicy(max_attempts=5, backoff=fixed(1), retry_on=(OSError,))
    async with trio_workq.open_work_queue() as queue:
        handle = await queue.submit(job, retry=policy)
        assert await handle.result() == "ok after 3"
    assert job.offsets() == [0, 1, 2]


async def test_retry_if_decides(autojump_clock: trio.testing.MockClock) -> None:
    """retry_if(exc, attempt) is called after each matching failure and has the last word."""
    calls: list[tuple[str, int]] = []

    def retry_if(exc: BaseException, attempt: int) -> bool:
        calls.append((str(exc), attempt))
        return attempt < 2

    job = Flaky()
    policy = RetryPolicy(max_attempts=10, backoff=fixed(1), retry_if=retry_if)
    async with trio_workq.open_work_queue() as queue:
        handle = await queue.submit(job, retry=policy)
        with pytest.raises(ValueError, match=r"^attempt 2$"):
            await handle.result()
    assert calls == [("attempt 1", 1), ("attempt 2", 2)]
    assert len(job.starts) == 2


async def test_retry_if_not_consulted_when_retry_on_fails(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """retry_if cannot resurrect an exception that retry_on excludes."""
    calls: list[int] = []

    def retry_if(exc: BaseException, attempt: int) -> bool:
        calls.append(attempt)
        return True

    job = Flaky()
    policy = RetryPolicy(max_attempts=5, backoff=fixed(1), retry_on=(OSError,), retry_if=retry_if)
    async with trio_workq.open_work_queue() as queue:
        handle = await queue.submit(job, retry=policy)
        await handle.wait()
    assert calls == []
    assert len(job.starts) == 1


# ------------------------------------------------------------------ Retry raised by a task


async def test_retry_exception_uses_its_delay(autojump_clock: trio.testing.MockClock) -> None:
    """Raising Retry(delay=3) reruns the task 3 s later, whatever the backoff; it is an attempt."""
    job = Flaky(failures=1, error=lambda n: Retry(delay=3))
    async with trio_workq.open_work_queue() as queue:
        handle = await queue.submit(job, retry=RetryPolicy(max_attempts=5, backoff=fixed(100)))
        assert await handle.result() == "ok after 2"
    assert job.offsets() == [0, 3]
    assert handle.attempts == 2
    assert isinstance(handle.info_nowait().errors[0], Retry)


async def test_retry_exception_without_delay_uses_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Raising Retry() with no delay waits the policy's backoff."""
    job = Flaky(failures=2, error=lambda n: Retry())
    async with trio_workq.open_work_queue() as queue:
        handle = await queue.submit(job, retry=RetryPolicy(max_attempts=5, backoff=fixed(7)))
        await handle.result()
    assert job.offsets() == [0, 7, 14]


async def test_retry_exception_ignores_retry_on_and_retry_if(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Retry is retried even when retry_on does not list it and retry_if would refuse."""
    job = Flaky(failures=1, error=lambda n: Retry(delay=2))
    policy = RetryPolicy(
        max_attempts=3, backoff=fixed(1), retry_on=(OSError,), retry_if=lambda e, n: False
    )
    async with trio_workq.open_work_queue() as queue:
        handle = await queue.submit(job, retry=policy)
        assert await handle.result() == "ok after 2"
    assert job.offsets() == [0, 2]


async def test_retry_exception_exhausts_attempts(autojump_clock: trio.testing.MockClock) -> None:
    """A task that keeps raising Retry ends failed with the Retry after max_attempts runs."""
    job = Flaky(error=lambda n: Retry(delay=1))
    async with trio_workq.open_work_queue() as queue:
        handle = await queue.submit(job, retry=RetryPolicy(max_attempts=3, backoff=fixed(50)))
        with pytest.raises(Retry):
            await handle.result()
    assert job.offsets() == [0, 1, 2]
    assert (handle.status, handle.attempts) == (TaskStatus.FAILED, 3)


async def test_retry_exception_without_policy_fails(autojump_clock: trio.testing.MockClock) -> None:
    """With retry=None, a task raising Retry ends failed with that Retry after one attempt."""
    job = Flaky(error=lambda n: Retry(delay=1))
    async with trio_workq.open_work_queue(retry=RetryPolicy(max_attempts=5)) as queue:
        handle = await queue.submit(job, retry=None)
        with pytest.raises(Retry) as excinfo:
            await handle.result()
        await trio.sleep(100)
    assert excinfo.value.delay == 1
    assert len(job.starts) == 1
    info = handle.info_nowait()
    assert (info.status, info.attempts, info.max_attempts) == (TaskStatus.FAILED, 1, 1)
    assert info.last_error is excinfo.value


# ------------------------------------------------------------------ timeouts and cancellation


async def test_timeout_is_retried(autojump_clock: trio.testing.MockClock) -> None:
    """An attempt that overruns its timeout records TaskTimeout and is retried like any failure."""
    runs: list[float] = []

    async def slow_then_fast() -> str:
        runs.append(trio.current_time())
        if len(runs) == 1:
            await trio.sleep(60)
        return "done"

    async with trio_workq.open_work_queue() as queue:
        start = trio.current_time()
        handle = await queue.submit(
            slow_then_fast, timeout=2, retry=RetryPolicy(max_attempts=3, backoff=fixed(1))
        )
        assert await handle.result() == "done"
    assert [t - start for t in runs] == [0, 3]
    info = handle.info_nowait()
    assert (info.status, info.attempts) == (TaskStatus.COMPLETED, 2)
    assert len(info.errors) == 1
    assert isinstance(info.errors[0], TaskTimeout)


async def test_timeout_on_every_attempt_fails_with_task_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Every attempt gets the full timeout; when all time out, result() raises TaskTimeout."""
    job = Flaky(failures=0, run_for=60)
    async with trio_workq.open_work_queue() as queue:
        handle = await queue.submit(
            job, timeout=2, retry=RetryPolicy(max_attempts=3, backoff=fixed(1))
        )
        with pytest.raises(TaskTimeout, match="timed out"):
            await handle.result()
    assert job.offsets() == [0, 3, 6]
    assert all(isinstance(e, TaskTimeout) for e in handle.info_nowait().errors)
    assert handle.attempts == 3


async def test_timeout_not_in_retry_on(autojump_clock: trio.testing.MockClock) -> None:
    """A TaskTimeout that retry_on does not match ends the task failed after one attempt."""
    job = Flaky(failures=0, run_for=60)
    policy = RetryPolicy(max_attempts=3, backoff=fixed(1), retry_on=(ValueError,))
    async with trio_workq.open_work_queue() as queue:
        handle = await queue.submit(job, timeout=2, retry=policy)
        with pytest.raises(TaskTimeout):
            await handle.result()
    assert len(job.starts) == 1


async def test_cancelled_running_task_not_retried(autojump_clock: trio.testing.MockClock) -> None:
    """cancel() on a running task ends it cancelled; the retry policy does not run it again."""
    runs: list[float] = []

    async def forever() -> None:
        runs.append(trio.current_time())
        await trio.sleep_forever()

    policy = RetryPolicy(max_attempts=5, backoff=fixed(1))
    async with trio_workq.open_work_queue(retry=policy) as queue:
        handle = await queue.submit(forever)
        await trio.sleep(1)
        assert handle.status is TaskStatus.RUNNING
        assert handle.cancel_nowait() is True
        with pytest.raises(trio_workq.TaskCancelled):
            await handle.result()
        await trio.sleep(100)
    assert handle.info_nowait().status is TaskStatus.CANCELLED
    assert len(runs) == 1
    assert handle.attempts == 1
    assert queue.statistics_nowait().retrying == 0


async def test_cancelled_task_failing_while_unwinding_not_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A cancelled running task that raises another exception while unwinding is not retried."""
    runs: list[float] = []

    async def unwinds_badly() -> None:
        runs.append(trio.current_time())
        try:
            await trio.sleep_forever()
        finally:
            raise ValueError("cleanup failed")

    policy = RetryPolicy(max_attempts=3, backoff=fixed(1))
    async with trio_workq.open_work_queue(retry=policy) as queue:
        handle = await queue.submit(unwinds_badly)
        await trio.sleep(1)
        assert handle.cancel_nowait() is True
        with trio.move_on_after(100):
            await handle.wait()
        assert len(runs) == 1, f"a cancelled task ran again at {runs[1:]}"
        assert handle.attempts == 1
        assert handle.status.is_terminal, handle.status
        with pytest.raises((ValueError, trio_workq.TaskCancelled)):
            await handle.result()


async def test_cancel_during_backoff(autojump_clock: trio.testing.MockClock) -> None:
    """cancel() while a task waits out its backoff ends it cancelled; it never runs again."""
    job = Flaky()
    async with trio_workq.open_work_queue() as queue:
        handle = await queue.submit(job, retry=RetryPolicy(max_attempts=5, backoff=fixed(10)))
        await trio.sleep(1)
        assert handle.status is TaskStatus.RETRYING
        assert queue.statistics_nowait().retrying == 1
        assert handle.cancel_nowait() is True
        assert handle.info_nowait().status is TaskStatus.CANCELLED
        assert queue.statistics_nowait().retrying == 0
        await trio.sleep(100)
        assert handle.cancel_nowait() is False
        with pytest.raises(trio_workq.TaskCancelled):
            await handle.result()
    assert len(job.starts) == 1
    assert handle.attempts == 1
    assert isinstance(handle.info_nowait().last_error, ValueError)


async def test_cancel_during_backoff_by_id(autojump_clock: trio.testing.MockClock) -> None:
    """WorkQueue.cancel(id) also stops a retrying task for good."""
    job = Flaky()
    async with trio_workq.open_work_queue(retry=RetryPolicy(backoff=fixed(5))) as queue:
        handle = await queue.submit(job)
        await trio.sleep(1)
        assert queue.cancel_nowait(handle.id) is True
        await trio.sleep(50)
        assert queue.get_info_nowait(handle.id).status is TaskStatus.CANCELLED
    assert len(job.starts) == 1


async def test_worker_free_during_backoff(autojump_clock: trio.testing.MockClock) -> None:
    """A task in backoff holds no worker: with one worker, a later task runs and ends meanwhile."""
    finished: list[tuple[str, float]] = []
    job = Flaky(failures=1)

    async def other() -> None:
        await trio.sleep(5)
        finished.append(("B", trio.current_time()))

    async with trio_workq.open_work_queue(workers=1) as queue:
        start = trio.current_time()
        a = await queue.submit(job, retry=RetryPolicy(max_attempts=2, backoff=fixed(100)))
        await trio.sleep(1)
        assert a.status is TaskStatus.RETRYING
        assert queue.statistics_nowait().busy_workers == 0
        b = await queue.submit(other)
        await b.result()
        assert a.status is TaskStatus.RETRYING
        await a.result()
    assert finished == [("B", start + 6)]
    assert [t - start for t in job.starts] == [0, 100]


async def test_retry_due_with_full_buffer_not_dropped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A retry falling due while the buffer is full waits for room, then runs."""
    job = Flaky(failures=1)
    async with trio_workq.open_work_queue(workers=1, max_buffer_size=1) as queue:
        start = trio.current_time()
        handle = await queue.submit(job, retry=RetryPolicy(max_attempts=2, backoff=fixed(1)))
        await trio.sleep(0.5)
        await queue.submit(trio.sleep, 10)  # takes the worker until t=10.5
        await queue.submit(trio.sleep, 1)  # fills the buffer
        await trio.sleep(5)
        assert handle.status is TaskStatus.RETRYING
        assert await handle.result() == "ok after 2"
    assert [t - start for t in job.starts] == [0, 11.5]


async def test_shutdown_deadline_settles_retrying_tasks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A task in backoff never outlives shutdown(timeout=...): it ends, and never runs after it."""
    job = Flaky()
    async with trio_workq.open_work_queue() as queue:
        start = trio.current_time()
        handle = await queue.submit(job, retry=RetryPolicy(max_attempts=5, backoff=fixed(1000)))
        await trio.sleep(1)
        assert handle.status is TaskStatus.RETRYING
        await queue.shutdown(timeout=10)
        stopped = trio.current_time()
    assert stopped - start <= 11
    assert handle.done
    assert handle.info_nowait().status in (TaskStatus.CANCELLED, TaskStatus.FAILED)
    assert queue.statistics_nowait().retrying == 0
    await trio.sleep(5000)
    assert len(job.starts) == 1
    assert handle.attempts == 1


async def test_graceful_shutdown_settles_retrying_tasks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After leaving the block, no task is left retrying, and none runs again."""
    job = Flaky()
    async with trio_workq.open_work_queue() as queue:
        handle = await queue.submit(job, retry=RetryPolicy(max_attempts=3, backoff=fixed(100)))
        await trio.sleep(1)
        assert handle.status is TaskStatus.RETRYING
    assert handle.done
    assert handle.info_nowait().status in (TaskStatus.CANCELLED, TaskStatus.FAILED)
    assert queue.statistics_nowait().retrying == 0
    runs = len(job.starts)
    await trio.sleep(1000)
    assert len(job.starts) == runs


# ------------------------------------------------------------------ default and per-task policy


async def test_queue_default_policy_and_overrides(autojump_clock: trio.testing.MockClock) -> None:
    """The queue policy applies to submit and schedule; retry=None or a task policy overrides it."""
    default_job, none_job, own_job, scheduled_job = Flaky(), Flaky(), Flaky(), Flaky()
    default = RetryPolicy(max_attempts=3, backoff=fixed(1))
    async with trio_workq.open_work_queue(retry=default) as queue:
        by_default = await queue.submit(default_job)
        no_retry = await queue.submit(none_job, retry=None)
        own = await queue.submit(own_job, retry=RetryPolicy(max_attempts=5, backoff=fixed(2)))
        scheduled = await queue.schedule(scheduled_job, delay=10)
        for handle in (by_default, no_retry, own, scheduled):
            await handle.wait()
    assert default_job.offsets() == [0, 1, 2]
    assert none_job.offsets() == [0]
    assert own_job.offsets() == [0, 2, 4, 6, 8]
    assert scheduled_job.offsets() == [0, 1, 2]
    assert [h.info_nowait().max_attempts for h in (by_default, no_retry, own, scheduled)] == [
        3,
        1,
        5,
        3,
    ]
    assert all(h.status is TaskStatus.FAILED for h in (by_default, no_retry, own, scheduled))


async def test_no_default_policy_means_no_retries(autojump_clock: trio.testing.MockClock) -> None:
    """Without a queue policy a failing task runs once; a per-task policy still applies."""
    once, twice = Flaky(), Flaky()
    async with trio_workq.open_work_queue() as queue:
        first = await queue.submit(once)
        second = await queue.submit(twice, retry=RetryPolicy(max_attempts=2, backoff=fixed(0)))
        await first.wait()
        await second.wait()
    assert (len(once.starts), len(twice.starts)) == (1, 2)
    assert first.info_nowait().max_attempts == 1


# ------------------------------------------------------------------ TaskInfo and failure


async def test_exhausted_task_fails_with_last_error(autojump_clock: trio.testing.MockClock) -> None:
    """When attempts run out the task ends failed and result() raises the last attempt's error."""
    job = Flaky()
    async with trio_workq.open_work_queue() as queue:
        handle = await queue.submit(job, retry=RetryPolicy(max_attempts=3, backoff=fixed(1)))
        outcome = await handle.wait()
        with pytest.raises(ValueError, match=r"^attempt 3$") as excinfo:
            await handle.result()
    info = handle.info_nowait()
    assert info.status is TaskStatus.FAILED
    assert info.last_error is excinfo.value
    assert [str(e) for e in info.errors] == ["attempt 1", "attempt 2", "attempt 3"]
    assert info.errors[-1] is info.last_error
    assert info.finished_at is not None
    assert info.due_at is None
    with pytest.raises(ValueError, match=r"^attempt 3$"):
        outcome.unwrap()
    stats = queue.statistics_nowait()
    assert (stats.failed, stats.retrying) == (1, 0)


async def test_info_while_retrying(autojump_clock: trio.testing.MockClock) -> None:
    """While retrying, TaskInfo shows the attempts, max_attempts, last error, history and due_at."""
    job = Flaky(failures=1)
    async with trio_workq.open_work_queue() as queue:
        handle = await queue.submit(job, retry=RetryPolicy(max_attempts=4, backoff=fixed(30)))
        await trio.sleep(1)
        info = queue.get_info_nowait(handle.id)
        assert info.status is TaskStatus.RETRYING
        assert (info.attempts, info.max_attempts) == (1, 4)
        assert isinstance(info.last_error, ValueError)
        assert info.errors == (info.last_error,)
        assert info.started_at is not None
        assert info.due_at is not None
        assert abs(info.due_at - (info.started_at + timedelta(seconds=30))) < timedelta(
            milliseconds=1
        )
        assert info.finished_at is None
        await trio.sleep(29.5)
        running = handle.info_nowait()
        assert running.status is TaskStatus.COMPLETED
        assert running.due_at is None
        assert running.attempts == 2


async def test_error_history_bounded_to_ten(autojump_clock: trio.testing.MockClock) -> None:
    """TaskInfo.errors keeps only the last ten failed attempts, oldest first."""
    job = Flaky()
    async with trio_workq.open_work_queue() as queue:
        handle = await queue.submit(job, retry=RetryPolicy(max_attempts=15, backoff=fixed(0)))
        await handle.wait()
    info = handle.info_nowait()
    assert info.attempts == 15
    assert [str(e) for e in info.errors] == [f"attempt {n}" for n in range(6, 16)]
    assert str(info.last_error) == "attempt 15"


def _raising_backoff(attempt: int, exc: BaseException) -> float:
    raise RuntimeError("backoff broke")


def _returning(value: object) -> Callable[[int, BaseException], Any]:
    def backoff(attempt: int, exc: BaseException) -> object:
        return value

    return backoff


@pytest.mark.parametrize(
    "backoff",
    [
        _raising_backoff,
        _returning(-1.0),
        _returning(math.nan),
        _returning(math.inf),
        _returning("1"),
    ],
    ids=["raises", "negative", "nan", "inf", "str"],
)
async def test_broken_backoff_fails_the_task(
    backoff: Callable[[int, BaseException], Any], autojump_clock: trio.testing.MockClock
) -> None:
    """A backoff that raises or returns a bad delay fails the task with that error."""
    job = Flaky()
    async with trio_workq.open_work_queue(workers=1) as queue:
        handle = await queue.submit(job, retry=RetryPolicy(max_attempts=5, backoff=backoff))
        with pytest.raises((RuntimeError, ValueError, TypeError)) as excinfo:
            await handle.result()
        assert handle.status is TaskStatus.FAILED
        assert handle.attempts == 1
        info = handle.info_nowait()
        assert [str(e) for e in info.errors] == ["attempt 1"]
        assert info.last_error is excinfo.value
        assert excinfo.value.__context__ is info.errors[0]  # the attempt's own exception
        follow_up = await queue.submit(noop)
        await follow_up.result()
        assert follow_up.status is TaskStatus.COMPLETED
    assert len(job.starts) == 1


async def test_broken_retry_if_fails_the_task(autojump_clock: trio.testing.MockClock) -> None:
    """A retry_if that raises fails the task without crashing the queue."""

    def retry_if(exc: BaseException, attempt: int) -> bool:
        raise KeyError("no decision")

    job = Flaky()
    async with trio_workq.open_work_queue(workers=1) as queue:
        handle = await queue.submit(job, retry=RetryPolicy(backoff=fixed(1), retry_if=retry_if))
        with pytest.raises((KeyError, ValueError)):
            await handle.result()
        assert (handle.status, handle.attempts) == (TaskStatus.FAILED, 1)
        assert await (await queue.submit(Flaky(failures=0))).result() == "ok after 1"


def test_exponential_with_tiny_initial_does_not_overflow() -> None:
    """A power that overflows on its own still gives the right delay (found by Hypothesis)."""
    initial = 8.977706512897897e-306
    backoff = exponential(initial=initial, multiplier=19, max_delay=1614, jitter=False)
    expected = math.exp(math.log(initial) + 241 * math.log(19))  # about 1358 s, under the cap
    assert backoff(242, OSError()) == pytest.approx(expected, rel=1e-9)
    assert backoff(243, OSError()) == 1614
    assert backoff(10**9, OSError()) == 1614
