# SPDX-License-Identifier: MIT
"""Serving the dashboard with Hypercorn's Trio worker."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio import serve  # pyright: ignore[reportUnknownVariableType] - its WSGI type has a bare dict

from .._runtime.api import TaskQueue
from ._app import LOCAL_HOST_NAMES, build_app, check_allowed_hosts, check_token
from ._source import QueueSource, check_queue

if TYPE_CHECKING:
    from hypercorn.typing import ASGIFramework

#: Hypercorn's own messages ("Running on ...", connection errors) go here.
logger = logging.getLogger("trio_workq.web")


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


def check_dashboard_options(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    allow_public: bool = False,
    allowed_hosts: Iterable[str] | None = None,
) -> None:
    """Check options for `serve_dashboard` without serving anything. Not a checkpoint.

    `serve_dashboard` makes the same checks; call this to refuse bad options
    before starting anything else (``trio-workq demo`` does). It does not
    resolve *host* or bind the port: `serve_dashboard` reports those
    problems as `OSError`.

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For a bad *port*, *token* or *allowed_hosts*, or a
            non-loopback *host* without a *token* unless *allow_public* is true.
    """
    _host_names(host, port, token, allow_public, allowed_hosts)


def _host_names(
    host: object, port: object, token: object, allow_public: object, allowed_hosts: object
) -> frozenset[str] | None:
    """Check the options of `serve_dashboard`; return the Host names it answers to (None: any)."""
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
    names = check_allowed_hosts(allowed_hosts)
    local = is_loopback(host)
    if not local and token is None and not allow_public:
        raise ValueError(
            f"refusing to serve the dashboard on {host} without a token: anyone who can "
            "reach it could cancel and retry tasks. Give a token, or allow public access "
            "if the network is trusted"
        )
    if names is not None:
        return names
    return (LOCAL_HOST_NAMES | {host.lower()}) if local else None


async def _bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (*host*, *port*), not yet listening. Always a checkpoint.

    Raises:
        OSError: If *host* does not resolve or the address cannot be bound,
            with a message that names the address (and the system's errno).
    """
    try:
        # A host name is resolved in a worker thread (the run goes on meanwhile);
        # a numeric address is answered at once.
        addresses = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = addresses[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind(address)  # a numeric address: binding does not block
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OSError(
            exc.errno, f"cannot serve the dashboard on {host} port {port}: {reason}"
        ) from exc
    return sock


async def serve_dashboard(
    queue: TaskQueue,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    allow_public: bool = False,
    allowed_hosts: Iterable[str] | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the dashboard and REST API of *queue* over HTTP until cancelled.

    Start it with ``url = await nursery.start(serve_dashboard, queue)``: the
    value is the base URL it listens on (with the real port when *port* is
    0), e.g. ``http://127.0.0.1:8000/``. Cancel the enclosing scope to stop
    it; open connections are closed. Always blocks (a checkpoint).

    Run it in the Trio run of the queue, as with `create_app`.

    Args:
        queue: The queue to show and act on: a `~trio_workq.WorkQueue`, or
            a `~trio_workq.DurableWorkQueue` (every task of its store, and
            this process's workers).
        host: The address or host name to listen on (a name is resolved
            without blocking the run, and its first address is used).
            Loopback addresses (the default) are reachable from this machine
            only.
        port: The TCP port; 0 picks a free one.
        token: If given, every API request must carry
            ``Authorization: Bearer <token>``; printable ASCII, no spaces.
        allow_public: Serve on a non-loopback *host* without a token. Anyone
            who can reach the port can then cancel and retry tasks.
        allowed_hosts: The names the dashboard answers to in the Host
            header (any case, without the port); other names get a 400. By
            default, on a loopback *host*: ``localhost``, ``127.0.0.1``,
            ``::1`` and *host* (this stops DNS rebinding); on any other
            host, every name. Behind a reverse proxy that passes on the
            browser's Host header, list the public name here.

    Raises:
        TypeError: If *queue* is not a `~trio_workq.TaskQueue`; for
            arguments of the wrong type.
        ValueError: For a bad *port*, *token* or *allowed_hosts*, or a
            non-loopback *host* without a *token* unless *allow_public* is
            true (the checks of `check_dashboard_options`).
        OSError: If *host* does not resolve or the address cannot be bound
            (e.g. the port is in use); the message names the address, and
            ``errno`` is the system's (``errno.EADDRINUSE``).
    """
    check_queue(queue)
    names = _host_names(host, port, token, allow_public, allowed_hosts)
    sock = await _bind(host, port)
    try:
        config = _BoundConfig(sock)
        config.errorlog = logger
        config.accesslog = None
        config.include_server_header = False
        source = QueueSource(queue)
        try:
            app = build_app(source, token=token, allowed_hosts=names)
            # Starlette's ASGI signature is looser than Hypercorn's typed one.
            asgi_app = cast("ASGIFramework", app)
            await serve(asgi_app, config, task_status=_ReportURL(task_status))
        finally:
            source.close()
    finally:
        sock.close()
