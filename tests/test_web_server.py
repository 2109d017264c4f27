# SPDX-License-Identifier: MIT
"""serve_dashboard: a real Hypercorn server (Trio worker) on 127.0.0.1, port 0.

Each test is bounded by ``trio.fail_after`` and uses real time (no
autojump clock: real sockets are involved).
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from trio_workq import TaskStatus, WorkQueue, open_work_queue
from trio_workq.web import serve_dashboard
from trio_workq.web._server import is_loopback

LIMIT = 10  # seconds; each test takes well under one

TOKEN = "t0ken"


async def block() -> None:
    await trio.sleep_forever()


@asynccontextmanager
async def running_dashboard(
    queue: WorkQueue, **options: Any
) -> AsyncGenerator[tuple[str, trio.CancelScope], None]:
    """Serve *queue*'s dashboard; yield its URL and the scope that stops it."""
    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as scope:
            url: str = await nursery.start(partial(serve_dashboard, queue, port=0, **options))
            yield url, scope
        nursery.cancel_scope.cancel()


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
                async with running_dashboard(queue) as (url, _):
                    assert url.startswith("http://127.0.0.1:")
                    assert url.endswith("/")
                    port = int(url.rsplit(":", 1)[1].rstrip("/"))
                    assert port != 0
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
                async with running_dashboard(queue) as (url, scope):
                    port = int(url.rsplit(":", 1)[1].rstrip("/"))
                    async with httpx.AsyncClient(base_url=url) as client:
                        assert (await client.get("/healthz")).status_code == 200
                    scope.cancel()
                assert free_port_is_refused(port)
                assert not queue.statistics().closed
                async with httpx.AsyncClient(base_url=url) as client:
                    with pytest.raises(httpx.ConnectError):
                        await client.get("/healthz")

    async def test_listeners_are_removed_on_exit(self) -> None:
        """After the server stops, only the shared throughput counter stays on the queue."""
        with trio.fail_after(LIMIT):
            async with open_work_queue() as queue:
                before = len(queue._hooks)
                async with running_dashboard(queue) as (url, _):
                    async with httpx.AsyncClient(base_url=url) as client:
                        assert (await client.get("/metrics")).status_code == 200
                    assert len(queue._hooks) == before + 2
                assert len(queue._hooks) == before + 1

    async def test_hypercorn_logs_to_our_logger(self, caplog: pytest.LogCaptureFixture) -> None:
        """Hypercorn's messages go to the ``trio_workq.web`` logger, not straight to stderr."""
        caplog.set_level(logging.INFO, logger="trio_workq.web")
        with trio.fail_after(LIMIT):
            async with open_work_queue() as queue:
                async with running_dashboard(queue) as (url, _):
                    pass
        messages = [r.getMessage() for r in caplog.records if r.name == "trio_workq.web"]
        assert f"Running on {url.rstrip('/')} (CTRL + C to quit)" in messages

    async def test_token(self) -> None:
        """With a token, the real server refuses requests without it."""
        with trio.fail_after(LIMIT):
            async with open_work_queue() as queue:
                async with running_dashboard(queue, token=TOKEN) as (url, _):
                    async with httpx.AsyncClient(base_url=url) as client:
                        assert (await client.get("/api/stats")).status_code == 401
                        assert (await client.get("/")).status_code == 200
                        headers = {"authorization": f"Bearer {TOKEN}"}
                        assert (await client.get("/api/stats", headers=headers)).status_code == 200

    async def test_loopback_server_refuses_foreign_host_names(self) -> None:
        """A loopback dashboard answers only to local Host names (stops DNS rebinding)."""
        with trio.fail_after(LIMIT):
            async with open_work_queue() as queue:
                async with running_dashboard(queue) as (url, _):
                    port = url.rsplit(":", 1)[1].rstrip("/")
                    async with httpx.AsyncClient(base_url=url) as client:
                        for host in ("127.0.0.1", "localhost", "[::1]"):
                            response = await client.get("/", headers={"host": f"{host}:{port}"})
                            assert response.status_code == 200, host
                        for host in ("evil.example", "127.0.0.1.evil.example", ""):
                            response = await client.get(
                                "/api/stats", headers={"host": f"{host}:{port}"}
                            )
                            assert response.status_code == 400, host
                            assert response.json()["error"] == "bad_request"
                            assert response.headers["cache-control"] == "no-store"

    async def test_ipv6_loopback(self) -> None:
        """An IPv6 loopback host gives a bracketed URL."""
        try:
            with socket.socket(socket.AF_INET6) as probe:
                probe.bind(("::1", 0))
        except OSError:
            pytest.skip("this machine has no IPv6 loopback")
        with trio.fail_after(LIMIT):
            async with open_work_queue() as queue:
                async with running_dashboard(queue, host="::1") as (url, _):
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
                assert f"127.0.0.1:{port}" in str(info.value)

    @pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "example.org"])
    async def test_public_host_needs_a_token(self, host: str) -> None:
        """A non-loopback host without a token is refused before anything is bound."""
        async with open_work_queue() as queue:
            before = len(queue._hooks)
            with pytest.raises(ValueError, match="without a token"):
                await serve_dashboard(queue, host=host, port=0)
            assert len(queue._hooks) == before

    async def test_public_host_with_token(self) -> None:
        """With a token, any host may be used, and Host names are not restricted."""
        with trio.fail_after(LIMIT):
            async with open_work_queue() as queue:
                async with running_dashboard(queue, host="0.0.0.0", token=TOKEN) as (url, _):
                    port = url.rsplit(":", 1)[1].rstrip("/")
                    headers = {"authorization": f"Bearer {TOKEN}", "host": f"queue.lan:{port}"}
                    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/") as client:
                        assert (await client.get("/api/stats")).status_code == 401
                        response = await client.get("/api/stats", headers=headers)
                        assert response.status_code == 200

    async def test_allow_public_without_token(self) -> None:
        """allow_public=True serves on a public host without a token."""
        with trio.fail_after(LIMIT):
            async with open_work_queue() as queue:
                async with running_dashboard(queue, host="0.0.0.0", allow_public=True) as (url, _):
                    assert url.startswith("http://0.0.0.0:")
                    port = url.rsplit(":", 1)[1].rstrip("/")
                    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/") as client:
                        assert (await client.get("/api/stats")).status_code == 200

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
        ],
    )
    async def test_bad_arguments(
        self, options: dict[str, Any], error: type[Exception], match: str
    ) -> None:
        """Bad arguments raise before anything is bound."""
        async with open_work_queue() as queue:
            with pytest.raises(error, match=match):
                await serve_dashboard(queue, **options)

    async def test_not_a_queue(self) -> None:
        """serve_dashboard needs a WorkQueue."""
        with pytest.raises(TypeError, match=r"queue must be a trio_workq\.WorkQueue, not NoneType"):
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
