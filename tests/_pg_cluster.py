# SPDX-License-Identifier: MIT
"""A throwaway PostgreSQL server: its own data directory, port and lifetime.

Tests that restart or kill the server (and the chaos harness,
``python -m benchmarks.chaos``) use one of these instead of the machine's
server, which other tests and other programs share::

    with throwaway_cluster() as cluster:
        ...  # cluster.url; cluster.restart() restarts this server only

It runs the server binaries of the newest installed version (``initdb``
and ``pg_ctl`` on ``PATH``, else Debian's ``/usr/lib/postgresql/*/bin``,
or ``$TRIO_WORKQ_PG_BINDIR``), in a new temporary directory, on a free
port of 127.0.0.1, with trust authentication and without fsync (it is
deleted afterwards). ``initdb`` and the server refuse to run as root: as
root, they run as the ``postgres`` user (``runuser``), which owns the
directory. Plain subprocesses, no event loop: call them from a thread in
async code (``trio.to_thread.run_sync``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Generator
from pathlib import Path

BINDIR_ENV = "TRIO_WORKQ_PG_BINDIR"
#: The OS user that runs the server when we are root.
SERVER_USER = "postgres"
#: Seconds ``pg_ctl`` waits for the server to start or stop.
_PG_CTL_WAIT = 60
#: Tries to find a free port: another program may take the one we picked before the server binds it.
_PORT_TRIES = 5


class ClusterUnavailable(Exception):
    """The server binaries (or the user to run them as) are missing."""


def find_bindir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``; raises `ClusterUnavailable`."""
    candidates: list[Path] = []
    if configured := os.environ.get(BINDIR_ENV):
        candidates.append(Path(configured))
    if on_path := shutil.which("initdb"):
        candidates.append(Path(on_path).parent)

    def version(bindir: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name))

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for bindir in candidates:
        if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    raise ClusterUnavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) on PATH, under "
        f"/usr/lib/postgresql/*/bin or in ${BINDIR_ENV}"
    )


def _as_server_user() -> tuple[list[str], pwd.struct_passwd | None]:
    """The command prefix that runs the server binaries, and the user it runs them as."""
    if os.geteuid() != 0:
        return [], None
    try:
        user = pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise ClusterUnavailable(
            f"running as root, and there is no {SERVER_USER!r} user to run the "
            "PostgreSQL server as (it refuses to run as root)"
        ) from None
    return ["runuser", "-u", SERVER_USER, "--"], user


def check_available() -> None:
    """Raise `ClusterUnavailable` if a throwaway server cannot be started here."""
    find_bindir()
    _as_server_user()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresCluster:
    """One server in a temporary directory; `throwaway_cluster` makes and removes it.

    Attributes:
        directory: The temporary directory (data directory, socket, log).
        port: The TCP port on 127.0.0.1.
        url: ``postgresql://postgres@127.0.0.1:PORT/postgres``.
    """

    def __init__(self, directory: Path) -> None:
        self.bindir = find_bindir()
        self.directory = directory
        self.data = directory / "data"
        self.logfile = directory / "server.log"
        self.port = 0
        self._as_user, server_user = _as_server_user()
        if server_user is not None:
            os.chown(directory, server_user.pw_uid, server_user.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._as_user, str(self.bindir / tool), *args],
            capture_output=True,
            text=True,
            check=False,
            cwd=self.directory,  # runuser keeps the working directory: one the server user can read
        )

    def _check(self, done: subprocess.CompletedProcess[str], what: str) -> None:
        if done.returncode != 0:
            log = self.logfile.read_text(errors="replace") if self.logfile.exists() else ""
            raise RuntimeError(
                f"{what} exited {done.returncode}: {(done.stdout + done.stderr).strip()}\n"
                f"server log:\n{log[-3000:]}"
            )

    def _pg_ctl(self, action: str, *options: str) -> subprocess.CompletedProcess[str]:
        return self._run(
            "pg_ctl", action, "-D", str(self.data), "-w", "-t", str(_PG_CTL_WAIT), *options
        )

    def init(self) -> None:
        """Create the data directory (``initdb``) and configure it. Blocks (about a second)."""
        done = self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync", "--locale=C",
        )  # fmt: skip
        self._check(done, "initdb")
        settings = {
            "listen_addresses": "'127.0.0.1'",
            # The socket in our directory: no clash with the machine's server in /var/run.
            "unix_socket_directories": f"'{self.directory}'",
            # A test server: speed over durability, which a deleted directory does not need.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
        }
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def start(self) -> None:
        """Start the server on a free port and wait until it accepts connections. Blocks."""
        done: subprocess.CompletedProcess[str] | None = None
        for _ in range(_PORT_TRIES):
            self.port = _free_port()
            done = self._pg_ctl("start", "-l", str(self.logfile), "-o", f"-p {self.port}")
            if done.returncode == 0:
                return
            if "could not bind" not in self.logfile.read_text(errors="replace"):
                break
        assert done is not None
        self._check(done, "pg_ctl start")

    def restart(self) -> None:
        """Restart the server in fast mode (its sessions are cut off), on the same port. Blocks.

        Returns once it accepts connections again.
        """
        done = self._pg_ctl(
            "restart", "-m", "fast", "-l", str(self.logfile), "-o", f"-p {self.port}"
        )
        self._check(done, "pg_ctl restart")

    def stop(self) -> None:
        """Stop the server if it runs (fast mode). Blocks."""
        if self._pg_ctl("status").returncode == 0:
            self._check(self._pg_ctl("stop", "-m", "fast"), "pg_ctl stop")


@contextlib.contextmanager
def throwaway_cluster() -> Generator[PostgresCluster, None, None]:
    """A started `PostgresCluster`, stopped and deleted on exit. Blocks.

    Raises:
        ClusterUnavailable: If the server binaries are missing (or, as root, the
            ``postgres`` user).
    """
    directory = Path(tempfile.mkdtemp(prefix="trio-workq-pg-"))
    try:
        cluster = PostgresCluster(directory)
        cluster.init()
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
