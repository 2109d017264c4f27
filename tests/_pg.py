# SPDX-License-Identifier: MIT
"""The PostgreSQL server the store tests use, and the rule for when it is missing."""

from __future__ import annotations

import os

import psycopg
import pytest

PG_URL = os.environ.get("TRIO_WORKQ_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def require_postgres() -> str:
    """`PG_URL` if the server answers; else skip, or fail when ``CI`` is set."""
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL is not reachable at {PG_URL}: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return PG_URL
