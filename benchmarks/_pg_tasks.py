# SPDX-License-Identifier: MIT
"""The tasks of ``bench_durable_postgres.py``, for trio_workq and for procrastinate.

The benchmark's worker processes import this module (from the benchmark's
copy of the sources):

* ``python -m trio_workq worker benchmarks._pg_tasks --store postgresql://...?schema=S``
* ``python -m procrastinate --app benchmarks._pg_tasks.procrastinate_app worker``

Both systems get the same two tasks: ``bench.noop`` does nothing;
``bench.wake`` prints ``<sample> <time.time()>`` to standard output as it
starts (the wake-up latency measurement reads that line).

The procrastinate app's database comes from the environment: `URL_ENV`
(default the local test server), `SCHEMA_ENV` (the schema holding its
tables, put first on the connections' ``search_path``) and `POOL_ENV` (its
pool size, default `PROCRASTINATE_POOL_SIZE`).
"""

from __future__ import annotations

import os
import time

import procrastinate
from psycopg.conninfo import make_conninfo

import trio_workq

URL_ENV = "BENCH_PG_URL"
SCHEMA_ENV = "BENCH_PG_SCHEMA"
POOL_ENV = "BENCH_PROCRASTINATE_POOL"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"

#: Connections in a procrastinate process's pool: psycopg_pool's default, and the
#: size of a `PostgresStore`'s pool. Both open one more connection for LISTEN.
PROCRASTINATE_POOL_SIZE = 4


def report_start(sample: int) -> None:
    """Print ``<sample> <wall-clock time>``: when a wake-up sample started running."""
    print(f"{sample} {time.time()!r}", flush=True)


# ------------------------------------------------------------------ trio_workq


@trio_workq.task(name="bench.noop")
async def noop() -> None:
    """The throughput task: nothing at all."""


@trio_workq.task(name="bench.wake")
async def wake(sample: int) -> None:
    """The wake-up latency task: report when it started."""
    report_start(sample)


# --------------------------------------------------------------- procrastinate


def make_procrastinate_app(
    url: str, schema: str, pool_size: int = PROCRASTINATE_POOL_SIZE
) -> procrastinate.App:
    """A procrastinate app with the two tasks, its tables in *schema* of the database at *url*.

    Callers defer by name (``app.configure_task("bench.noop")``).
    """
    conninfo = make_conninfo(url, options=f"-c search_path={schema}")
    connector = procrastinate.PsycopgConnector(
        conninfo=conninfo, min_size=pool_size, max_size=pool_size
    )
    app = procrastinate.App(connector=connector)

    @app.task(name="bench.noop")
    async def noop() -> None:
        pass

    @app.task(name="bench.wake")
    async def wake(sample: int) -> None:
        report_start(sample)

    return app


#: The app the procrastinate worker processes run (``--app``).
procrastinate_app = make_procrastinate_app(
    os.environ.get(URL_ENV, DEFAULT_URL),
    os.environ.get(SCHEMA_ENV, "public"),
    int(os.environ.get(POOL_ENV, PROCRASTINATE_POOL_SIZE)),
)
