# SPDX-License-Identifier: MIT
"""`decide`: how an attempt ended -> the task's next state (both queues call it)."""

from __future__ import annotations

import pytest

from trio_workq import Retry, RetryPolicy, TaskStatus, TaskTimeout, fixed
from trio_workq._core.transitions import Ending, Transition, decide

NOW = 1000.0
POLICY = RetryPolicy(max_attempts=3, backoff=fixed(5), retry_on=(ValueError, TaskTimeout))


def _decide(
    ending: Ending,
    error: BaseException | None = None,
    *,
    attempts: int = 1,
    max_attempts: int = 3,
    policy: RetryPolicy | None = POLICY,
    cancel_retries: bool = False,
) -> Transition:
    return decide(
        ending,
        error,
        attempts=attempts,
        max_attempts=max_attempts,
        policy=policy,
        now=NOW,
        cancel_retries=cancel_retries,
    )


def test_returned_completes() -> None:
    assert _decide(Ending.RETURNED) == (TaskStatus.COMPLETED, None, None)


def test_cancelled_on_request_is_cancelled() -> None:
    assert _decide(Ending.CANCELLED).status is TaskStatus.CANCELLED


def test_interrupted_is_given_back() -> None:
    """Shutdown interrupted it (durable): back to queued, the attempt uncounted."""
    assert _decide(Ending.INTERRUPTED) == (TaskStatus.QUEUED, None, None)


@pytest.mark.parametrize("error", [ValueError("x"), TaskTimeout("slow")])
def test_raised_is_retried_after_the_backoff(error: Exception) -> None:
    assert _decide(Ending.RAISED, error) == (TaskStatus.RETRYING, error, NOW + 5)


def test_not_retried_when_attempts_are_used_up() -> None:
    """The bound given wins (the durable queue passes the stored one)."""
    error = ValueError("x")
    assert _decide(Ending.RAISED, error, attempts=2, max_attempts=2).status is TaskStatus.FAILED
    assert _decide(Ending.RAISED, error, attempts=3, max_attempts=5).status is TaskStatus.RETRYING


@pytest.mark.parametrize(
    ("ending", "error", "policy"),
    [
        (Ending.RAISED, KeyError("not in retry_on"), POLICY),
        (Ending.RAISED, ValueError("no policy"), None),
        (Ending.RAISED_WHILE_CANCELLED, ValueError("cleanup failed"), POLICY),
        (Ending.UNRETRYABLE, ValueError("nothing to run"), POLICY),
    ],
)
def test_failed_without_retry(ending: Ending, error: Exception, policy: RetryPolicy | None) -> None:
    assert _decide(ending, error, policy=policy) == (TaskStatus.FAILED, error, None)


def test_retry_if_has_the_last_word() -> None:
    policy = RetryPolicy(max_attempts=3, backoff=fixed(1), retry_if=lambda exc, attempt: False)
    assert _decide(Ending.RAISED, ValueError("x"), policy=policy).status is TaskStatus.FAILED


def test_retry_raised_uses_its_own_delay_whatever_retry_on_says() -> None:
    policy = RetryPolicy(max_attempts=3, backoff=fixed(1), retry_on=KeyError)
    assert _decide(Ending.RAISED, Retry(delay=7), policy=policy).due == NOW + 7


def test_lost_attempt_goes_through_the_backoff_whatever_retry_on_says() -> None:
    """A worker that died did not fail the task: retried after the backoff."""
    policy = RetryPolicy(max_attempts=3, backoff=fixed(30), retry_on=KeyError)
    error = RuntimeError("lease expired")
    assert _decide(Ending.LOST, error, policy=policy) == (TaskStatus.RETRYING, error, NOW + 30)
    assert _decide(Ending.LOST, error, attempts=3, policy=policy).status is TaskStatus.FAILED


def test_lost_attempt_without_a_policy_is_retried_at_once_while_attempts_remain() -> None:
    error = RuntimeError("lease expired")
    assert _decide(Ending.LOST, error, policy=None) == (TaskStatus.RETRYING, error, NOW)
    assert _decide(Ending.LOST, error, attempts=3, policy=None).status is TaskStatus.FAILED


@pytest.mark.parametrize("where", ["backoff", "retry_if"])
def test_a_broken_policy_fails_the_task_with_its_error(where: str) -> None:
    def broken(*args: object) -> float:
        raise ZeroDivisionError("broken")

    policy = (
        RetryPolicy(backoff=broken)
        if where == "backoff"
        else RetryPolicy(backoff=fixed(1), retry_if=broken)  # type: ignore[arg-type]
    )
    original = ValueError("x")
    status, error, due = _decide(Ending.RAISED, original, policy=policy)
    assert (status, type(error), due) == (TaskStatus.FAILED, ZeroDivisionError, None)
    assert error is not None
    assert error.__context__ is original


def test_a_backoff_returning_nonsense_fails_the_task() -> None:
    policy = RetryPolicy(backoff=lambda attempt, exc: -1.0)
    status, error, _ = _decide(Ending.RAISED, ValueError("x"), policy=policy)
    assert (status, type(error)) == (TaskStatus.FAILED, ValueError)
    assert "backoff" in str(error)


def test_no_new_attempt_during_a_cancel_queued_shutdown() -> None:
    """A task that would be retried ends cancelled; one that would fail still fails."""
    error = ValueError("x")
    assert _decide(Ending.RAISED, error, cancel_retries=True).status is TaskStatus.CANCELLED
    used_up = _decide(Ending.RAISED, error, attempts=3, cancel_retries=True)
    assert used_up.status is TaskStatus.FAILED
