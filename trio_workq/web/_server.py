# SPDX-License-Identifier: MIT
"""Serving the dashboard with Hypercorn's Trio worker."""

from __future__ import annotations

import ipaddress
import logging
import socket
from typing import TYPE_CHECKING, cast

import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio import serve  # pyright: ignore[reportUnknownVariableType] - its WSGI type has a bare dict

from .._queue import WorkQueue
from ._app import build_app, check_token
from ._source import QueueSource

if TYPE_CHECKING:
    from hypercorn.typing import ASGIFramework

#: Hypercorn's own messages ("Running on ...", connection errors) go here.
logger = logging.getLogger("trio_workq.web")

# Host header names a loopback-bound dashboard answers to.
_LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    """Whether *host* names a loopback address (only this machine can connect)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name, or a malformed address: assume it is reachable
        return False


class _ReportURL:
    """Passed to Hypercorn as its ``task_status``: reports the bound base URL upwards."""

    def __init__(self, task_status: trio.TaskStatus[str]) -> None:
        self._task_status = task_status

    def started(self, value: list[str] | None = None) -> None:
        assert value, "Hypercorn reports the addresses it listens on"
        self._task_status.started(value[0] + "/")


class _BoundConfig(Config):
    """A Hypercorn config serving a socket bound beforehand.

    Binding ourselves makes "port in use" a plain `OSError` raised before
    Hypercorn starts (and closes the socket when binding fails).
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._socket = sock

    def create_sockets(self) -> Sockets:
        return Sockets(secure_sockets=[], insecure_sockets=[self._socket], quic_sockets=[])


def _bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (*host*, *port*), not yet listening; closed if binding fails."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def serve_dashboard(
    queue: WorkQueue,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    allow_public: bool = False,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the dashboard and REST API of *queue* over HTTP until cancelled.

    Start it with ``url = await nursery.start(serve_dashboard, queue)``: the
    value is the base URL it listens on (with the real port when *port* is
    0), e.g. ``http://127.0.0.1:8000/``. Cancel the enclosing scope to stop
    it; open connections are closed. Always blocks (a checkpoint).

    Run it in the Trio run of the queue, as with `create_app`.

    Args:
        queue: The `~trio_workq.WorkQueue` to show and act on.
        host: The address to listen on. Loopback addresses (the default) are
            reachable from this machine only; the dashboard then also
            refuses requests whose Host header is not a local name.
        port: The TCP port; 0 picks a free one.
        token: If given, every API request must carry
            ``Authorization: Bearer <token>``; printable ASCII, no spaces.
        allow_public: Serve on a non-loopback *host* without a token. Anyone
            who can reach the port can then cancel and retry tasks.

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For a bad *port* or *token*, or a non-loopback *host*
            without a *token* unless *allow_public* is true.
        OSError: If the address cannot be bound (e.g. the port is in use);
            its ``errno`` is the system's (``errno.EADDRINUSE``).
    """
    if not isinstance(queue, WorkQueue):
        raise TypeError(f"queue must be a trio_workq.WorkQueue, not {type(queue).__name__}")
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    if not host:
        raise ValueError("host must not be empty (use '0.0.0.0' for every IPv4 address)")
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, not {type(port).__name__}")
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be from 0 to 65535, got {port}")
    token = check_token(token)
    if not isinstance(allow_public, bool):
        raise TypeError(f"allow_public must be a bool, not {type(allow_public).__name__}")
    local = is_loopback(host)
    if not local and token is None and not allow_public:
        raise ValueError(
            f"refusing to serve the dashboard on {host!r} without a token: anyone who can "
            f"reach it could cancel and retry tasks. Pass token=..., or allow_public=True "
            f"if the network is trusted"
        )

    try:
        sock = _bind(host, port)
    except OSError as exc:
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise OSError(
            exc.errno, f"cannot serve the dashboard on {address}: {exc.strerror}"
        ) from exc
    try:
        config = _BoundConfig(sock)
        config.errorlog = logger
        config.accesslog = None
        config.include_server_header = False
        source = QueueSource(queue)
        try:
            app = build_app(
                source, token=token, allowed_hosts=_LOCAL_NAMES | {host} if local else None
            )
            # Starlette's ASGI signature is looser than Hypercorn's typed one.
            asgi_app = cast("ASGIFramework", app)
            await serve(asgi_app, config, task_status=_ReportURL(task_status))
        finally:
            source.close()
    finally:
        sock.close()
