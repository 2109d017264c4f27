# SPDX-License-Identifier: MIT
# White-box: counts the idle connections of PostgresStore's pool.
# pyright: reportPrivateUsage=false
"""PostgresStore's connection pool keeps its connections when a call is cancelled.

Against the local test server (``$TRIO_WORKQ_TEST_PG_URL``), each test in a
schema of its own; without a server the tests skip locally and fail under CI.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
import trio
import trio.testing
from _pg import require_postgres
from psycopg import sql

from trio_workq._stores.postgres import PostgresStore


@pytest.fixture(scope="module")
def pg_url() -> str:
    return require_postgres()


@pytest.fixture
def schema(pg_url: str) -> Iterator[str]:
    name = f"twq_pool_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
async def store(pg_url: str, schema: str) -> AsyncIterator[PostgresStore]:
    opened = PostgresStore(pg_url, schema=schema, pool_size=1)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.aclose()


async def test_cancelled_after_the_pool_slot_keeps_the_connection(store: PostgresStore) -> None:
    """A call cancelled between getting a pool slot and starting its thread loses no connection.

    It used to take an idle connection and drop it (open, unreferenced: a
    ``ResourceWarning`` at garbage collection, failing whatever test ran then).
    """
    pool = store._pool
    assert len(pool._idle) == 1  # the connection open() used
    outcome: list[str] = []

    async def caller(scope: trio.CancelScope) -> None:
        with scope:
            await store.counts()
            outcome.append("ran")
        if scope.cancelled_caught:
            outcome.append("cancelled")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            token = object()
            await pool.limiter.acquire_on_behalf_of(token)  # the one slot is taken
            scope = trio.CancelScope()
            nursery.start_soon(caller, scope)
            await trio.testing.wait_all_tasks_blocked()  # the caller waits for the slot
            # Hand it the slot and cancel it in one step: it wakes holding the
            # slot, already cancelled.
            pool.limiter.release_on_behalf_of(token)
            scope.cancel()
    assert outcome == ["cancelled"]
    assert len(pool._idle) == 1
    assert sum((await store.counts()).values()) == 0  # and the pool still works
