# SPDX-License-Identifier: MIT
"""The Starlette app: the JSON API, the dashboard page, and its security checks."""

from __future__ import annotations

import functools
import hmac
import importlib.resources
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import trio
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._errors import QueueClosed, TaskNotFound
from .._task import TaskStatus
from ._source import (
    MAX_PAGE_SIZE,
    TaskConflict,
    TaskDetail,
    TaskSource,
    TaskSummary,
)

#: Page size when the request gives none.
DEFAULT_PAGE_SIZE = 50

_TOKEN_RE = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces: fits in a header

# Scripts and styles only from the app itself, data only from its own API.
_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = {
    "content-security-policy": _CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-resource-policy": "same-origin",
    # Task data changes every second and may be private: never cache it.
    "cache-control": "no-store",
}

_STATIC_FILES = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}


def check_token(token: object) -> str | None:
    """Validate a bearer token: ``None`` or a non-empty string of printable ASCII."""
    if token is None:
        return None
    if not isinstance(token, str):
        raise TypeError(f"token must be a str or None, not {type(token).__name__}")
    if not _TOKEN_RE.fullmatch(token):
        raise ValueError(
            "token must be a non-empty string of printable ASCII characters without spaces"
        )
    return token


@functools.cache
def _static(name: str) -> bytes:
    return (importlib.resources.files("trio_workq.web") / "static" / name).read_bytes()


#: The "error" word of each status the API answers with.
_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    500: "internal_error",
}


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    body = {"error": _ERROR_CODES.get(status, "error"), "message": message}
    return JSONResponse(body, status_code=status, headers=headers)


def _isoformat(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def _summary_json(task: TaskSummary) -> dict[str, Any]:
    return {
        "id": task.id,
        "name": task.name,
        "status": task.status.value,
        "priority": task.priority,
        "attempts": task.attempts,
        "max_attempts": task.max_attempts,
        "timeout": task.timeout,
        "created_at": _isoformat(task.created_at),
        "due_at": _isoformat(task.due_at),
        "started_at": _isoformat(task.started_at),
        "finished_at": _isoformat(task.finished_at),
        "error": task.error,
    }


def _detail_json(detail: TaskDetail) -> dict[str, Any]:
    data = _summary_json(detail.task)
    last = detail.errors[-1] if detail.errors else None
    data["traceback"] = None if last is None else last.traceback
    data["errors"] = [{"summary": e.summary, "traceback": e.traceback} for e in detail.errors]
    data["args"] = detail.args
    return data


_Endpoint = Callable[[Request], Awaitable[Response]]


class _Api:
    """The endpoints, sharing one source and one token."""

    def __init__(self, source: TaskSource, token: str | None) -> None:
        self._source = source
        self._token = None if token is None else token.encode("ascii")

    def guarded(self, endpoint: _Endpoint) -> _Endpoint:
        """Wrap *endpoint* with the token check, and for POST the cross-site check."""

        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            self._check(request)
            return await endpoint(request)

        return guarded

    def _check(self, request: Request) -> None:
        """Raise 401 without the right token, 403 for a POST from another site."""
        if self._token is not None:
            scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
            given = credentials.strip().encode("utf-8", "replace")
            # compare_digest takes as long for a near miss as for a wild guess.
            if scheme.lower() != "bearer" or not hmac.compare_digest(given, self._token):
                raise HTTPException(
                    401,
                    "this dashboard needs a token: send 'Authorization: Bearer <token>'",
                    {"www-authenticate": "Bearer"},
                )
        if request.method == "POST" and _cross_site(request):
            raise HTTPException(403, "cross-site requests may not change tasks")

    async def stats(self, request: Request) -> Response:
        stats = await self._source.stats()
        workers, busy = stats.workers, stats.busy_workers
        utilization = busy / workers if workers and busy is not None else None
        return JSONResponse(
            {
                "counts": {status.value: stats.counts.get(status, 0) for status in TaskStatus},
                "workers": workers,
                "busy_workers": busy,
                "utilization": utilization,
                "retained": stats.retained,
                "closed": stats.closed,
            }
        )

    async def throughput(self, request: Request) -> Response:
        series = await self._source.throughput()
        return JSONResponse(
            {
                "end": series.end.isoformat(),
                "interval": series.interval,
                "completed": list(series.completed),
                "failed": list(series.failed),
            }
        )

    async def list_tasks(self, request: Request) -> Response:
        query = request.query_params
        status: TaskStatus | None = None
        if query.get("status"):
            try:
                status = TaskStatus(query["status"])
            except ValueError:
                choices = ", ".join(s.value for s in TaskStatus)
                raise HTTPException(400, f"status must be one of: {choices}") from None
        limit = DEFAULT_PAGE_SIZE
        if "limit" in query:
            text = query["limit"]
            if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_PAGE_SIZE):
                raise HTTPException(400, f"limit must be a whole number from 1 to {MAX_PAGE_SIZE}")
            limit = int(text)
        try:
            page = await self._source.page(
                status=status,
                name=query.get("name") or None,
                limit=limit,
                cursor=query.get("cursor") or None,
            )
        except ValueError as exc:  # a malformed or foreign cursor
            raise HTTPException(400, str(exc)) from exc
        return JSONResponse(
            {"tasks": [_summary_json(task) for task in page.tasks], "next_cursor": page.next_cursor}
        )

    async def get_task(self, request: Request) -> Response:
        task_id: str = request.path_params["task_id"]
        try:
            detail = await self._source.get(task_id)
        except TaskNotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        return JSONResponse(_detail_json(detail))

    async def cancel_task(self, request: Request) -> Response:
        return await self._act(request, self._source.cancel)

    async def retry_task(self, request: Request) -> Response:
        return await self._act(request, self._source.retry)

    async def _act(
        self, request: Request, action: Callable[[str], Awaitable[TaskSummary]]
    ) -> Response:
        task_id: str = request.path_params["task_id"]
        try:
            task = await action(task_id)
        except TaskNotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        except (TaskConflict, QueueClosed) as exc:
            raise HTTPException(409, str(exc)) from exc
        return JSONResponse(_summary_json(task))

    async def metrics(self, request: Request) -> Response:
        text = await self._source.metrics()
        if text is None:
            raise HTTPException(
                404,
                "Prometheus metrics need prometheus-client: pip install 'trio_workq[prometheus]'",
            )
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def healthz(self, request: Request) -> Response:
        stats = await self._source.stats()
        if stats.closed:
            return JSONResponse({"status": "closing"}, status_code=503)
        return JSONResponse({"status": "ok"})


def _cross_site(request: Request) -> bool:
    """Whether a browser says this request comes from another site (a CSRF attempt).

    Clients that are not browsers send neither header and pass.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("origin")
    return origin is not None and urlsplit(origin).netloc != request.headers.get("host")


# The page, its assets and the error handlers checkpoint only to keep the project's
# rule that every async function does; nothing here waits.


async def _page(request: Request) -> Response:
    await trio.lowlevel.checkpoint()
    return Response(_static("index.html"), media_type="text/html; charset=utf-8")


async def _asset(request: Request) -> Response:
    name: str = request.path_params["name"]
    media_type = _STATIC_FILES.get(name)
    if media_type is None:
        raise HTTPException(404, f"no such file: {name}")
    await trio.lowlevel.checkpoint()
    return Response(_static(name), media_type=media_type)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    await trio.lowlevel.checkpoint()
    return _error(exc.status_code, exc.detail, exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    # Starlette re-raises the exception to the server (which logs it) after this.
    await trio.lowlevel.checkpoint()
    return _error(500, "the dashboard hit an internal error; see the server log")


class _SecurityHeaders:
    """ASGI middleware: security headers on every response; optionally a Host check.

    The Host check stops DNS rebinding: a web page whose domain is made to
    resolve to 127.0.0.1 would otherwise reach a token-less local dashboard
    as a same-origin page.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Collection[str] | None) -> None:
        self._app = app
        self._allowed_hosts = None if allowed_hosts is None else frozenset(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        if self._allowed_hosts is not None:
            host = _host_name(dict(scope["headers"]).get(b"host", b"").decode("latin-1"))
            if host not in self._allowed_hosts:
                response = _error(400, "this dashboard only answers to local host names")
                await response(scope, receive, self._with_headers(send))
                return
        await self._app(scope, receive, self._with_headers(send))

    @staticmethod
    def _with_headers(send: Send) -> Send:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        return send_with_headers


def _host_name(host: str) -> str:
    """The name part of a Host header (``[::1]:8000`` → ``::1``)."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if ":" in host else host


def build_app(
    source: TaskSource, *, token: str | None, allowed_hosts: Collection[str] | None = None
) -> Starlette:
    """The dashboard app over *source*; *allowed_hosts* restricts the Host header."""
    api = _Api(source, check_token(token))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            source.close()

    routes = [
        Route("/", _page),
        Route("/static/{name}", _asset),
        Route("/api/stats", api.guarded(api.stats)),
        Route("/api/throughput", api.guarded(api.throughput)),
        Route("/api/tasks", api.guarded(api.list_tasks)),
        Route("/api/tasks/{task_id}", api.guarded(api.get_task)),
        Route("/api/tasks/{task_id}/cancel", api.guarded(api.cancel_task), methods=["POST"]),
        Route("/api/tasks/{task_id}/retry", api.guarded(api.retry_task), methods=["POST"]),
        Route("/metrics", api.guarded(api.metrics)),
        Route("/healthz", api.guarded(api.healthz)),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        lifespan=lifespan,
    )
    app.add_middleware(_SecurityHeaders, allowed_hosts=allowed_hosts)
    return app
