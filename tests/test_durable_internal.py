# SPDX-License-Identifier: MIT
"""What trio_workq.web and the cli read of a durable queue: its serializer, wall_time, store."""

from __future__ import annotations

import time
from pathlib import Path

import trio

import trio_workq
from trio_workq._durable.queue import open_durable_queue
from trio_workq._durable.serialize import JSONSerializer


@trio_workq.task(name="internal.echo")
async def echo(value: int) -> int:
    await trio.lowlevel.checkpoint()
    return value


async def test_internal_stable_members(tmp_path: Path) -> None:
    """The serializer reads a stored payload; wall_time maps trio time to Unix time."""
    serializer = JSONSerializer()
    with trio.fail_after(10):
        async with open_durable_queue(
            store=f"sqlite:///{tmp_path}/t.db", workers=0, serializer=serializer
        ) as queue:
            assert queue.serializer is serializer
            assert abs(queue.wall_time(trio.current_time()).timestamp() - time.time()) < 5
            handle = await queue.submit(echo, 7)
            row = await queue.store.get(handle.id)
            assert row is not None
            assert row.id == handle.id
            assert queue.serializer.loads(row.payload) == {"args": [7]}
