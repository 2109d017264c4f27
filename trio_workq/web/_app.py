# SPDX-License-Identifier: MIT
"""The Starlette app: the JSON API, the dashboard page, and its security checks."""

from __future__ import annotations

import functools
import hmac
import importlib.resources
import importlib.util
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, cast
from urllib.parse import urlsplit

import trio
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._core.errors import QueueClosed, TaskNotFound
from .._core.info import MAX_PAGE_SIZE
from .._core.status import TaskStatus
from ._source import InvalidQuery, TaskConflict, TaskDetail, TaskSource, TaskSummary

#: Page size when the request gives none (or an empty ``limit=``).
DEFAULT_PAGE_SIZE = 50

#: The Host names of this machine: a loopback dashboard answers to these (and its own host).
LOCAL_HOST_NAMES: frozenset[str] = frozenset({"localhost", "127.0.0.1", "::1"})

_TOKEN_RE = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces: fits in a header
_HOST_NAME_RE = re.compile(r"[\x21-\x7e]+")  # what a Host header can hold, less the port
# At most nine digits, which int() always takes (it refuses huge digit strings);
# list_tasks checks the range.
_LIMIT_RE = re.compile(r"-?[0-9]{1,9}")

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


def check_allowed_hosts(allowed_hosts: object) -> frozenset[str] | None:
    """Validate *allowed_hosts*: ``None``, or host names; return them lower-cased, unbracketed."""
    if allowed_hosts is None:
        return None
    if isinstance(allowed_hosts, (str, bytes)) or not isinstance(allowed_hosts, Iterable):
        raise TypeError(
            "allowed_hosts must be a collection of host names or None, "
            f"not {type(allowed_hosts).__name__}"
        )
    names: set[str] = set()
    for name in cast("Iterable[object]", allowed_hosts):
        if not isinstance(name, str):
            raise TypeError(f"allowed_hosts must hold str, not {type(name).__name__}")
        bare = name.lower().removeprefix("[").removesuffix("]")  # [::1] is ::1
        if not _HOST_NAME_RE.fullmatch(bare):
            raise ValueError(f"allowed_hosts holds {name!r}, which is not a host name")
        names.add(bare)
    if not names:
        raise ValueError("allowed_hosts must name at least one host (None allows any)")
    return frozenset(names)


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
        return JSONResponse(
            {
                "counts": {status.value: stats.counts.get(status, 0) for status in TaskStatus},
                "workers": workers,
                "busy_workers": busy,
                "utilization": busy / workers if workers else None,
                "workers_scope": stats.workers_scope,
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
        # Empty values (as an HTML form sends them) mean "not given". The source
        # checks the values (list_tasks' own checks); only parsing is done here.
        query = request.query_params
        limit = DEFAULT_PAGE_SIZE
        if text := query.get("limit"):
            if not _LIMIT_RE.fullmatch(text):
                raise HTTPException(400, f"limit must be a whole number from 1 to {MAX_PAGE_SIZE}")
            limit = int(text)
        try:
            page = await self._source.page(
                status=query.get("status") or None,
                name=query.get("name") or None,
                limit=limit,
                cursor=query.get("cursor") or None,
            )
        except InvalidQuery as exc:
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
            raise HTTPException(404, _no_metrics_reason())
        # The source made the text, so prometheus-client is installed.
        from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4

        return Response(text, media_type=CONTENT_TYPE_PLAIN_0_0_4)

    async def healthz(self, request: Request) -> Response:
        stats = await self._source.stats()
        if stats.closed:
            return JSONResponse({"status": "closing"}, status_code=503)
        return JSONResponse({"status": "ok"})


def _no_metrics_reason() -> str:
    if importlib.util.find_spec("prometheus_client") is None:
        return "Prometheus metrics need prometheus-client: pip install 'trio_workq[prometheus]'"
    return "this dashboard serves no Prometheus metrics"


def _cross_site(request: Request) -> bool:
    """Whether a browser says this request comes from another site (a CSRF attempt).

    A browser's ``Sec-Fetch-Site`` decides alone when present: it does not
    depend on the Host header, which a reverse proxy may rewrite. Browsers
    too old to send it still send ``Origin``, compared with the Host header.
    Clients that are not browsers send neither header and pass.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return False
    return urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()


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
    """ASGI middleware: the security headers on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self._app(scope, receive, send_with_headers)


class _HostCheck:
    """ASGI middleware: a 400 for requests whose Host header is not an allowed name.

    It stops DNS rebinding: a web page whose domain is made to resolve to
    127.0.0.1 would otherwise reach a token-less local dashboard as a
    same-origin page.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: frozenset[str]) -> None:
        self._app = app
        self._allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = _host_name(dict(scope["headers"]).get(b"host", b"").decode("latin-1"))
            if host.lower() not in self._allowed_hosts:
                response = _error(400, "this dashboard does not answer to that host name")
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)


def _host_name(host: str) -> str:
    """The name part of a Host header (``[::1]:8000`` → ``::1``)."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if ":" in host else host


def build_app(
    source: TaskSource, *, token: str | None, allowed_hosts: Iterable[str] | None = None
) -> Starlette:
    """The dashboard app over *source*; *allowed_hosts* restricts the Host header."""
    api = _Api(source, check_token(token))
    allowed = check_allowed_hosts(allowed_hosts)

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
    if allowed is not None:
        app.add_middleware(_HostCheck, allowed_hosts=allowed)
    app.add_middleware(_SecurityHeaders)  # added last: outermost, so refusals carry them too
    return app
