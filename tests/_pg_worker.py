# SPDX-License-Identifier: MIT
"""A separate process for the PostgreSQL store tests (not collected by pytest).

Usage: ``python _pg_worker.py URL SCHEMA MODE``. The process prints ``ready``,
waits for a line on stdin (so that several processes start at the same
instant), then:

* ``open``: opens the store (creating or migrating the schema) and prints
  ``opened``;
* ``claim``: opens the store, claims batches of 10 until none is left and
  prints the claimed ids as one JSON list.
"""

from __future__ import annotations

import json
import os
import sys

import trio

from trio_workq._stores.postgres import PostgresStore


async def main(url: str, schema: str, mode: str) -> None:
    print("ready", flush=True)
    await trio.to_thread.run_sync(sys.stdin.readline)
    store = PostgresStore(url, schema=schema)
    await store.open()
    try:
        if mode == "open":
            print("opened", flush=True)
        elif mode == "claim":
            claimed: list[str] = []
            while tasks := (await store.claim(f"worker-{os.getpid()}", 10, 60.0)).tasks:
                claimed.extend(task.id for task in tasks)
            print(json.dumps(claimed), flush=True)
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    finally:
        await store.aclose()


if __name__ == "__main__":
    url, schema, mode = sys.argv[1:4]
    trio.run(main, url, schema, mode)
