# SPDX-License-Identifier: MIT
"""Poison tasks: task functions whose failure once crashed a durable worker (issue 14).

Each must end only its own task. Importable by tests and by a chaos harness
(``from _poison_tasks import ...`` with ``tests/`` on ``sys.path``), and by
worker processes (``trio-workq worker _poison_tasks``, with ``tests/`` on
``PYTHONPATH``): importing this module also registers `durable_helper`'s
tasks, so such a worker runs ordinary tasks next to the poison.

* ``poison.surrogate_result``: returns a string with a lone surrogate
  (``"bad \\ud800"``), which UTF-8 (and so JSON in a store) cannot hold.
* ``poison.surrogate_error``: raises an error whose message has one.
* ``poison.nul_error``: raises an error whose message has a NUL character
  (PostgreSQL text cannot hold one).
* ``poison.cleanup_fails``: runs until cancelled, then a child's
  ``finally`` raises `OSError`: the task raises `trio.Cancelled` and the
  `OSError` in one exception group. Submit it with a ``timeout`` or cancel it.
* ``poison.cleanup_fails_retried``: the same, with a retry policy (3
  attempts, no backoff).
* ``poison.ok``: an ordinary task returning its argument.
"""

from __future__ import annotations

import trio
from durable_helper import quick as quick  # registers the ordinary helper tasks too

import trio_workq

#: A string UTF-8 cannot encode: a lone surrogate.
SURROGATE_TEXT = "bad \ud800"
#: A string PostgreSQL text cannot hold.
NUL_TEXT = "bad \x00 nul"


@trio_workq.task(name="poison.surrogate_result")
async def surrogate_result() -> str:
    """Return a string with a lone surrogate."""
    await trio.lowlevel.checkpoint()
    return SURROGATE_TEXT


@trio_workq.task(name="poison.surrogate_error")
async def surrogate_error() -> None:
    """Raise an error whose message holds a lone surrogate."""
    await trio.lowlevel.checkpoint()
    raise ValueError(SURROGATE_TEXT)


@trio_workq.task(name="poison.nul_error")
async def nul_error() -> None:
    """Raise an error whose message holds a NUL character."""
    await trio.lowlevel.checkpoint()
    raise ValueError(NUL_TEXT)


async def _failing_cleanup() -> None:
    try:
        await trio.sleep_forever()
    finally:
        raise OSError("cleanup failed")  # the poison itself


async def _cleanup_fails() -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_failing_cleanup)
        await trio.sleep_forever()


@trio_workq.task(name="poison.cleanup_fails", retry=None)
async def cleanup_fails() -> None:
    """Run until cancelled; then a child's ``finally`` raises `OSError` (a mixed group)."""
    await _cleanup_fails()


@trio_workq.task(
    name="poison.cleanup_fails_retried",
    retry=trio_workq.RetryPolicy(max_attempts=3, backoff=trio_workq.fixed(0)),
)
async def cleanup_fails_retried() -> None:
    """As `cleanup_fails`, retried up to 3 attempts in all."""
    await _cleanup_fails()


@trio_workq.task(name="poison.ok")
async def ok(value: int) -> int:
    """An ordinary task."""
    await trio.lowlevel.checkpoint()
    return value
