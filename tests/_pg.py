# SPDX-License-Identifier: MIT
"""The PostgreSQL server the store tests use, and the rule for when it is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import trio
from _ci import unavailable

PG_URL = os.environ.get("TRIO_WORKQ_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")

#: Debian's postgresql-common keeps one directory per installed server version here.
_CLUSTER_CONFIGS = Path("/etc/postgresql")
_CLUSTER = "main"


def require_postgres() -> str:
    """`PG_URL` if the server answers; else skip, or fail when ``CI`` is set."""
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        unavailable(f"PostgreSQL is not reachable at {PG_URL}: {exc}")
    return PG_URL


def require_restartable_postgres() -> str:
    """The version of the local cluster ``main`` behind `PG_URL`, which a test may restart.

    Needs a reachable server on this host, Debian's ``pg_ctlcluster`` and
    ``pg_isready``, root, and exactly one server version installed; else
    skip, or fail when ``CI`` is set. Tests that restart the server must run
    under ``flock /tmp/pg.lock`` (other tests use the same server).
    """
    require_postgres()
    if urlsplit(PG_URL).hostname not in ("127.0.0.1", "localhost", "::1"):
        unavailable(f"cannot restart PostgreSQL: {PG_URL} is not a server on this host")
    for tool in ("pg_ctlcluster", "pg_isready"):
        if shutil.which(tool) is None:
            unavailable(f"cannot restart PostgreSQL: {tool} (postgresql-common) is not installed")
    if os.geteuid() != 0:
        unavailable("cannot restart PostgreSQL: pg_ctlcluster needs root")
    versions = []
    if _CLUSTER_CONFIGS.is_dir():
        versions = sorted(p.name for p in _CLUSTER_CONFIGS.iterdir() if (p / _CLUSTER).is_dir())
    if len(versions) != 1:
        unavailable(
            f"cannot restart PostgreSQL: expected one cluster {_CLUSTER!r} under "
            f"{_CLUSTER_CONFIGS}, found versions {versions}"
        )
    return versions[0]


async def _pg_ctlcluster(version: str, *action: str) -> subprocess.CompletedProcess[bytes]:
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", version, _CLUSTER, *action]
    return await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)


async def restart_postgres(version: str) -> None:
    """Restart the local server in fast mode (its sessions are terminated). Checkpoints.

    Returns once the server accepts connections again.
    """
    done = await _pg_ctlcluster(version, "restart", "-m", "fast")
    if done.returncode != 0:
        raise AssertionError(
            f"pg_ctlcluster restart exited {done.returncode}: "
            f"{(done.stdout + done.stderr).decode(errors='replace').strip()}"
        )
    await _wait_ready()


async def _ready() -> bool:
    port = str(urlsplit(PG_URL).port or 5432)
    done = await trio.run_process(["pg_isready", "-q", "-h", "127.0.0.1", "-p", port], check=False)
    return done.returncode == 0


async def _wait_ready() -> None:
    with trio.fail_after(30):
        while True:  # another process: poll it
            if await _ready():
                return
            await trio.sleep(0.1)


async def ensure_postgres_running(version: str) -> None:
    """Start the local server if it does not accept connections (after a failed restart).

    Bounded (about 30 s); shield it when calling it from a ``finally``.
    """
    if await _ready():
        return
    await _pg_ctlcluster(version, "start")  # "already running" (still starting) is fine
    await _wait_ready()
