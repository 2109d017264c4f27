# SPDX-License-Identifier: MIT
"""The PostgreSQL servers the store tests use, and the rule for when one is missing.

Most tests share the server at `PG_URL`, each in a schema of its own; a test
that restarts or kills the server gets a throwaway one (`require_cluster`),
never the shared one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
from _ci import unavailable
from _pg_cluster import ClusterUnavailable, PostgresCluster, check_available, throwaway_cluster

PG_URL = os.environ.get("TRIO_WORKQ_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def require_postgres() -> str:
    """`PG_URL` if the server answers; else skip, or fail when ``CI`` is set."""
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        unavailable(f"PostgreSQL is not reachable at {PG_URL}: {exc}")
    return PG_URL


def require_cluster() -> Iterator[PostgresCluster]:
    """A throwaway server of the test's own (for a fixture: yields once). Blocks while it starts.

    Without the server binaries: skip, or fail when ``CI`` is set.
    """
    try:
        check_available()
    except ClusterUnavailable as exc:
        unavailable(f"cannot start a throwaway PostgreSQL server: {exc}")
    with throwaway_cluster() as cluster:
        yield cluster
