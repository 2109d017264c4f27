# SPDX-License-Identifier: MIT
# White-box: checks the dashboard's queue hooks and patches the server module.
# pyright: reportPrivateUsage=false
"""serve_dashboard: a real Hypercorn server (Trio worker) on 127.0.0.1, port 0.

Each test is bounded by ``trio.fail_after`` and uses real time (no
autojump clock: real sockets are involved).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from _ci import unavailable

from trio_workq import TaskStatus, WorkQueue, open_work_queue
from trio_workq.web import _server, check_dashboard_options, serve_dashboard
from trio_workq.web._server import is_loopback

LIMIT = 10  # seconds; each test takes well under one

TOKEN = "t0ken"


async def block() -> None:
    await trio.sleep_forever()


@asynccontextmanager
async def running_dashboard(queue: WorkQueue, **options: Any) -> AsyncGenerator[str, None]:
    """Serve *queue*'s dashboard while in the block; yield its URL."""
    async with trio.open_nursery() as nursery:
        url: str = await nursery.start(partial(serve_dashboard, queue, port=0, **options))
        yield url
        nursery.cancel_scope.cancel()


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].rstrip("/"))


@pytest.fixture
def everything_public(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every host count as reachable from other machines (tests still use 127.0.0.1)."""

    def never_loopback(host: str) -> bool:
        return False

    monkeypatch.setattr(_server, "is_loopback", never_loopback)


@pytest.fixture
def no_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if serve_dashboard gets as far as binding a socket."""

    async def refuse(host: str, port: int) -> socket.socket:
        raise AssertionError(f"serve_dashboard tried to bind {host} port {port}")

    monkeypatch.setattr(_server, "_bind", refuse)


class Resolver(trio.abc.HostnameResolver):
    """A hostname resolver for the test's Trio run: fixed names, nothing else."""

    def __init__(self, names: dict[bytes, tuple[socket.AddressFamily, str]]) -> None:
        self.names = names

    async def getaddrinfo(
        self,
        host: bytes | None,
        port: bytes | str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[Any]:
        await trio.lowlevel.checkpoint()
        if host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        address_family, address = self.names[host]
        assert isinstance(port, int)
        sockaddr = (address, port) if address_family == socket.AF_INET else (address, port, 0, 0)
        return [(address_family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)]

    async def getnameinfo(
        self, sockaddr: tuple[str, int] | tuple[str, int, int, int], flags: int
    ) -> tuple[str, str]:
        raise NotImplementedError


@pytest.fixture
async def resolver() -> AsyncGenerator[Resolver, None]:
    """Names that only this test's Trio run resolves: proof that Trio's resolver is used."""
    resolver = Resolver(
        {
            b"dashboard4.test": (socket.AF_INET, "127.0.0.1"),
            b"dashboard6.test": (socket.AF_INET6, "::1"),
        }
    )
    previous = trio.socket.set_custom_hostname_resolver(resolver)
    try:
        yield resolver
    finally:
        trio.socket.set_custom_hostname_resolver(previous)


def require_ipv6_loopback() -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        unavailable(f"this machine has no IPv6 loopback ({exc})")


def free_port_is_refused(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:*port*."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


class TestServe:
    async def test_serves_api_and_page(self) -> None:
        """The started value is the real base URL; the page and the API answer there."""
        with trio.fail_after(LIMIT):
            async with open_work_queue(workers=3, shutdown_timeout=0) as queue:
                running = await queue.submit(block, name="long")
                await trio.testing.wait_all_tasks_blocked()
                async with running_dashboard(queue) as url:
                    assert url.startswith("http://127.0.0.1:")
                    assert url.endswith("/")
                    assert port_of(url) != 0
                    async with httpx.AsyncClient(base_url=url) as client:
                        page = await client.get("/")
                        assert page.status_code == 200
                        assert "trio_workq" in page.text
                        assert page.headers["content-security-policy"].startswith("default-src")
                        assert "server" not in page.headers
                        stats = (await client.get("/api/stats")).json()
                        assert stats["counts"]["running"] == 1
                        assert stats["workers"] == 3
                        [row] = (await client.get("/api/tasks")).json()["tasks"]
                        assert row["name"] == "long"
                        response = await client.post(f"/api/tasks/{running.id}/cancel")
                        assert response.status_code == 200
                        await running.wait()
                        assert running.status is TaskStatus.CANCELLED
                        assert (await client.get("/healthz")).json() == {"status": "ok"}

    async def test_cancelling_stops_the_server(self) -> None:
        """Cancelling serve_dashboard closes the port; the queue is untouched."""
        with trio.fail_after(LIMIT):
            async with open_work_queue() as queue:
                async with running_dashboard(queue) as url:
                    async with httpx.AsyncClient(base_url=url) as client:
                        assert (await client.get("/healthz")).status_code == 200
                # Leaving the block cancelled the server.
                assert free_port_is_refused(port_of(url))
                assert not queue.statistics_nowait().closed
                async with httpx.AsyncClient(base_url=url) as client:
                    with pytest.raises(httpx.ConnectError):
                        await client.get("/healthz")

    async def test_listeners_are_removed_on_exit(self) -> None:
        """After the server stops, only the shared throughput counter stays on the queue."""
        with trio.fail_after(LIMIT):
            async with open_work_queue() as queue:
                before = len(queue._hooks)
                async with running_dashboard(queue) as url:
                    async with httpx.AsyncClient(base_url=url) as client:
                        assert (await client.get("/metrics")).status_code == 200
                    assert len(queue._hooks) == before + 2
                assert len(queue._hooks) == before + 1

    async def test_hypercorn_logs_to_our_logger(self, caplog: pytest.LogCaptureFixture) -> None:
        """Hypercorn's messages go to the ``trio_workq.web`` logger, not straight to stderr."""
        caplog.set_level(logging.INFO, logger="trio_workq.web")
        with trio.fail_after(LIMIT):
            async with open_work_queue() as queue:
                async with running_dashboard(queue) as url:
                    pass
        messages = [r.getMessage() for r in caplog.records if r.name == "trio_workq.web"]
        assert f"Running on {url.rstrip('/')} (CTRL + C to quit)" in messages

    async def test_token(self) -> None:
        """With a token, the real server refuses requests without it."""
        with trio.fail_after(LIMIT):
            async with open_work_queue() as queue:
                async with running_dashboard(queue, token=TOKEN) as url:
                    async with httpx.AsyncClient(base_url=url) as client:
                        assert (await client.get("/api/stats")).status_code == 401
                        assert (await client.get("/")).status_code == 200
                        headers = {"authorization": f"Bearer {TOKEN}"}
                        assert (await client.get("/api/stats", headers=headers)).status_code == 200

    async def test_loopback_server_refuses_foreign_host_names(self) -> None:
        """A loopback dashboard answers only to local Host names (stops DNS rebinding)."""
        with trio.fail_after(LIMIT):
            async with open_work_queue() as queue:
                async with running_dashboard(queue) as url:
                    port = port_of(url)
                    async with httpx.AsyncClient(base_url=url) as client:
                        for host in ("127.0.0.1", "localhost", "[::1]", "LocalHost", "LOCALHOST"):
                            response = await client.get("/", headers={"host": f"{host}:{port}"})
                            assert response.status_code == 200, host
                        for host in ("evil.example", "127.0.0.1.evil.example", ""):
                            response = await client.get(
                                "/api/stats", headers={"host": f"{host}:{port}"}
                            )
                            assert response.status_code == 400, host
                            assert response.json()["error"] == "bad_request"
                            assert response.headers["cache-control"] == "no-store"

    async def test_allowed_hosts_replace_the_local_names(self) -> None:
        """allowed_hosts: the names a proxy forwards; then only those are answered."""
        with trio.fail_after(LIMIT):
            async with open_work_queue() as queue:
                options = {"allowed_hosts": ["queue.example.org"]}
                async with running_dashboard(queue, **options) as url:
                    port = port_of(url)
                    async with httpx.AsyncClient(base_url=url) as client:
                        for host, status in [
                            ("queue.example.org", 200),
                            ("QUEUE.example.org:443", 200),
                            (f"127.0.0.1:{port}", 400),
                        ]:
                            response = await client.get("/api/stats", headers={"host": host})
                            assert response.status_code == status, host

    async def test_ipv6_loopback(self) -> None:
        """An IPv6 loopback host gives a bracketed URL."""
        require_ipv6_loopback()
        with trio.fail_after(LIMIT):
            async with open_work_queue() as queue:
                async with running_dashboard(queue, host="::1") as url:
                    assert url.startswith("http://[::1]:")
                    async with httpx.AsyncClient(base_url=url) as client:
                        assert (await client.get("/healthz")).status_code == 200


class TestBinding:
    async def test_port_in_use(self) -> None:
        """A port in use raises a clear OSError (errno EADDRINUSE) from nursery.start."""
        with trio.fail_after(LIMIT):
            async with open_work_queue() as queue:
                with socket.socket() as taken:
                    taken.bind(("127.0.0.1", 0))
                    taken.listen()
                    port = taken.getsockname()[1]
                    async with trio.open_nursery() as nursery:
                        with pytest.raises(OSError, match="cannot serve the dashboard") as info:
                            await nursery.start(partial(serve_dashboard, queue, port=port))
                assert type(info.value) is OSError
                assert info.value.errno == errno.EADDRINUSE
                assert info.value.strerror == (
                    f"cannot serve the dashboard on 127.0.0.1 port {port}: "
                    f"{os.strerror(errno.EADDRINUSE)}"
                )

    async def test_host_name_resolved_by_trio(self, resolver: Resolver) -> None:
        """A host name is resolved with Trio's resolver (not blocking the run) and bound."""
        with trio.fail_after(LIMIT):
            async with open_work_queue() as queue:
                async with running_dashboard(queue, host="dashboard4.test", token=TOKEN) as url:
                    assert url.startswith("http://127.0.0.1:")
                    headers = {"authorization": f"Bearer {TOKEN}"}
                    async with httpx.AsyncClient(base_url=url, headers=headers) as client:
                        assert (await client.get("/healthz")).status_code == 200

    async def test_ipv6_host_name(self, resolver: Resolver) -> None:
        """A name that resolves to an IPv6 address is bound with the IPv6 family."""
        require_ipv6_loopback()
        with trio.fail_after(LIMIT):
            async with open_work_queue() as queue:
                async with running_dashboard(queue, host="dashboard6.test", token=TOKEN) as url:
                    assert url.startswith("http://[::1]:")
                    headers = {"authorization": f"Bearer {TOKEN}"}
                    async with httpx.AsyncClient(base_url=url, headers=headers) as client:
                        assert (await client.get("/healthz")).status_code == 200

    async def test_unknown_host_name(self, resolver: Resolver) -> None:
        """A name that does not resolve: an OSError naming it, with the resolver's reason."""
        with trio.fail_after(LIMIT):
            async with open_work_queue() as queue:
                before = len(queue._hooks)
                with pytest.raises(OSError) as info:
                    await serve_dashboard(queue, host="nowhere.test", port=0, token=TOKEN)
                assert len(queue._hooks) == before
        assert info.value.errno == socket.EAI_NONAME
        assert info.value.strerror == (
            "cannot serve the dashboard on nowhere.test port 0: Name or service not known"
        )

    @pytest.mark.usefixtures("no_binding")
    @pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "example.org"])
    async def test_public_host_needs_a_token(self, host: str) -> None:
        """A non-loopback host without a token is refused before anything is bound."""
        async with open_work_queue() as queue:
            before = len(queue._hooks)
            with pytest.raises(ValueError, match="without a token"):
                await serve_dashboard(queue, host=host, port=0)
            assert len(queue._hooks) == before

    @pytest.mark.usefixtures("everything_public")
    async def test_public_host_refused_on_a_real_server(self) -> None:
        """The refusal follows is_loopback: with 127.0.0.1 counted as public, it is refused."""
        async with open_work_queue() as queue:
            with pytest.raises(ValueError, match=r"on 127\.0\.0\.1 without a token"):
                await serve_dashboard(queue, port=0)

    @pytest.mark.usefixtures("everything_public")
    async def test_public_host_with_token(self) -> None:
        """With a token, a public host is served, and Host names are not restricted."""
        with trio.fail_after(LIMIT):
            async with open_work_queue() as queue:
                async with running_dashboard(queue, token=TOKEN) as url:
                    headers = {"authorization": f"Bearer {TOKEN}", "host": "queue.lan"}
                    async with httpx.AsyncClient(base_url=url) as client:
                        assert (await client.get("/api/stats")).status_code == 401
                        response = await client.get("/api/stats", headers=headers)
                        assert response.status_code == 200

    @pytest.mark.usefixtures("everything_public")
    async def test_allow_public_without_token(self) -> None:
        """allow_public=True serves a public host without a token, to any Host name."""
        with trio.fail_after(LIMIT):
            async with open_work_queue() as queue:
                async with running_dashboard(queue, allow_public=True) as url:
                    async with httpx.AsyncClient(base_url=url) as client:
                        response = await client.get("/api/stats", headers={"host": "queue.lan"})
                        assert response.status_code == 200

    @pytest.mark.usefixtures("no_binding")
    @pytest.mark.parametrize(
        ("options", "error", "match"),
        [
            ({"port": -1}, ValueError, "port must be from 0 to 65535, got -1"),
            ({"port": 65536}, ValueError, "port must be from 0 to 65535, got 65536"),
            ({"port": "8000"}, TypeError, "port must be an int, not str"),
            ({"port": True}, TypeError, "port must be an int, not bool"),
            ({"host": ""}, ValueError, "host must not be empty"),
            ({"host": 127}, TypeError, "host must be a str, not int"),
            ({"token": ""}, ValueError, "token must be"),
            ({"token": "a b"}, ValueError, "token must be"),
            ({"token": 5}, TypeError, "token must be a str or None, not int"),
            ({"allow_public": "yes"}, TypeError, "allow_public must be a bool, not str"),
            ({"allowed_hosts": "localhost"}, TypeError, "allowed_hosts must be a collection"),
            ({"allowed_hosts": []}, ValueError, "allowed_hosts must name at least one host"),
            ({"host": "0.0.0.0"}, ValueError, "refusing to serve the dashboard on 0.0.0.0"),
        ],
    )
    async def test_bad_arguments(
        self, options: dict[str, Any], error: type[Exception], match: str
    ) -> None:
        """Bad arguments raise before anything is bound, from serve_dashboard and the checker."""
        with pytest.raises(error, match=match):
            check_dashboard_options(**options)
        async with open_work_queue() as queue:
            with pytest.raises(error, match=match):
                await serve_dashboard(queue, **options)

    @pytest.mark.parametrize(
        "options",
        [
            {},
            {"host": "0.0.0.0", "token": TOKEN},
            {"host": "::", "allow_public": True, "port": 0},
            {"host": "localhost", "allowed_hosts": ["queue.example.org"]},
        ],
    )
    def test_good_options_pass_the_checker(self, options: dict[str, Any]) -> None:
        """check_dashboard_options accepts what serve_dashboard would serve."""
        check_dashboard_options(**options)  # raises nothing

    async def test_not_a_queue(self) -> None:
        """serve_dashboard needs a TaskQueue (a WorkQueue or a DurableWorkQueue)."""
        with pytest.raises(TypeError, match=r"queue must be a trio_workq\.TaskQueue.*NoneType"):
            await serve_dashboard(None)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("host", "loopback"),
        [
            ("127.0.0.1", True),
            ("127.5.6.7", True),
            ("::1", True),
            ("localhost", True),
            ("0.0.0.0", False),
            ("::", False),
            ("10.0.0.1", False),
            ("my-host", False),
            ("localhost.example.org", False),
        ],
    )
    def test_is_loopback(self, host: str, loopback: bool) -> None:
        """Only loopback addresses and ``localhost`` count as local."""
        assert is_loopback(host) is loopback
