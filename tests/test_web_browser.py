# SPDX-License-Identifier: MIT
"""The dashboard in a real browser: Debian's chromium, driven headless by Playwright.

The queue and the Hypercorn server run in Trio; Playwright's sync API runs in
a worker thread (`trio.to_thread.run_sync`). Playwright's own browser
download does not work here, so the test launches ``/usr/bin/chromium``
(``apt-get install chromium``; ``.ci/run`` installs it). With ``CI`` set, a
missing chromium or Playwright fails the test; locally it skips.

A second test shows a durable queue's dashboard twice over one SQLite store:
from a process with no workers (the Workers panel says why it has no
figures) and from one with workers (the panel shows them).

Each run saves a screenshot to ``tests/artifacts/dashboard.png``; with
``TRIO_WORKQ_DOCS_SCREENSHOT=1`` it also refreshes the one in the docs
(``docs/_static/dashboard.png``), after letting the throughput chart fill up.
"""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio
from _ci import unavailable
from _web_helpers import XSS_ERROR, XSS_NAME
from _web_helpers import quiet_failures as quiet_failures

import trio_workq
from trio_workq import MemoryTaskHandle, TaskStatus, WorkQueue, open_durable_queue, open_work_queue
from trio_workq.web import serve_dashboard

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Dialog, Page, Route

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).parent / "artifacts"
DOCS_SCREENSHOT = Path(__file__).parent.parent / "docs" / "_static" / "dashboard.png"
TOKEN = "browser-test-token"
#: The message of a made-up API failure (the test answers /api/stats with it).
OUTAGE = "the stats are unavailable for a moment"


def require_browser(chromium: str = CHROMIUM, playwright: str = "playwright") -> None:
    """Skip without chromium or Playwright, except in CI, where that is a failure."""
    missing: list[str] = []
    if not Path(chromium).exists():
        missing.append(f"{chromium} (apt-get install chromium)")
    if importlib.util.find_spec(playwright) is None:
        missing.append("the playwright package (in the tests dependency group)")
    if missing:
        unavailable("the browser test needs " + " and ".join(missing))


async def fetch_page(number: int) -> int:
    await trio.sleep(random.uniform(0.02, 0.2))
    return number * 100


async def send_email(to: str) -> None:
    await trio.sleep(0.01)
    raise ConnectionRefusedError(f"SMTP server refused the connection for {to}")


async def fail_with(message: str) -> None:
    await trio.sleep(0.01)
    raise ValueError(message)


async def render_report(month: str, started: trio.Event) -> None:
    started.set()
    await trio.sleep_forever()


@trio_workq.task(name="browser.render-report")
async def durable_report(month: str) -> None:
    await trio.sleep_forever()


async def feed(queue: WorkQueue) -> None:
    """Keep a trickle of short tasks completing, for the throughput chart."""
    number = 100
    while True:
        name = random.choice(["fetch-page", "resize-image", "index-document"])
        await queue.submit(fetch_page, number, name=name, priority=random.randint(0, 2))
        number += 1
        await trio.sleep(random.uniform(0.1, 0.3))


def browse(url: str, ids: dict[str, str], docs_screenshot: bool) -> None:
    """The browser half: runs in a worker thread with Playwright's sync API."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=10_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(10_000)
            problems: list[str] = []
            dialogs: list[str] = []
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

            def on_console(message: ConsoleMessage) -> None:
                # The first poll is refused (401) until the token is given, and the
                # test makes /api/stats fail once (503): both expected.
                text = message.text
                if message.type == "error" and "401" not in text and "503" not in text:
                    problems.append(f"console: {text}")

            page.on("console", on_console)

            def on_dialog(dialog: Dialog) -> None:  # alert() and friends: the XSS payloads
                dialogs.append(dialog.message)
                dialog.dismiss()

            page.on("dialog", on_dialog)
            check_dashboard(page, ids)
            assert problems == []  # e.g. the CSP blocking the page's own script or style
            assert dialogs == []

            ARTIFACTS.mkdir(exist_ok=True)
            if docs_screenshot:
                page.wait_for_timeout(25_000)  # let the throughput chart fill a little
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        finally:
            browser.close()
    if docs_screenshot:
        shutil.copyfile(ARTIFACTS / "dashboard.png", DOCS_SCREENSHOT)


def check_dashboard(page: Page, ids: dict[str, str]) -> None:
    from playwright.sync_api import expect

    def row(task_id: str) -> str:
        return f'#task-rows tr[data-task-id="{task_id}"]'

    # The token is asked for once, then kept for the tab (also across a reload).
    page.goto(ids["url"])
    expect(page.locator("#login")).to_be_visible()
    submit = page.locator("#login-form button[type=submit]")
    page.locator("#token").fill("not a token")
    submit.click()
    expect(page.locator("#login-error")).to_have_text("A token is printable ASCII, without spaces.")
    page.locator("#token").fill("wrong-token")
    submit.click()
    expect(page.locator("#login-error")).to_have_text("That token was not accepted.")
    expect(page.locator("#dashboard")).to_be_hidden()
    page.locator("#token").fill(TOKEN)
    submit.click()
    expect(page.locator("#dashboard")).to_be_visible()
    page.reload()
    expect(page.locator("#dashboard")).to_be_visible()
    expect(page.locator("#login")).to_be_hidden()
    expect(page.locator("#connection")).to_have_text("live")

    # Counts by status (those the trickle of short tasks does not change).
    expect(page.locator("#count-failed")).to_have_text("3")
    expect(page.locator("#count-scheduled")).to_have_text("1")
    expect(page.locator("#count-retrying")).to_have_text("1")
    expect(page.locator("#count-cancelled")).to_have_text("1")
    expect(page.locator("#workers")).to_have_text("6")
    expect(page.locator("#workers-figures")).to_be_visible()
    expect(page.locator("#workers-scope")).to_have_text("")  # the queue's whole pool
    expect(page.locator("#workers-elsewhere")).to_be_hidden()
    expect(page.locator("#workers-shared")).to_be_hidden()
    expect(page.locator("#retained-line")).to_be_visible()
    expect(page.locator("#chart polyline")).to_have_count(2)

    # The XSS task: its name and error show as text; nothing of it runs or renders.
    page.locator("#filter-status").select_option("failed")
    xss_row = page.locator(row(ids["xss"]))
    expect(xss_row.locator("td.name")).to_have_text(XSS_NAME)
    expect(xss_row.locator("td.error")).to_have_text(f"ValueError: {XSS_ERROR}")
    expect(xss_row.locator("td.status")).to_have_text("failed")
    expect(page.locator("#task-rows tr")).to_have_count(3)
    xss_row.locator("button[data-action=open]").click()
    expect(page.locator("#detail")).to_be_visible()
    expect(page.locator("#detail-id")).to_have_text(ids["xss"])
    expect(page.locator("#detail-traceback")).to_contain_text(f"ValueError: {XSS_ERROR}")
    expect(page.locator("#detail-traceback")).to_contain_text("Traceback (most recent call last)")
    expect(page.locator("#detail-fields")).to_contain_text(XSS_ERROR)  # the arguments
    assert page.evaluate("window.__xss") is None
    assert page.locator("img").count() == 0
    assert page.locator("script").count() == 1  # the dashboard's own

    # Cancel a running task from its row; it becomes cancelled.
    page.locator("#filter-clear").click()
    page.locator("#filter-name").fill("render-report")
    page.locator("#filters button[type=submit]").click()
    expect(page.locator("#task-rows tr")).to_have_count(5)
    target = page.locator(row(ids["running"]))
    expect(target.locator("td.status")).to_have_text("running")
    target.locator("button[data-action=cancel]").click()
    expect(target.locator("td.status")).to_have_text("cancelled")
    expect(target.locator("button[data-action=retry]")).to_be_visible()
    expect(page.locator("#message")).to_contain_text(f"task {ids['running']}")

    # The picture: every task, with a failed one's details open.
    page.locator("#filter-clear").click()
    page.locator("#filter-status").select_option("failed")
    page.locator(row(ids["email"])).locator("button[data-action=open]").click()
    expect(page.locator("#detail-id")).to_have_text(ids["email"])
    expect(page.locator("#detail-traceback")).to_contain_text("ConnectionRefusedError")

    # A failed poll shows the API's message; it goes once polling works again.
    def outage(route: Route) -> None:
        route.fulfill(status=503, json={"error": "unavailable", "message": OUTAGE})

    page.route("**/api/stats", outage)
    expect(page.locator("#message")).to_have_text(OUTAGE)
    expect(page.locator("#connection")).to_have_text("no connection, retrying")
    page.unroute("**/api/stats", outage)
    expect(page.locator("#connection")).to_have_text("live")
    expect(page.locator("#message")).to_have_text("")

    page.locator("#filter-clear").click()
    expect(page.locator("#task-rows tr")).to_have_count(25)  # the page's page size


async def test_dashboard_in_chromium() -> None:
    """Counts, rows, cancel from the page, the XSS case, and a screenshot."""
    require_browser()
    docs_screenshot = bool(os.environ.get("TRIO_WORKQ_DOCS_SCREENSHOT"))
    with trio.fail_after(120 if docs_screenshot else 50):
        async with trio.open_nursery() as nursery:
            async with open_work_queue(nursery, workers=6, shutdown_timeout=0) as queue:
                later = trio_workq.RetryPolicy(max_attempts=3, backoff=trio_workq.fixed(3600))
                for number in range(12):
                    await queue.submit(fetch_page, number, name="fetch-page")
                email: MemoryTaskHandle[None] = await queue.submit(
                    send_email, "ops@example.org", name="send-email"
                )
                await queue.submit(send_email, "team@example.org", name="send-email")
                xss = await queue.submit(fail_with, XSS_ERROR, name=XSS_NAME)
                await queue.submit(fail_with, "upstream 503", name="sync-inventory", retry=later)
                months = ("2026-07", "2026-08", "2026-09", "2026-10", "2026-11")
                started = [trio.Event() for _ in months]
                reports = [
                    await queue.submit(
                        render_report, month, event, name="render-report", priority=1
                    )
                    for month, event in zip(months, started, strict=True)
                ]
                await queue.schedule(fetch_page, 1, delay=600, name="nightly-cleanup")
                await (
                    await queue.schedule(fetch_page, 2, delay=900, name="nightly-cleanup")
                ).cancel()
                await email.wait()
                await xss.wait()
                for event in started:
                    await event.wait()
                running = reports[0]
                nursery.start_soon(feed, queue)

                url = await nursery.start(partial(serve_dashboard, queue, port=0, token=TOKEN))
                ids = {"url": url, "xss": xss.id, "running": running.id, "email": email.id}
                await trio.to_thread.run_sync(browse, url, ids, docs_screenshot)

                assert running.status is TaskStatus.CANCELLED
                assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
                nursery.cancel_scope.cancel()


def browse_durable(urls: dict[str, str]) -> None:
    """The Workers panel of a durable dashboard without workers, then of one with workers."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=10_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

            # `trio-workq dashboard --store`: no workers here, and the panel says why.
            page.goto(urls["reader"])
            expect(page.locator("#connection")).to_have_text("live")
            expect(page.locator("#count-running")).to_have_text("1")
            expect(page.locator("#count-scheduled")).to_have_text("1")
            expect(page.locator("#workers-panel")).to_be_visible()
            expect(page.locator("#workers-figures")).to_be_hidden()
            expect(page.locator("#utilization")).to_be_hidden()
            elsewhere = page.locator("#workers-elsewhere")
            expect(elsewhere).to_be_visible()
            expect(elsewhere).to_contain_text("Workers run in other processes")
            expect(page.locator("#workers-shared")).to_be_hidden()
            expect(page.locator("#retained-line")).to_be_hidden()  # a store keeps no such count
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-store.png"), full_page=True)

            # A worker process's dashboard: the same store, and its own two workers.
            page.goto(urls["worker"])
            expect(page.locator("#connection")).to_have_text("live")
            expect(page.locator("#count-running")).to_have_text("1")
            expect(page.locator("#workers-figures")).to_be_visible()
            expect(page.locator("#workers-elsewhere")).to_be_hidden()
            expect(page.locator("#workers-scope")).to_have_text("in this process")
            expect(page.locator("#workers")).to_have_text("2")
            expect(page.locator("#busy-workers")).to_have_text("1")
            expect(page.locator("#utilization-text")).to_have_text("50%")
            expect(page.locator("#workers-shared")).to_contain_text("cover the whole store")
            expect(page.locator("#retained-line")).to_be_hidden()
            page.screenshot(path=str(ARTIFACTS / "dashboard-worker.png"), full_page=True)
            assert problems == []
        finally:
            browser.close()


async def test_durable_workers_panel_in_chromium(tmp_path: Path) -> None:
    """A durable dashboard shows this process's workers, or says that it has none."""
    require_browser()
    store = f"sqlite:///{tmp_path}/tasks.db"
    with trio.fail_after(50):
        async with (
            trio.open_nursery() as nursery,
            open_durable_queue(store=store, workers=0) as reader,
            open_durable_queue(
                store=store, workers=2, poll_interval=0.05, shutdown_timeout=0
            ) as worker,
        ):
            async with worker.subscribe() as events:
                running = await reader.submit(durable_report, "2026-07")
                async for event in events:  # the worker queue announces its start
                    if event.kind is trio_workq.EventKind.STARTED:
                        break
            await reader.schedule(durable_report, "2026-08", delay=3600)
            urls = {
                "reader": await nursery.start(partial(serve_dashboard, reader, port=0)),
                "worker": await nursery.start(partial(serve_dashboard, worker, port=0)),
            }
            await trio.to_thread.run_sync(browse_durable, urls)
            await reader.cancel(running.id)
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    "missing", [{"chromium": "/nonexistent/chromium"}, {"playwright": "no_such_playwright"}]
)
def test_missing_browser_fails_in_ci(
    monkeypatch: pytest.MonkeyPatch, missing: dict[str, str]
) -> None:
    """Without chromium or Playwright the browser test fails when CI is set, else skips."""
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must provide them"):
        require_browser(**missing)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="the browser test needs"):
        require_browser(**missing)
