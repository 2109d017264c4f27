# SPDX-License-Identifier: MIT
# White-box: checks that the dashboard adds and removes its queue hooks.
# pyright: reportPrivateUsage=false
"""The dashboard's REST API, in-process: httpx over ASGI, under Trio (the ``web`` extra).

httpx's AsyncClient runs on Trio through anyio, so the app's handlers run in
the test's own Trio run, next to the queue.
"""

from __future__ import annotations

import gc
import html.parser
import sys
import weakref
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx
import prometheus_client
import pytest
import trio
import trio.testing
from _web_helpers import XSS_ERROR, XSS_NAME
from _web_helpers import quiet_failures as quiet_failures
from starlette.applications import Starlette
from starlette.routing import Mount

import trio_workq
from trio_workq import TaskStatus, WorkQueue, open_work_queue
from trio_workq.prometheus import Instrumentation
from trio_workq.web import LOCAL_HOST_NAMES, create_app
from trio_workq.web._app import build_app
from trio_workq.web._source import QueueSource, TaskListPage, TaskSummary

TOKEN = "s3cret-Token_1"


@asynccontextmanager
async def open_client(
    *, workers: int = 2, token: str | None = None
) -> AsyncGenerator[tuple[WorkQueue, httpx.AsyncClient], None]:
    """A queue and an httpx client talking to its app in-process."""
    async with trio.open_nursery() as nursery:
        async with open_work_queue(nursery, workers=workers, shutdown_timeout=0) as queue:
            app = create_app(queue, token=token)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://testserver"
            ) as client:
                yield queue, client


async def succeed(value: int = 1) -> int:
    await trio.lowlevel.checkpoint()
    return value


async def fail(message: str) -> None:
    await trio.lowlevel.checkpoint()
    raise ValueError(message)


async def block() -> None:
    await trio.sleep_forever()


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is a JSON error with this status and code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["error"] == code
    assert isinstance(body["message"], str)
    assert body["message"]
    return body


class TestStats:
    async def test_counts_and_workers(self) -> None:
        """/api/stats counts tasks per status and reports worker usage."""
        async with open_client(workers=2) as (queue, client):
            done = await queue.submit(succeed)
            failed = await queue.submit(fail, "boom")
            await done.wait()
            await failed.wait()
            await queue.submit(block)
            await queue.submit(block)
            await queue.submit(block)  # both workers are busy: this one waits
            await queue.schedule(succeed, delay=60)
            await trio.testing.wait_all_tasks_blocked()

            response = await client.get("/api/stats")
            assert response.status_code == 200
            assert response.json() == {
                "counts": {
                    "queued": 1,
                    "scheduled": 1,
                    "running": 2,
                    "retrying": 0,
                    "completed": 1,
                    "failed": 1,
                    "cancelled": 0,
                },
                "workers": 2,
                "busy_workers": 2,
                "utilization": 1.0,
                "workers_scope": "queue",
                "retained": 2,
                "closed": False,
            }

    async def test_healthz(self) -> None:
        """/healthz says ok while the queue is open, 503 once it shuts down."""
        async with open_client() as (queue, client):
            response = await client.get("/healthz")
            assert response.status_code == 200
            assert response.json() == {"status": "ok"}
            blocked = await queue.submit(block)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(queue.shutdown)
                await trio.testing.wait_all_tasks_blocked()
                response = await client.get("/healthz")
                assert response.status_code == 503
                assert response.json() == {"status": "closing"}
                stats = (await client.get("/api/stats")).json()
                assert stats["closed"] is True
                queue.cancel_nowait(blocked.id)


class TestListing:
    async def test_newest_first_with_pagination(self) -> None:
        """Pages come newest first; following next_cursor visits every task once."""
        async with open_client() as (queue, client):
            handles = [await queue.submit(succeed, i, name=f"job-{i}") for i in range(5)]
            for handle in handles:
                await handle.wait()

            seen: list[str] = []
            cursor = None
            pages = 0
            while True:
                params = {"limit": "2"} if cursor is None else {"limit": "2", "cursor": cursor}
                response = await client.get("/api/tasks", params=params)
                assert response.status_code == 200
                body = response.json()
                assert len(body["tasks"]) <= 2
                seen += [task["id"] for task in body["tasks"]]
                pages += 1
                cursor = body["next_cursor"]
                if cursor is None:
                    break
            assert seen == [h.id for h in reversed(handles)]
            assert pages == 3

    async def test_row_fields(self) -> None:
        """A row carries the task's fields, with times as ISO 8601 and the error summary."""
        async with open_client() as (queue, client):
            handle = await queue.submit(fail, "it broke", name="broken", priority=3, timeout=5)
            await handle.wait()
            body = (await client.get("/api/tasks")).json()
            assert body["next_cursor"] is None
            [row] = body["tasks"]
            info = handle.info_nowait()
            assert row == {
                "id": handle.id,
                "name": "broken",
                "status": "failed",
                "priority": 3,
                "attempts": 1,
                "max_attempts": 1,
                "timeout": 5.0,
                "created_at": info.created_at.isoformat(),
                "due_at": None,
                "started_at": info.started_at.isoformat() if info.started_at else None,
                "finished_at": info.finished_at.isoformat() if info.finished_at else None,
                "error": "ValueError: it broke",
            }
            assert datetime.fromisoformat(row["created_at"]).tzinfo is not None

    async def test_long_error_summary_is_cut(self) -> None:
        """Listings cut long error messages; the detail view keeps them whole."""
        async with open_client() as (queue, client):
            handle = await queue.submit(fail, "x" * 2000)
            await handle.wait()
            [row] = (await client.get("/api/tasks")).json()["tasks"]
            assert len(row["error"]) == 500
            assert row["error"].endswith("…")
            detail = (await client.get(f"/api/tasks/{handle.id}")).json()
            assert detail["errors"][0]["summary"] == "ValueError: " + "x" * 2000

    async def test_filters(self) -> None:
        """status= and name= filter the listing, alone and together."""
        async with open_client() as (queue, client):
            a = await queue.submit(succeed, name="alpha")
            b = await queue.submit(fail, "no", name="alpha")
            c = await queue.submit(succeed, name="beta")
            for handle in (a, b, c):
                await handle.wait()

            async def ids(**params: str) -> list[str]:
                response = await client.get("/api/tasks", params=params)
                assert response.status_code == 200
                return [task["id"] for task in response.json()["tasks"]]

            assert await ids(status="completed") == [c.id, a.id]
            assert await ids(status="failed") == [b.id]
            assert await ids(name="alpha") == [b.id, a.id]
            assert await ids(name="alpha", status="completed") == [a.id]
            assert await ids(name="nobody") == []
            # Empty values (as an HTML form sends them) mean "no filter".
            assert await ids(status="", name="", cursor="") == [c.id, b.id, a.id]

    @pytest.mark.parametrize(
        ("params", "fragment"),
        [
            ({"status": "bogus"}, "unknown status 'bogus'"),
            ({"status": "QUEUED"}, "unknown status 'QUEUED'"),
            ({"limit": "0"}, "limit must be between 1 and 1000, got 0"),
            ({"limit": "1001"}, "limit must be between 1 and 1000, got 1001"),
            ({"limit": "-1"}, "limit must be between 1 and 1000, got -1"),
            ({"limit": "1.5"}, "limit must be a whole number from 1 to 1000"),
            ({"limit": "ten"}, "limit must be a whole number from 1 to 1000"),
            ({"limit": " 5"}, "limit must be a whole number from 1 to 1000"),
            ({"limit": "9" * 5000}, "limit must be a whole number"),  # too long for int()
            ({"limit": "٣"}, "limit must be a whole number"),  # a digit, but not an ASCII one
            ({"cursor": "garbage"}, "cursor"),
            ({"cursor": "failed:3", "status": "completed"}, "cursor"),
        ],
    )
    async def test_bad_parameters(self, params: dict[str, str], fragment: str) -> None:
        """Bad query parameters get a 400 JSON error that says what is wrong."""
        async with open_client() as (queue, client):
            await (await queue.submit(succeed)).wait()
            body = assert_error(await client.get("/api/tasks", params=params), 400, "bad_request")
            assert fragment in body["message"]

    async def test_empty_limit_means_the_default(self) -> None:
        """limit= (empty, as a form sends it) gives the default page of 50, like no limit."""
        async with open_client() as (queue, client):
            for _ in range(60):
                await queue.submit(block)
            for params in ({"limit": ""}, {}):
                body = (await client.get("/api/tasks", params=params)).json()
                assert len(body["tasks"]) == 50
                assert body["next_cursor"] is not None

    async def test_other_value_errors_are_not_bad_requests(self) -> None:
        """Only bad parameters are a 400: a ValueError from a bug in the source is a 500."""
        async with open_work_queue() as queue:
            app = build_app(_BrokenSource(queue), token=None)
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.get("/api/tasks")
        body = assert_error(response, 500, "internal_error")
        assert "bug" not in body["message"]

    async def test_largest_page(self) -> None:
        """limit=1000 is accepted."""
        async with open_client() as (_, client):
            response = await client.get("/api/tasks", params={"limit": "1000"})
            assert response.status_code == 200
            assert response.json() == {"tasks": [], "next_cursor": None}


class TestDetail:
    async def test_error_traceback_and_history(self) -> None:
        """The detail view has every attempt's error, the latest traceback, and the arguments."""
        policy = trio_workq.RetryPolicy(max_attempts=2, backoff=trio_workq.fixed(0))
        async with open_client() as (queue, client):
            handle = await queue.submit(fail, "again", name="flaky", retry=policy)
            await handle.wait()
            response = await client.get(f"/api/tasks/{handle.id}")
            assert response.status_code == 200
            body = response.json()
            assert body["status"] == "failed"
            assert body["attempts"] == 2
            assert body["max_attempts"] == 2
            assert body["error"] == "ValueError: again"
            assert [e["summary"] for e in body["errors"]] == ["ValueError: again"] * 2
            assert body["traceback"] == body["errors"][-1]["traceback"]
            assert body["traceback"].startswith("Traceback (most recent call last):")
            assert "in fail" in body["traceback"]
            assert body["traceback"].endswith("ValueError: again")
            assert body["args"] == "('again',)"

    async def test_no_error(self) -> None:
        """A task that never failed has no error, traceback or history."""
        async with open_client() as (queue, client):
            handle = await queue.submit(succeed, 7)
            await handle.wait()
            body = (await client.get(f"/api/tasks/{handle.id}")).json()
            assert body["status"] == "completed"
            assert (body["error"], body["traceback"], body["errors"]) == (None, None, [])
            assert body["args"] == "(7,)"

    async def test_arguments_are_shortened_and_safe(self) -> None:
        """Long arguments are abbreviated; a repr() that raises does not break the view."""

        class BadRepr:
            def __repr__(self) -> str:
                raise RuntimeError("no repr")

        async def take(value: object) -> None:
            await trio.lowlevel.checkpoint()

        async with open_client() as (queue, client):
            long = await queue.submit(take, "y" * 10_000)
            odd = await queue.submit(take, BadRepr())
            await long.wait()
            await odd.wait()
            long_args = (await client.get(f"/api/tasks/{long.id}")).json()["args"]
            assert len(long_args) < 300
            assert "..." in long_args
            odd_args = (await client.get(f"/api/tasks/{odd.id}")).json()["args"]
            assert odd_args.startswith("(<BadRepr instance at 0x")

    async def test_unknown_id(self) -> None:
        """An unknown id is a 404 JSON error."""
        async with open_client() as (_, client):
            body = assert_error(await client.get("/api/tasks/12345"), 404, "not_found")
            assert "12345" in body["message"]


class TestActions:
    async def test_cancel_queued(self) -> None:
        """Cancelling a queued task ends it at once."""
        async with open_client(workers=1) as (queue, client):
            await queue.submit(block)
            waiting = await queue.submit(succeed)
            response = await client.post(f"/api/tasks/{waiting.id}/cancel")
            assert response.status_code == 200
            assert response.json()["status"] == "cancelled"
            assert waiting.status is TaskStatus.CANCELLED

    async def test_cancel_running(self) -> None:
        """Cancelling a running task cancels its scope; it ends cancelled as it unwinds."""
        async with open_client() as (queue, client):
            running = await queue.submit(block)
            await trio.testing.wait_all_tasks_blocked()
            response = await client.post(f"/api/tasks/{running.id}/cancel")
            assert response.status_code == 200
            # The answer is the task once cancelling was asked: it may have unwound already.
            assert response.json()["status"] in {"running", "cancelled"}
            await running.wait()
            body = (await client.get(f"/api/tasks/{running.id}")).json()
            assert body["status"] == "cancelled"

    async def test_cancel_running_reads_running_while_it_unwinds(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A task whose cleanup takes a while still reads running in the cancel's answer."""

        async def slow_to_unwind() -> None:
            try:
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    await trio.sleep(5)

        async with open_client() as (queue, client):
            running = await queue.submit(slow_to_unwind)
            await trio.testing.wait_all_tasks_blocked()
            response = await client.post(f"/api/tasks/{running.id}/cancel")
            assert response.status_code == 200
            assert response.json()["status"] == "running"
            await running.wait()
            assert running.status is TaskStatus.CANCELLED

    async def test_cancel_finished_is_a_conflict(self) -> None:
        """Cancelling a finished task is a 409 and changes nothing."""
        async with open_client() as (queue, client):
            handle = await queue.submit(succeed)
            await handle.wait()
            body = assert_error(
                await client.post(f"/api/tasks/{handle.id}/cancel"), 409, "conflict"
            )
            assert "already finished" in body["message"]
            assert handle.status is TaskStatus.COMPLETED

    async def test_retry_failed(self) -> None:
        """Retrying a failed task runs it again under the same id, as a new attempt."""
        outcomes = ["fail", "succeed"]

        async def flaky() -> str:
            await trio.lowlevel.checkpoint()
            if outcomes.pop(0) == "fail":
                raise OSError("flaky")
            return "ok"

        async with open_client() as (queue, client):
            handle = await queue.submit(flaky)
            await handle.wait()
            assert handle.status is TaskStatus.FAILED
            response = await client.post(f"/api/tasks/{handle.id}/retry")
            assert response.status_code == 200
            assert response.json()["id"] == handle.id
            # The task as read after the retry: it may have started already.
            assert response.json()["status"] in {"retrying", "queued", "running", "completed"}
            assert await handle.result() == "ok"
            body = (await client.get(f"/api/tasks/{handle.id}")).json()
            assert (body["status"], body["attempts"]) == ("completed", 2)

    async def test_retry_cancelled(self) -> None:
        """A cancelled task can be retried too."""
        async with open_client(workers=1) as (queue, client):
            await queue.submit(block)
            waiting = await queue.submit(succeed, 5)
            waiting.cancel_nowait()
            response = await client.post(f"/api/tasks/{waiting.id}/retry")
            assert response.status_code == 200
            assert waiting.status is not TaskStatus.CANCELLED

    @pytest.mark.parametrize("state", ["completed", "running"])
    async def test_retry_wrong_state_is_a_conflict(self, state: str) -> None:
        """Only failed or cancelled tasks can be retried: anything else is a 409."""
        async with open_client() as (queue, client):
            handle = await queue.submit(succeed if state == "completed" else block)
            if state == "completed":
                await handle.wait()
            else:
                await trio.testing.wait_all_tasks_blocked()
            assert handle.status.value == state
            assert_error(await client.post(f"/api/tasks/{handle.id}/retry"), 409, "conflict")
            assert handle.status.value == state

    async def test_retry_on_closed_queue_is_a_conflict(self) -> None:
        """A queue that is shutting down accepts no retry: 409."""
        async with open_client() as (queue, client):
            failed = await queue.submit(fail, "no")
            await failed.wait()
            blocker = await queue.submit(block)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(queue.shutdown)
                await trio.testing.wait_all_tasks_blocked()
                body = assert_error(
                    await client.post(f"/api/tasks/{failed.id}/retry"), 409, "conflict"
                )
                assert "shutting down" in body["message"]
                blocker.cancel_nowait()
            assert failed.status is TaskStatus.FAILED

    @pytest.mark.parametrize("action", ["cancel", "retry"])
    async def test_unknown_id(self, action: str) -> None:
        """Acting on an unknown id is a 404."""
        async with open_client() as (_, client):
            assert_error(await client.post(f"/api/tasks/404/{action}"), 404, "not_found")

    @pytest.mark.parametrize("action", ["cancel", "retry"])
    async def test_post_only(self, action: str) -> None:
        """Mutations answer POST only: GET is a 405 that names the allowed method."""
        async with open_client() as (queue, client):
            handle = await queue.submit(block)
            await trio.testing.wait_all_tasks_blocked()
            response = await client.get(f"/api/tasks/{handle.id}/{action}")
            assert_error(response, 405, "method_not_allowed")
            assert response.headers["allow"] == "POST"
            assert handle.status is TaskStatus.RUNNING

    async def test_reads_refuse_post(self) -> None:
        """Read endpoints do not accept POST."""
        async with open_client() as (_, client):
            for path in ("/api/stats", "/api/tasks", "/api/throughput", "/healthz", "/metrics"):
                assert_error(await client.post(path), 405, "method_not_allowed")

    @pytest.mark.parametrize(
        "headers",
        [
            {"sec-fetch-site": "cross-site"},
            {"sec-fetch-site": "same-site"},
            {"origin": "http://evil.example"},
            {"origin": "null"},
        ],
    )
    async def test_cross_site_post_is_refused(self, headers: dict[str, str]) -> None:
        """A browser POST from another site (CSRF) is refused with 403 and does nothing."""
        async with open_client() as (queue, client):
            handle = await queue.submit(block)
            await trio.testing.wait_all_tasks_blocked()
            response = await client.post(f"/api/tasks/{handle.id}/cancel", headers=headers)
            assert_error(response, 403, "forbidden")
            assert handle.status is TaskStatus.RUNNING

    @pytest.mark.parametrize(
        "headers",
        [
            {"sec-fetch-site": "same-origin", "origin": "http://testserver"},
            # Behind a TLS proxy the origin is https and its name, whatever Host says:
            # Sec-Fetch-Site decides alone.
            {"sec-fetch-site": "same-origin", "origin": "https://queue.example.org"},
            {"sec-fetch-site": "none"},  # typed into the address bar, say
            {"origin": "http://TestServer"},  # an older browser: Origin against Host
            {},  # not a browser
        ],
    )
    async def test_same_origin_post_is_accepted(self, headers: dict[str, str]) -> None:
        """The dashboard's own POSTs (same origin) go through."""
        async with open_client() as (queue, client):
            handle = await queue.submit(block)
            await trio.testing.wait_all_tasks_blocked()
            response = await client.post(f"/api/tasks/{handle.id}/cancel", headers=headers)
            assert response.status_code == 200, response.text

    async def test_sec_fetch_site_outranks_a_matching_origin(self) -> None:
        """A browser that says cross-site is refused even if Origin matches Host."""
        async with open_client() as (queue, client):
            handle = await queue.submit(block)
            await trio.testing.wait_all_tasks_blocked()
            headers = {"sec-fetch-site": "cross-site", "origin": "http://testserver"}
            response = await client.post(f"/api/tasks/{handle.id}/cancel", headers=headers)
            assert_error(response, 403, "forbidden")
            assert handle.status is TaskStatus.RUNNING


PROTECTED = [
    ("GET", "/api/stats"),
    ("GET", "/api/throughput"),
    ("GET", "/api/tasks"),
    ("GET", "/api/tasks/1"),
    ("POST", "/api/tasks/1/cancel"),
    ("POST", "/api/tasks/1/retry"),
    ("GET", "/metrics"),
    ("GET", "/healthz"),
]


class TestToken:
    @pytest.mark.parametrize(("method", "path"), PROTECTED)
    @pytest.mark.parametrize(
        "authorization",
        [None, "", "Bearer", "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", TOKEN],
    )
    async def test_every_endpoint_needs_the_token(
        self, method: str, path: str, authorization: str | None
    ) -> None:
        """With a token set, each endpoint answers 401 without the right bearer token."""
        async with open_client(token=TOKEN) as (queue, client):
            handle = await queue.submit(block)
            await trio.testing.wait_all_tasks_blocked()
            headers = {} if authorization is None else {"authorization": authorization}
            response = await client.request(method, path, headers=headers)
            assert_error(response, 401, "unauthorized")
            assert response.headers["www-authenticate"] == "Bearer"
            assert handle.status is TaskStatus.RUNNING

    @pytest.mark.parametrize(("method", "path"), PROTECTED)
    async def test_the_right_token_opens_every_endpoint(self, method: str, path: str) -> None:
        """With the right token (any case of "Bearer") each endpoint answers normally."""
        async with open_client(token=TOKEN) as (queue, client):
            await queue.submit(block)
            await trio.testing.wait_all_tasks_blocked()
            response = await client.request(
                method, path, headers={"authorization": f"bearer {TOKEN}"}
            )
            assert response.status_code != 401
            assert response.status_code < 500

    @pytest.mark.parametrize("path", ["/", "/static/dashboard.js", "/static/dashboard.css"])
    async def test_page_and_assets_are_public(self, path: str) -> None:
        """The page and its assets hold no data and load without a token (the page asks)."""
        async with open_client(token=TOKEN) as (_, client):
            assert (await client.get(path)).status_code == 200

    async def test_no_token_means_open(self) -> None:
        """Without a token the API needs no Authorization header."""
        async with open_client() as (_, client):
            assert (await client.get("/api/stats")).status_code == 200

    @pytest.mark.parametrize(
        ("token", "error"),
        [
            ("", ValueError),
            ("has space", ValueError),
            ("tab\there", ValueError),
            ("naïve", ValueError),
            (b"bytes", TypeError),
            (123, TypeError),
        ],
    )
    async def test_bad_token(self, token: object, error: type[Exception]) -> None:
        """A bad token is refused before the app touches the queue."""
        async with open_work_queue() as queue:
            listeners = queue._hooks
            with pytest.raises(error, match="token must be"):
                create_app(queue, token=token)  # type: ignore[arg-type]
            assert queue._hooks == listeners

    @pytest.mark.parametrize(
        ("allowed_hosts", "error", "match"),
        [
            ("localhost", TypeError, "allowed_hosts must be a collection of host names"),
            (5, TypeError, "allowed_hosts must be a collection of host names or None, not int"),
            ([b"localhost"], TypeError, "allowed_hosts must hold str, not bytes"),
            ([], ValueError, "allowed_hosts must name at least one host"),
            (["a b"], ValueError, "allowed_hosts holds 'a b', which is not a host name"),
            ([""], ValueError, "allowed_hosts holds '', which is not a host name"),
        ],
    )
    async def test_bad_allowed_hosts(
        self, allowed_hosts: object, error: type[Exception], match: str
    ) -> None:
        """Bad allowed_hosts are refused before the app touches the queue."""
        async with open_work_queue() as queue:
            hooks = queue._hooks
            with pytest.raises(error, match=match):
                create_app(queue, allowed_hosts=allowed_hosts)  # type: ignore[arg-type]
            assert queue._hooks == hooks

    async def test_not_a_queue(self) -> None:
        """create_app needs a TaskQueue."""
        with pytest.raises(TypeError, match=r"queue must be a trio_workq\.TaskQueue .*, not str"):
            create_app("queue")  # type: ignore[arg-type]


class TestEscaping:
    async def test_markup_comes_back_as_plain_json_strings(self) -> None:
        """Names and errors holding markup are returned verbatim, as JSON, never as HTML."""
        async with open_client() as (queue, client):
            handle = await queue.submit(fail, XSS_ERROR, name=XSS_NAME)
            await handle.wait()
            listing = await client.get("/api/tasks")
            detail = await client.get(f"/api/tasks/{handle.id}")
            for response in (listing, detail):
                assert response.headers["content-type"] == "application/json"
                assert response.headers["x-content-type-options"] == "nosniff"
            [row] = listing.json()["tasks"]
            assert row["name"] == XSS_NAME
            assert row["error"] == f"ValueError: {XSS_ERROR}"
            body = detail.json()
            assert body["traceback"].endswith(f"ValueError: {XSS_ERROR}")
            assert body["args"] == repr((XSS_ERROR,))

    async def test_script_never_builds_html_from_strings(self) -> None:
        """The dashboard script uses no HTML-parsing sinks, so data cannot become markup."""
        async with open_client() as (_, client):
            script = (await client.get("/static/dashboard.js")).text
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in script
        assert "textContent" in script

    async def test_page_has_no_inline_script_or_handlers(self) -> None:
        """The page loads its script from a file and has no inline code (the CSP forbids it)."""

        class Audit(html.parser.HTMLParser):
            def __init__(self) -> None:
                super().__init__()
                self.scripts: list[dict[str, str | None]] = []
                self.handlers: list[str] = []
                self.inline_script = False
                self._in_script = False

            def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
                self.handlers += [name for name, _ in attrs if name.startswith("on")]
                if tag == "script":
                    self.scripts.append(dict(attrs))
                    self._in_script = True

            def handle_endtag(self, tag: str) -> None:
                if tag == "script":
                    self._in_script = False

            def handle_data(self, data: str) -> None:
                if self._in_script and data.strip():
                    self.inline_script = True

        async with open_client() as (_, client):
            response = await client.get("/")
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        audit = Audit()
        audit.feed(response.text)
        assert audit.scripts == [{"src": "static/dashboard.js", "defer": None}]
        assert not audit.inline_script
        assert audit.handlers == []


class TestAllowedHosts:
    @pytest.mark.parametrize(
        ("host", "status"),
        [
            ("queue.example.org", 200),
            ("Queue.Example.ORG:8443", 200),  # names are case-insensitive; the port is ignored
            ("localhost", 400),  # only the names given
            ("queue.example.org.evil.example", 400),
            ("", 400),
        ],
    )
    async def test_only_the_given_names(self, host: str, status: int) -> None:
        """With allowed_hosts, the app answers only to those Host names (a 400 otherwise)."""
        async with open_work_queue() as queue:
            app = create_app(queue, allowed_hosts=["QUEUE.example.org"])
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.get("/api/stats", headers={"host": host})
        assert response.status_code == status
        assert response.headers["cache-control"] == "no-store"  # refusals carry them too
        if status == 400:
            assert_error(response, 400, "bad_request")

    async def test_mounted_local_app(self) -> None:
        """A token-less app mounted on a local server, with LOCAL_HOST_NAMES: no DNS rebinding."""
        async with open_work_queue() as queue:
            app = create_app(queue, allowed_hosts=LOCAL_HOST_NAMES)
            outer = Starlette(routes=[Mount("/ops", app=app)])
            transport = httpx.ASGITransport(app=outer)
            for base, status in [
                ("http://localhost:8000", 200),
                ("http://[::1]:8000", 200),
                ("http://rebound.example:8000", 400),
            ]:
                async with httpx.AsyncClient(transport=transport, base_url=base) as client:
                    assert (await client.get("/ops/api/stats")).status_code == status, base

    async def test_any_name_by_default(self) -> None:
        """Without allowed_hosts, create_app does not look at the Host header."""
        async with open_client() as (_, client):
            response = await client.get("/api/stats", headers={"host": "anything.example"})
            assert response.status_code == 200


class TestHeaders:
    @pytest.mark.parametrize(
        "path", ["/", "/static/dashboard.js", "/api/stats", "/api/tasks/999", "/nowhere"]
    )
    async def test_security_headers(self, path: str) -> None:
        """Every response carries the security headers and is never cached."""
        async with open_client() as (_, client):
            response = await client.get(path)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store"

    async def test_security_headers_on_401(self) -> None:
        """Refusals carry the headers too."""
        async with open_client(token=TOKEN) as (_, client):
            response = await client.get("/api/stats")
        assert response.status_code == 401
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"

    @pytest.mark.parametrize(
        ("path", "content_type"),
        [
            ("/static/dashboard.js", "text/javascript; charset=utf-8"),
            ("/static/dashboard.css", "text/css; charset=utf-8"),
        ],
    )
    async def test_assets(self, path: str, content_type: str) -> None:
        """The script and stylesheet are served from the package with their types."""
        async with open_client() as (_, client):
            response = await client.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"] == content_type
        assert len(response.content) > 1000

    @pytest.mark.parametrize("path", ["/static/index.html", "/static/nothing.js", "/nowhere"])
    async def test_unknown_paths(self, path: str) -> None:
        """Unknown paths are JSON 404s (only the listed assets are served)."""
        async with open_client() as (_, client):
            assert_error(await client.get(path), 404, "not_found")


class TestThroughput:
    async def test_counts_per_second(self, autojump_clock: trio.testing.MockClock) -> None:
        """/api/throughput counts completions and failures per second of the last 5 minutes."""

        async def finish_at(when: float, ok: bool) -> None:
            await trio.sleep_until(when)
            if not ok:
                raise ValueError("late failure")

        async with open_client(workers=10) as (queue, client):
            start = trio.current_time()
            for delay, ok in [(10.5, True), (10.7, True), (20.5, False), (250.2, True)]:
                await queue.submit(finish_at, start + delay, ok)
            await trio.sleep_until(start + 251)
            body = (await client.get("/api/throughput")).json()
            assert body["interval"] == 1.0
            assert len(body["completed"]) == len(body["failed"]) == 300

            def at(series: list[int], seconds_after_start: float) -> int:
                # The newest bucket is the current second, 251 s after the start.
                return series[-1 - (251 - int(seconds_after_start))]

            assert at(body["completed"], 10) == 2
            assert at(body["failed"], 20) == 1
            assert at(body["completed"], 250) == 1
            assert sum(body["completed"]) == 3
            assert sum(body["failed"]) == 1
            end = datetime.fromisoformat(body["end"])
            assert end == queue.wall_time(start + 252)

            # Older than the window: the 10 s and 20 s buckets have rolled off.
            await trio.sleep_until(start + 320)
            body = (await client.get("/api/throughput")).json()
            assert sum(body["completed"]) == 1
            assert sum(body["failed"]) == 0
            await trio.sleep(1000)
            body = (await client.get("/api/throughput")).json()
            assert sum(body["completed"]) == sum(body["failed"]) == 0

    async def test_one_counter_per_queue(self) -> None:
        """Apps on the same queue share one listener, however many are created."""
        async with open_work_queue() as queue:
            before = len(queue._hooks)
            for _ in range(3):
                create_app(queue)
            assert len(queue._hooks) == before + 1

    async def test_the_counter_does_not_keep_the_queue_alive(self) -> None:
        """The shared counter holds no reference to its queue, so both can be collected."""
        async with open_work_queue() as queue:
            create_app(queue)
            ref = weakref.ref(queue)
        del queue
        gc.collect()
        assert ref() is None


class TestMetrics:
    async def test_prometheus_exposition(self) -> None:
        """/metrics serves the Prometheus text format, counting from the first scrape on."""
        async with open_client() as (queue, client):
            first = await client.get("/metrics")
            assert first.status_code == 200
            assert first.headers["content-type"] == prometheus_client.CONTENT_TYPE_PLAIN_0_0_4
            await (await queue.submit(succeed, name="counted")).wait()
            text = (await client.get("/metrics")).text
            assert 'trio_workq_tasks_completed_total{queue="default",task="counted"} 1.0' in text
            assert 'trio_workq_workers{queue="default"} 2.0' in text

    async def test_without_prometheus_client(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without prometheus-client, /metrics is a 404 that names the extra to install."""
        monkeypatch.setitem(sys.modules, "prometheus_client", None)
        async with open_client() as (_, client):
            body = assert_error(await client.get("/metrics"), 404, "not_found")
        assert "trio_workq[prometheus]" in body["message"]

    async def test_closing_the_source_stops_counting(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """QueueSource.close() removes the Prometheus hook it added, once however often called."""
        detached: list[Instrumentation] = []
        uninstrument = Instrumentation.uninstrument

        def counted(self: Instrumentation) -> None:
            detached.append(self)
            uninstrument(self)

        monkeypatch.setattr(Instrumentation, "uninstrument", counted)
        async with open_work_queue() as queue:
            before = len(queue._hooks)
            source = QueueSource(queue)
            assert await source.metrics() is not None
            assert len(queue._hooks) == before + 2  # throughput + prometheus
            source.close()
            source.close()
            assert len(queue._hooks) == before + 1
            assert len(detached) == 1
            assert await source.metrics() is None

    async def test_after_close_metrics_do_not_blame_prometheus(self) -> None:
        """Once the source is closed, /metrics is a 404 that does not say prometheus is missing."""
        async with open_work_queue() as queue:
            source = QueueSource(queue)
            app = build_app(source, token=None)
            source.close()
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                body = assert_error(await client.get("/metrics"), 404, "not_found")
        assert body["message"] == "this dashboard serves no Prometheus metrics"


class AuditedQueue:
    """A TaskQueue of the user's own: a WorkQueue behind a proxy that notes every call."""

    def __init__(self, queue: WorkQueue) -> None:
        self.inner = queue
        self.calls: list[str] = []

    async def submit(self, fn: Any, *args: Any, **options: Any) -> Any:
        self.calls.append("submit")
        return await self.inner.submit(fn, *args, **options)

    async def submit_many(self, fn: Any, calls: Any, **options: Any) -> Any:
        return await self.inner.submit_many(fn, calls, **options)

    async def schedule(self, fn: Any, *args: Any, **options: Any) -> Any:
        return await self.inner.schedule(fn, *args, **options)

    async def get_handle(self, task_id: str) -> Any:
        self.calls.append("get_handle")
        return await self.inner.get_handle(task_id)

    async def get_info(self, task_id: str) -> trio_workq.TaskInfo:
        self.calls.append("get_info")
        return await self.inner.get_info(task_id)

    async def cancel(self, task_id: str) -> bool:
        return await self.inner.cancel(task_id)

    async def retry(self, task_id: str) -> Any:
        self.calls.append("retry")
        return await self.inner.retry(task_id)

    async def list_tasks(self, **query: Any) -> trio_workq.TaskPage:
        self.calls.append("list_tasks")
        return await self.inner.list_tasks(**query)

    async def statistics(self) -> trio_workq.QueueStatistics:
        self.calls.append("statistics")
        return await self.inner.statistics()

    async def shutdown(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self.inner.shutdown(timeout)

    def add_listener(self, listener: Any) -> None:
        self.inner.add_listener(listener)

    def remove_listener(self, listener: Any) -> None:
        self.inner.remove_listener(listener)

    def subscribe(self, max_buffer_size: int = 1000) -> Any:
        return self.inner.subscribe(max_buffer_size)

    def wall_time(self, trio_time: float) -> datetime:
        return self.inner.wall_time(trio_time)


class TestAnyTaskQueue:
    async def test_a_task_queue_of_ones_own(self) -> None:
        """Any TaskQueue is served through the protocol: no arguments, no /metrics, all else."""
        async with open_work_queue(workers=1, shutdown_timeout=0) as inner:
            queue = AuditedQueue(inner)
            assert isinstance(queue, trio_workq.TaskQueue)
            app = create_app(queue)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                failed = await queue.submit(fail, "no", name="broken")
                await failed.wait()
                waiting = await queue.submit(succeed, name="later")  # the worker is free
                await waiting.wait()
                stats = (await client.get("/api/stats")).json()
                assert stats["counts"]["failed"] == stats["counts"]["completed"] == 1
                assert (stats["workers"], stats["workers_scope"]) == (1, "queue")
                listing = (await client.get("/api/tasks")).json()
                assert [task["name"] for task in listing["tasks"]] == ["later", "broken"]
                detail = (await client.get(f"/api/tasks/{failed.id}")).json()
                assert detail["args"] is None  # only the queue itself knows them
                assert detail["error"] == "ValueError: no"
                response = await client.post(f"/api/tasks/{failed.id}/retry")
                assert response.status_code == 200
                await failed.wait()
                chart = (await client.get("/api/throughput")).json()
                assert len(chart["completed"]) == 300
                assert_error(await client.get("/metrics"), 404, "not_found")
            assert {"statistics", "list_tasks", "get_info", "retry"} <= set(queue.calls)


class _BrokenSource(QueueSource):
    async def stats(self) -> Any:
        raise RuntimeError("source bug")

    async def page(
        self, *, status: str | None, name: str | None, limit: int, cursor: str | None
    ) -> TaskListPage:
        raise ValueError("a bug, not bad input")

    async def cancel(self, task_id: str) -> TaskSummary:
        raise trio_workq.QueueClosed("closed for the night")


class TestMisc:
    async def test_internal_error_is_json(self) -> None:
        """A bug behind an endpoint gives a JSON 500 without details."""
        async with open_work_queue() as queue:
            app = build_app(_BrokenSource(queue), token=None)
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.get("/api/stats")
        body = assert_error(response, 500, "internal_error")
        assert "source bug" not in body["message"]

    async def test_closed_queue_on_cancel_is_a_conflict(self) -> None:
        """QueueClosed from the source maps to 409."""
        async with open_work_queue() as queue:
            app = build_app(_BrokenSource(queue), token=None)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.post("/api/tasks/1/cancel")
        assert assert_error(response, 409, "conflict")["message"] == "closed for the night"

    async def test_mounted_in_another_app(self) -> None:
        """create_app's app can be mounted under a prefix of the user's own app."""
        async with open_work_queue() as queue:
            outer = Starlette(routes=[Mount("/ops", app=create_app(queue))])
            transport = httpx.ASGITransport(app=outer)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                page = await client.get("/ops/")
                stats = await client.get("/ops/api/stats")
                script = await client.get("/ops/static/dashboard.js")
        assert page.status_code == 200
        assert 'src="static/dashboard.js"' in page.text  # relative: works under the prefix
        assert stats.json()["workers"] == 10
        assert script.status_code == 200
