# SPDX-License-Identifier: MIT
"""The tasks of the queue-behaviour suite (``tests/test_queue_suite.py``; not collected).

Written once for every backend: each is registered with `trio_workq.task`
under an explicit ``suite.*`` name (a durable queue stores that name and
finds the function again by it), and the in-memory queue runs the same
functions directly. A task's name and retry policy are its registration's,
on every backend.

Tasks run in the test's own process on every backend, so they report what
they did by appending to `runs`.
"""

from __future__ import annotations

from typing import Any

import trio

import trio_workq
from trio_workq import RetryPolicy, fixed

#: What the tasks did, in order: ``(event, key)`` pairs. Cleared before each test.
runs: list[tuple[str, Any]] = []

#: The backoff of the retrying tasks below: long enough to see a task ``retrying``,
#: short enough for real time (the durable backends cannot use a virtual clock).
BACKOFF = 0.3


#: When `record` last ran each key, in trio time (the test's clock, on every backend).
record_times: dict[Any, float] = {}

#: Events the `gate` task waits for, by key; set by the test. Cleared before each test.
gates: dict[Any, trio.Event] = {}


def starts(key: Any) -> int:
    """How many runs of the task with *key* have started so far."""
    return sum(1 for event, logged in runs if event == "start" and logged == key)


@trio_workq.task(name="suite.echo")
async def echo(value: Any) -> Any:
    """Return *value*."""
    await trio.lowlevel.checkpoint()
    return value


@trio_workq.task(name="suite.nothing")
async def nothing() -> None:
    """Return ``None``."""
    await trio.lowlevel.checkpoint()


@trio_workq.task(name="suite.fail", retry=None)
async def fail(message: str) -> None:
    """Raise ``ValueError(message)``, once (no retries)."""
    await trio.lowlevel.checkpoint()
    raise ValueError(message)


@trio_workq.task(name="suite.record", retry=None)
async def record(key: Any) -> Any:
    """Note that *key* ran, and when; return it."""
    runs.append(("run", key))
    record_times[key] = trio.current_time()
    await trio.lowlevel.checkpoint()
    return key


@trio_workq.task(name="suite.sleep", retry=None)
async def sleep(key: Any, seconds: float) -> Any:
    """Note the start, sleep *seconds*, note the end; return *key*."""
    runs.append(("start", key))
    await trio.sleep(seconds)
    runs.append(("end", key))
    return key


@trio_workq.task(name="suite.gate", retry=None)
async def gate(key: Any) -> Any:
    """Note the start, wait until the test sets ``gates[key]``, note the end; return *key*."""
    runs.append(("start", key))
    await gates[key].wait()
    runs.append(("end", key))
    return key


@trio_workq.task(name="suite.block", retry=None)
async def block(key: Any) -> None:
    """Note the start, then run until cancelled (noting that too)."""
    runs.append(("start", key))
    try:
        await trio.sleep_forever()
    finally:
        runs.append(("stopped", key))


@trio_workq.task(name="suite.flaky", retry=RetryPolicy(max_attempts=3, backoff=fixed(BACKOFF)))
async def flaky(key: Any, failures: int) -> int:
    """Fail the first *failures* attempts with ``OSError``, then return the attempt number."""
    attempt = trio_workq.current_task().attempts
    runs.append(("start", key))
    await trio.lowlevel.checkpoint()
    if attempt <= failures:
        raise OSError(f"attempt {attempt} failed")
    return attempt


@trio_workq.task(
    name="suite.fails_with",
    retry=RetryPolicy(max_attempts=3, backoff=fixed(0), retry_on=(OSError,)),
)
async def fails_with(key: Any, error: str) -> None:
    """Fail every attempt with the builtin exception named *error* (``OSError`` is retried)."""
    runs.append(("start", key))
    await trio.lowlevel.checkpoint()
    kind: type[Exception] = {"OSError": OSError, "KeyError": KeyError}[error]
    raise kind(key)


@trio_workq.task(
    name="suite.asks_again",
    retry=RetryPolicy(max_attempts=2, backoff=fixed(60), retry_on=(KeyError,)),
)
async def asks_again(key: Any) -> int:
    """Raise `trio_workq.Retry` (no delay) on the first attempt; return the attempt number after.

    The policy would neither retry (``retry_on``) nor retry soon (backoff 60 s):
    `Retry` overrides both.
    """
    attempt = trio_workq.current_task().attempts
    runs.append(("start", key))
    await trio.lowlevel.checkpoint()
    if attempt == 1:
        raise trio_workq.Retry(delay=0)
    return attempt


@trio_workq.task(name="suite.asks_again_without_policy", retry=None)
async def asks_again_without_policy(key: Any) -> None:
    """Raise `trio_workq.Retry` with no policy: it counts as the one attempt."""
    runs.append(("start", key))
    await trio.lowlevel.checkpoint()
    raise trio_workq.Retry


@trio_workq.task(name="suite.slow_first", retry=RetryPolicy(max_attempts=2, backoff=fixed(0)))
async def slow_first(key: Any, seconds: float) -> int:
    """Sleep *seconds* on the first attempt (to overrun a timeout); return the attempt after."""
    attempt = trio_workq.current_task().attempts
    runs.append(("start", key))
    if attempt == 1:
        await trio.sleep(seconds)
    await trio.lowlevel.checkpoint()
    return attempt


@trio_workq.task(name="suite.slow", retry=RetryPolicy(max_attempts=2, backoff=fixed(0)))
async def slow(key: Any, seconds: float) -> None:
    """Sleep *seconds* on every attempt (each overruns a shorter timeout)."""
    runs.append(("start", key))
    await trio.sleep(seconds)


@trio_workq.task(name="suite.retries_later", retry=RetryPolicy(max_attempts=2, backoff=fixed(60)))
async def retries_later(key: Any) -> None:
    """Fail with ``OSError``; the retry is due only a minute later."""
    runs.append(("start", key))
    await trio.lowlevel.checkpoint()
    raise OSError(key)


@trio_workq.task(name="suite.retries_in_5s", retry=RetryPolicy(max_attempts=2, backoff=fixed(5)))
async def retries_in_5s(key: Any) -> None:
    """Fail with ``OSError``; the retry is due 5 s later (beyond a real-time test)."""
    runs.append(("start", key))
    await trio.lowlevel.checkpoint()
    raise OSError(key)
