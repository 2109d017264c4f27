# SPDX-License-Identifier: MIT
"""The tasks of the chaos harness (``python -m benchmarks.chaos``).

Its worker processes import this module (``trio-workq worker
benchmarks._chaos_tasks``). Every run of a task appends lines
``EVENT TASK_ID ATTEMPT PID`` (``start``, then ``end`` if it got that far)
to the ledger file named by `LEDGER_ENV`: one ``write`` per line in append
mode, so lines from several processes never interleave, and a SIGKILL leaves
at most a ``start`` without its ``end``.

The poison tasks each break one rule a worker must survive; with the
store's fixes every one of them ends ``failed`` on its own, without
retries, and without disturbing the tasks around it.
"""

from __future__ import annotations

import os

import trio

import trio_workq

LEDGER_ENV = "TRIO_WORKQ_CHAOS_LEDGER"

#: Enough attempts for a task whose worker is killed again and again.
RETRIES = trio_workq.RetryPolicy(max_attempts=20, backoff=trio_workq.fixed(0))


def record(event: str) -> None:
    """Append ``EVENT TASK_ID ATTEMPT PID`` for the running task to the ledger."""
    info = trio_workq.current_task()
    fd = os.open(os.environ[LEDGER_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{event} {info.id} {info.attempts} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def read_ledger(path: str) -> list[tuple[str, str, int, int]]:
    """The ``(event, task id, attempt, pid)`` lines of a ledger (none before the first)."""
    try:
        with open(path) as file:
            lines = file.read().splitlines()
    except FileNotFoundError:
        return []
    entries: list[tuple[str, str, int, int]] = []
    for line in lines:
        event, task_id, attempt, pid = line.split()
        entries.append((event, task_id, int(attempt), int(pid)))
    return entries


@trio_workq.task(name="chaos.work", retry=RETRIES)
async def work(seconds: float) -> None:
    """The ordinary task: record the start, sleep, record the end."""
    record("start")
    await trio.sleep(seconds)
    record("end")


# ------------------------------------------------------------------ poison


@trio_workq.task(name="chaos.surrogate_result", retry=None)
async def surrogate_result() -> str:
    """Returns a lone surrogate, which no UTF-8 serializer can store."""
    record("start")
    await trio.lowlevel.checkpoint()
    return "lone \ud800 surrogate"


@trio_workq.task(name="chaos.surrogate_error", retry=None)
async def surrogate_error() -> None:
    """Raises an error whose message holds a lone surrogate."""
    record("start")
    await trio.lowlevel.checkpoint()
    raise ValueError("lone \udc80 surrogate")


@trio_workq.task(name="chaos.nul_error", retry=None)
async def nul_error() -> None:
    """Raises an error whose message holds a NUL character (PostgreSQL text cannot)."""
    record("start")
    await trio.lowlevel.checkpoint()
    raise RuntimeError("a NUL \x00 character")


async def _cleanup_fails() -> None:
    try:
        await trio.sleep_forever()
    finally:
        raise OSError("cleanup failed while cancelled")  # the poison itself


@trio_workq.task(name="chaos.raising_cleanup", retry=None)
async def raising_cleanup() -> None:
    """Submitted with a timeout: when it cancels the task, a child's ``finally`` raises.

    The task then ends in an exception group (OSError next to the
    cancellation), not in a plain `TaskTimeout`.
    """
    record("start")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_cleanup_fails)
