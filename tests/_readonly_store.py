# SPDX-License-Identifier: MIT
# White-box: wraps SQLiteStore's private connect to make the database read-only.
# pyright: reportPrivateUsage=false
"""Makes every `SQLiteStore` opened in this process read-only, and registers a task.

A worker process imports it as its task module (``trio-workq worker
_readonly_store``, with `READ_ONLY_ENV` set); tests in this process call
`make_read_only`. The
connection is switched to ``PRAGMA query_only`` once its schema is in place,
so every write fails as on a read-only file ("attempt to write a readonly
database"): ``chmod`` cannot make a file read-only for root, which runs
some test machines.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from typing import Any

import trio

import trio_workq
from trio_workq._stores.sqlite import SQLiteStore

#: Set in a worker process's environment to make its stores read-only on import.
READ_ONLY_ENV = "TRIO_WORKQ_TEST_READ_ONLY"


def make_read_only(
    setattr_: Callable[[Any, str, Any], None] = setattr,
) -> None:
    """Patch `SQLiteStore` (with *setattr_*, e.g. ``monkeypatch.setattr``)."""
    connect = SQLiteStore._connect

    def read_only_connect(self: SQLiteStore) -> sqlite3.Connection:
        conn = connect(self)
        conn.execute("PRAGMA query_only = ON")
        return conn

    setattr_(SQLiteStore, "_connect", read_only_connect)


@trio_workq.task
async def noop() -> None:
    await trio.lowlevel.checkpoint()


@trio_workq.task
async def nap(seconds: float) -> None:
    await trio.sleep(seconds)


if os.environ.get(READ_ONLY_ENV):  # a worker process that imported this module
    make_read_only()
