# SPDX-License-Identifier: MIT
"""Tasks for the multi-process durable tests (not collected by pytest).

Worker subprocesses import this module by name (``trio-workq worker
durable_helper``, with this directory on ``PYTHONPATH``); the tests load it
from its path. The names are explicit, so they match in both.

Every run appends ``EVENT KEY PID`` lines to the file named by the
``DURABLE_TEST_LOG`` environment variable (one ``write`` per line, in append
mode: lines from several processes never interleave).
"""

from __future__ import annotations

import os

import trio

import trio_workq

LOG_ENV = "DURABLE_TEST_LOG"


def record(event: str, key: int) -> None:
    """Append ``EVENT KEY PID`` to the log file."""
    path = os.environ[LOG_ENV]
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{event} {key} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def read_log(path: str) -> list[tuple[str, int, int]]:
    """The ``(event, key, pid)`` lines of a log file (none if it does not exist yet)."""
    try:
        with open(path) as file:
            lines = file.read().splitlines()
    except FileNotFoundError:
        return []
    entries: list[tuple[str, int, int]] = []
    for line in lines:
        event, key, pid = line.split()
        entries.append((event, int(key), int(pid)))
    return entries


@trio_workq.task(
    name="helper.work", retry=trio_workq.RetryPolicy(max_attempts=3, backoff=trio_workq.fixed(0))
)
async def work(key: int, seconds: float) -> int:
    """Record the start, sleep, record the end: a task with a visible run (and retries)."""
    record("start", key)
    await trio.sleep(seconds)
    record("end", key)
    return key


@trio_workq.task(name="helper.quick")
async def quick(key: int) -> int:
    """Record one run, no waiting."""
    record("run", key)
    await trio.lowlevel.checkpoint()
    return key


@trio_workq.task(name="helper.block")
async def block(key: int) -> None:
    """Record the start, then run until cancelled (recording that too)."""
    record("start", key)
    try:
        await trio.sleep_forever()
    finally:
        record("stopped", key)


@trio_workq.task(
    name="helper.flaky", retry=trio_workq.RetryPolicy(max_attempts=3, backoff=trio_workq.fixed(1))
)
async def flaky(key: int, failures: int) -> int:
    """Fail the first *failures* runs (counted in the log, so across processes), then succeed."""
    await trio.lowlevel.checkpoint()
    failed = sum(
        1 for event, logged, _ in read_log(os.environ[LOG_ENV]) if (event, logged) == ("fail", key)
    )
    if failed < failures:
        record("fail", key)
        raise RuntimeError(f"planned failure {failed + 1} of task {key}")
    record("run", key)
    return key
