# SPDX-License-Identifier: MIT
"""8. Dashboard listing with 1,000,000 retained tasks: ``list_tasks`` pages, and the REST API."""

from __future__ import annotations

import importlib.util
import logging
import math
import statistics
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

import trio
import trio.testing

import trio_workq

from ._core import CheckFailed, Column, Comparison, Metrics, NotAvailable, Variant, check

WORKERS = 10
FAIL_EVERY = 100  # 1 % of the tasks fail: the dashboard's "latest failures" view
PAGE = 50
WALK_PAGE = 1000  # the largest page list_tasks serves: walks deep in few calls
CALLS = 30  # each timed call is repeated in the process; the median is reported


async def noop() -> None:
    pass


async def failing() -> None:
    raise ValueError("failed on purpose")


def _median_us(call: Callable[[], object]) -> float:
    """Median wall time of `CALLS` calls, in µs."""
    times: list[float] = []
    for _ in range(CALLS):
        start = perf_counter()
        call()
        times.append(perf_counter() - start)
    return statistics.median(times) * 1e6


async def _median_us_awaited(call: Callable[[], Awaitable[object]]) -> float:
    """Median wall time of `CALLS` awaited calls, in µs."""
    times: list[float] = []
    for _ in range(CALLS):
        start = perf_counter()
        await call()
        times.append(perf_counter() - start)
    return statistics.median(times) * 1e6


def _cursor_at(list_tasks: Callable[..., Any], depth: int, **filters: Any) -> str:
    """The cursor *depth* tasks down a listing, walked in pages of up to `WALK_PAGE`."""
    cursor: str | None = None
    while depth > 0:
        size = min(depth, WALK_PAGE)
        page = list_tasks(limit=size, cursor=cursor, **filters)
        cursor = page.next_cursor
        if cursor is None:
            raise CheckFailed("the listing ended before the deep page")
        depth -= size
    if cursor is None:
        raise CheckFailed("asked for the cursor at depth 0")
    return cursor


def _run(quick: bool) -> Metrics:
    if not hasattr(trio_workq.WorkQueue, "list_tasks"):
        raise NotAvailable("WorkQueue.list_tasks does not exist yet")
    tasks = 10_000 if quick else 1_000_000  # quick: 100 failed, two pages of them
    failed_count = tasks // FAIL_EVERY
    # Each failure logs a warning with its traceback: that is not the listing's cost.
    logging.getLogger("trio_workq").setLevel(logging.ERROR)
    failed_status = trio_workq.TaskStatus.FAILED

    async def main() -> Metrics:
        async with trio_workq.open_work_queue(
            workers=WORKERS, max_buffer_size=math.inf, max_retained=math.inf, retention=None
        ) as queue:
            for index in range(tasks):
                queue.submit_nowait(failing if index % FAIL_EVERY == 0 else noop)
            await trio.testing.wait_all_tasks_blocked()  # workers idle: all tasks ran
            stats = queue.statistics_nowait()
            check(
                (stats.failed, stats.completed, stats.retained)
                == (failed_count, tasks - failed_count, tasks),
                f"the queue did not finish and retain every task: {stats}",
            )
            # getattr: this module must run (and say n/a) on code without list_tasks, and
            # time the synchronous listing both before and after it became list_tasks_nowait.
            nowait: Callable[..., Any] | None = getattr(queue, "list_tasks_nowait", None)
            list_tasks: Callable[..., Any] = nowait or getattr(queue, "list_tasks")  # noqa: B009

            first = list_tasks(limit=PAGE)
            check(len(first.tasks) == PAGE, f"the first page has {len(first.tasks)} tasks")
            failed = list_tasks(status=failed_status, limit=PAGE)
            check(
                len(failed.tasks) == PAGE
                and all(info.status is failed_status for info in failed.tasks),
                "the failed page is short or holds tasks that did not fail",
            )
            # Halfway down each listing.
            deep = _cursor_at(list_tasks, tasks // 2)
            failed_deep = _cursor_at(list_tasks, failed_count // 2, status=failed_status)
            deep_page = list_tasks(limit=PAGE, cursor=deep)
            failed_deep_page = list_tasks(status=failed_status, limit=PAGE, cursor=failed_deep)
            check(
                len(deep_page.tasks) == PAGE and len(failed_deep_page.tasks) == PAGE,
                "a deep page is short",
            )
            metrics: Metrics = {
                "tasks": tasks,
                "first_page_us": _median_us(lambda: list_tasks(limit=PAGE)),
                "failed_page_us": _median_us(lambda: list_tasks(status=failed_status, limit=PAGE)),
                "deep_page_us": _median_us(lambda: list_tasks(limit=PAGE, cursor=deep)),
                "failed_deep_page_us": _median_us(
                    lambda: list_tasks(status=failed_status, limit=PAGE, cursor=failed_deep)
                ),
            }
            metrics.update(await _web(queue, failed_deep))
            return metrics

    return trio.run(main)


async def _web(queue: trio_workq.WorkQueue, failed_deep: str) -> Metrics:
    """``GET /api/tasks`` through the ASGI app with httpx, when the web extra exists."""
    if importlib.util.find_spec("trio_workq.web") is None:
        return {}
    try:
        import httpx

        from trio_workq.web import create_app
    except ImportError:  # the web extra or httpx is not installed: report n/a
        return {}
    app = create_app(queue)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:

        async def get(params: dict[str, Any]) -> None:
            response = await client.get("/api/tasks", params=params)
            check(response.status_code == 200, f"GET /api/tasks: {response.status_code}")
            check(len(response.json()["tasks"]) == PAGE, "GET /api/tasks: short page")

        deep = {"status": "failed", "limit": PAGE, "cursor": failed_deep}
        return {
            "web_first_page_us": await _median_us_awaited(lambda: get({"limit": PAGE})),
            "web_failed_deep_page_us": await _median_us_awaited(lambda: get(deep)),
        }


COMPARISON = Comparison(
    title="8. Dashboard listing",
    about=(
        "1,000,000 finished tasks retained (`max_retained=inf`), 1 % of them failed; one "
        "process, median of 30 calls each: `list_tasks(limit=50)`; "
        "`list_tasks(status=FAILED, limit=50)`; the same two with a cursor halfway down "
        "their listing; and, with the web extra, `GET /api/tasks?limit=50` and the deep "
        "failed page through the ASGI app (httpx's ASGITransport, no sockets)."
    ),
    variants=(Variant("workq", "trio_workq: `list_tasks`", _run),),
    # Each number is already the median of 30 calls in the process, and the setup
    # (running 1,000,000 tasks) dominates the run's time.
    max_reps=1,
    columns=(
        Column("first_page_us", "first page µs", 1),
        Column("failed_page_us", "failed, first page µs", 1),
        Column("deep_page_us", "deep page µs", 1),
        Column("failed_deep_page_us", "failed, deep page µs", 1),
        Column("web_first_page_us", "GET first page µs", 1),
        Column("web_failed_deep_page_us", "GET failed deep page µs", 1),
    ),
)
