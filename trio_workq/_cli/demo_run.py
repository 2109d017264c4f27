# SPDX-License-Identifier: MIT
"""``trio-workq demo``: runs the `demo_workload` on an in-memory queue.

Opens the queue and the dashboard, submits the workload, counts what happens
from the queue's events, shows live progress, stops on a signal, the
duration or the last task, and prints a summary table by final status.

All timing uses Trio's clock, so the demo runs under a `trio.testing.MockClock`.
"""

from __future__ import annotations

import errno
import functools
import shutil
import signal
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import TextIO

import attrs
import trio

from .._core.errors import TaskTimeout
from .._core.status import EventKind, TaskStatus
from .._memory.handle import MemoryTaskHandle
from .._memory.queue import WorkQueue
from .._open import open_work_queue
from .._runtime.events import TaskEvent
from .demo_workload import Planned, Workload, perform

#: Final statuses, in the order the summary shows them.
FINAL_STATUSES = (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)

#: Seconds (Trio time) between redraws of the live progress line on a terminal.
LIVE_INTERVAL = 0.25
#: Seconds (Trio time) between plain progress lines when output is not a terminal.
LINE_INTERVAL = 5.0

#: Finished task records the demo's queue keeps (for the dashboard and its retry button).
RETAINED = 10_000

#: Moves a terminal's cursor to column 0 and erases that line.
ERASE_LINE = "\r\x1b[2K"

#: Exit status of a run that a second signal stopped at once: 128 + the signal number.
_FORCED_EXIT_BASE = 128

_FINAL_KINDS = {
    EventKind.COMPLETED: TaskStatus.COMPLETED,
    EventKind.FAILED: TaskStatus.FAILED,
    EventKind.CANCELLED: TaskStatus.CANCELLED,
}


class DemoError(Exception):
    """A problem the user can fix (a busy port, a missing extra); shown without a traceback."""


# ------------------------------------------------------------------ bookkeeping


class Tally:
    """Counts what the queue reports, from its lifecycle events (a queue listener).

    Args:
        retained: How many finished tasks the queue keeps (its
            ``max_retained``): only those can be re-run from the dashboard.

    Attributes:
        accepted: Tasks the queue accepted.
        retries: Failed attempts that were retried.
        reruns: Finished tasks run again (the dashboard's retry button).
        timeouts: Attempts that timed out.
        final: Final statuses by task name; a re-run task counts once, by
            its latest final status.
    """

    def __init__(self, retained: int) -> None:
        self.accepted = 0
        self.retries = 0
        self.reruns = 0
        self.timeouts = 0
        self.final: dict[str, Counter[TaskStatus]] = {}
        self._retained = retained
        self._final_of: OrderedDict[str, tuple[str, TaskStatus]] = OrderedDict()

    def __call__(self, event: TaskEvent) -> None:
        kind = event.kind
        if kind is EventKind.SUBMITTED or kind is EventKind.SCHEDULED:
            self.accepted += 1
            return
        if kind is EventKind.RETRYING:
            if event.run_duration is None:
                # No attempt ended: an operator re-ran a finished task. The event
                # carries that task's old error, already counted.
                self._forget_final(event.task_id)
                return
            self.retries += 1
        if isinstance(event.error, TaskTimeout):
            self.timeouts += 1
        status = _FINAL_KINDS.get(kind)
        if status is not None:
            self.final.setdefault(event.name, Counter())[status] += 1
            self._final_of[event.task_id] = (event.name, status)
            if len(self._final_of) > self._retained:
                self._final_of.popitem(last=False)

    def _forget_final(self, task_id: str) -> None:
        name_status = self._final_of.pop(task_id, None)
        if name_status is not None:
            name, status = name_status
            self.final[name][status] -= 1
            self.reruns += 1

    def finished(self, status: TaskStatus | None = None) -> int:
        """How many tasks reached *status* (any final status if ``None``)."""
        return sum(
            sum(counts.values()) if status is None else counts[status]
            for counts in self.final.values()
        )


_ge = attrs.validators.ge
_gt = attrs.validators.gt
_optional = attrs.validators.optional


@attrs.frozen
class DemoConfig:
    """The options of one demo run (see ``trio-workq demo --help``).

    Attributes:
        seed: Seeds the workload.
        workers: Size of the worker pool.
        tasks: Stop submitting after this many tasks and end once they are
            done; ``None`` runs until stopped.
        duration: Seconds (Trio time, not scaled) after which to stop
            gracefully; ``None`` for no limit.
        rate: Average arrivals per second (before *speed*).
        speed: Time scale of the jobs' durations, delays and arrivals.
        grace: Seconds a graceful stop waits for unfinished tasks before
            cancelling them.
        dashboard: Serve the web dashboard.
        host: The dashboard's address.
        port: The dashboard's port (0 for any free port).
        token: The dashboard's bearer token, or ``None``.
        allow_public: Serve a non-loopback *host* without a token.
        live: Redraw one progress line in place (on a terminal) instead of
            printing a plain line now and then.
    """

    seed: int
    workers: int = attrs.field(default=8, validator=_ge(1))
    tasks: int | None = attrs.field(default=None, validator=_optional(_ge(1)))
    duration: float | None = attrs.field(default=None, validator=_optional(_gt(0)))
    rate: float = attrs.field(default=10.0, validator=_gt(0))
    speed: float = attrs.field(default=1.0, validator=_gt(0))
    grace: float = attrs.field(default=10.0, validator=_ge(0))
    dashboard: bool = True
    host: str = "127.0.0.1"
    port: int = attrs.field(default=8000, validator=[_ge(0), attrs.validators.le(65535)])
    token: str | None = None
    allow_public: bool = False
    live: bool = False


@attrs.frozen
class DemoResult:
    """How a demo run ended.

    Attributes:
        submitted: Tasks the queue accepted.
        final: Final statuses by task name.
        exit_status: 0 for a run that finished or stopped gracefully; 128 +
            the signal's number when a second signal stopped it at once; 1
            when the output was closed (a broken pipe) and the run stopped.
    """

    submitted: int
    final: dict[str, Counter[TaskStatus]]
    exit_status: int


# ------------------------------------------------------------------ the dashboard


def check_dashboard(config: DemoConfig) -> None:
    """Check, before anything runs, that the dashboard can be served as configured.

    Raises:
        DemoError: If the ``web`` extra is missing, the token is malformed, or
            a non-loopback host has no token (without *allow_public*).
    """
    try:
        from ..web import check_dashboard_options
    except ImportError as exc:
        raise DemoError(
            f"the dashboard needs the optional 'web' extra ({exc}); "
            "install it with: pip install 'trio_workq[web]', "
            "or run the demo without it: trio-workq demo --no-dashboard"
        ) from None
    try:
        check_dashboard_options(
            host=config.host,
            port=config.port,
            token=config.token,
            allow_public=config.allow_public,
        )
    except ValueError as exc:
        raise DemoError(str(exc)) from None


async def _start_dashboard(nursery: trio.Nursery, queue: WorkQueue, config: DemoConfig) -> str:
    """Start the dashboard server in *nursery* and return its URL. Always a checkpoint."""
    from ..web import serve_dashboard

    server = functools.partial(
        serve_dashboard,
        queue,
        host=config.host,
        port=config.port,
        token=config.token,
        allow_public=config.allow_public,
    )
    try:
        url: str = await nursery.start(server)
    except OSError as exc:  # the host does not resolve, or the port is in use...
        # serve_dashboard's message names the address and the reason.
        hint = ""
        if exc.errno == errno.EADDRINUSE and config.port:
            hint = " (try another --port, or --port 0 for any free one)"
        raise DemoError(f"{exc.strerror or exc}{hint}") from None
    return url


# ------------------------------------------------------------------ output


class Console:
    """Writes the demo's lines; on a terminal, one progress line redrawn in place.

    Args:
        out: Where to write.
        live: Redraw the progress line with ``\\r`` (for a terminal); else
            progress is a plain line each time, with no control codes.

    Attributes:
        closed: The reader went away (a broken pipe); nothing more is written.
        on_closed: Called once when that happens.
    """

    _ERASE_LINE = ERASE_LINE

    def __init__(self, out: TextIO, *, live: bool) -> None:
        self._out = out
        self._live = live
        self._progress_shown = False
        self.closed = False
        self.on_closed: Callable[[], None] = lambda: None

    def line(self, text: str) -> None:
        """Write a line of text (in place of the progress line, if shown)."""
        erase = self._ERASE_LINE if self._progress_shown else ""
        self._progress_shown = False
        self._write(f"{erase}{text}\n")

    def progress(self, text: str) -> None:
        """Show the progress line."""
        if not self._live:
            self.line(text)
            return
        width = shutil.get_terminal_size().columns - 1  # a wrapped line could not be redrawn
        self._write(self._ERASE_LINE + text[:width])
        self._progress_shown = True

    def _write(self, text: str) -> None:
        if self.closed:
            return
        try:
            self._out.write(text)
            self._out.flush()
        except BrokenPipeError:
            self.closed = True
            self.on_closed()


def progress_text(queue: WorkQueue, tally: Tally, elapsed: float) -> str:
    """One line of live counters, the busiest first (a narrow terminal cuts the end)."""
    stats = queue.statistics_nowait()
    return (
        f"{elapsed:5.1f}s: {stats.running}/{stats.workers} running, {stats.queued} queued, "
        f"{tally.finished(TaskStatus.COMPLETED)} completed, "
        f"{tally.finished(TaskStatus.FAILED)} failed, "
        f"{tally.finished(TaskStatus.CANCELLED)} cancelled, "
        f"{stats.scheduled} scheduled, {stats.retrying} retrying"
    )


def summary_table(final: dict[str, Counter[TaskStatus]]) -> str:
    """The final statuses as a table: a row per task name, a column per status, totals."""
    headers = ["task", *(status.value for status in FINAL_STATUSES), "total"]
    rows: list[list[str]] = []
    totals: Counter[TaskStatus] = Counter()
    for name in sorted(final):
        counts = final[name]
        totals.update(counts)
        rows.append(_table_row(name, counts))
    rows.append(_table_row("total", totals))
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines: list[str] = []
    for row in [headers, *rows]:
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def _table_row(name: str, counts: Counter[TaskStatus]) -> list[str]:
    cells = [str(counts[status]) for status in FINAL_STATUSES]
    return [name, *cells, str(sum(counts[status] for status in FINAL_STATUSES))]


# ------------------------------------------------------------------ the run


class _Stopper:
    """The two ways a run stops early: gracefully (no new tasks, drain) or at once."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self.intake = trio.CancelScope()  # cancelled for a graceful stop
        self.everything = trio.CancelScope()  # cancelled to stop at once
        self.reason: str | None = None
        self.forced_by: int | None = None

    def stop(self, reason: str, *, hint: str | None = "press Ctrl-C to stop at once") -> None:
        """Stop submitting tasks and let the queue drain (up to the grace period).

        Says so, with *hint*, unless *hint* is ``None``.
        """
        if self.reason is None:
            self.reason = reason
            self.intake.cancel()
            if hint is not None:
                self._console.line(f"Stopping: {reason}; no new tasks ({hint}).")

    def abandon(self) -> None:
        """Nobody reads the output any more (a closed pipe): stop at once, quietly."""
        self.reason = self.reason or "the output was closed"
        self.everything.cancel()

    async def watch_signals(self, signals: AsyncIterator[int]) -> None:
        """The first SIGINT or SIGTERM stops the run gracefully, the next one at once."""
        async for signum in signals:
            name = signal.Signals(signum).name
            if self.reason is None:
                self.stop(f"{name} received", hint="press Ctrl-C again to stop at once")
            elif self.forced_by is None:
                self.forced_by = signum
                self._console.line(f"{name} received: cancelling every unfinished task now.")
                self.everything.cancel()


async def run_demo(config: DemoConfig, out: TextIO) -> DemoResult:
    """Run the demo until its tasks are done, its duration is up, or a signal stops it.

    Prints a header, the dashboard's URL, progress, and a summary table to
    *out*. Handles SIGINT and SIGTERM while it runs: the first stops the
    run gracefully, the second at once. Always a checkpoint.

    Raises:
        DemoError: If the dashboard cannot be served; nothing has run then.
    """
    if config.dashboard:
        check_dashboard(config)
    console = Console(out, live=config.live)
    stopper = _Stopper(console)
    console.on_closed = stopper.abandon
    tally = Tally(RETAINED)
    error: DemoError | None = None  # stays None when a forced stop cuts the run short
    start = trio.current_time()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stopper.watch_signals, signals)
            with stopper.everything:
                error = await _run_workload(config, console, stopper, tally)
            nursery.cancel_scope.cancel()
    if error is not None:
        raise error
    _print_summary(console, tally, trio.current_time() - start, stopper, config.seed)
    if stopper.forced_by is not None:
        exit_status = _FORCED_EXIT_BASE + stopper.forced_by
    else:
        exit_status = 1 if console.closed else 0
    return DemoResult(submitted=tally.accepted, final=tally.final, exit_status=exit_status)


async def _run_workload(
    config: DemoConfig,
    console: Console,
    stopper: _Stopper,
    tally: Tally,
) -> DemoError | None:
    """Open the queue and the dashboard, feed the queue, drain it.

    Returns the error that kept the dashboard from starting (returned, not
    raised, so that it leaves the nurseries as itself). Always a checkpoint.
    """
    async with trio.open_nursery() as services:
        # Room for a burst; a longer backlog makes submit wait (backpressure).
        buffer = max(100, 10 * config.workers)
        async with open_work_queue(
            workers=config.workers,
            max_buffer_size=buffer,
            max_retained=RETAINED,
            shutdown_timeout=config.grace,
        ) as queue:
            queue.add_listener(tally)
            console.line(
                f"trio-workq demo: {config.workers} workers, {_extent(config)}, "
                f"seed {config.seed}, speed {config.speed:g}x"
            )
            if config.dashboard:
                try:
                    url = await _start_dashboard(services, queue, config)
                except DemoError as exc:
                    return exc  # nothing was submitted; the queue closes empty
                console.line(f"Dashboard: {url}")
            services.start_soon(_show_progress, console, queue, tally, config.live)
            if config.duration is not None:
                services.start_soon(_stop_after, stopper, config.duration)
            with stopper.intake:
                console.line("Press Ctrl-C to stop.")
                handles = await _feed(queue, services, config)
                for handle in handles:
                    await handle.wait()
                stopper.stop(f"all {len(handles)} tasks finished", hint=None)
            unfinished = tally.accepted - tally.finished()
            if unfinished:
                console.line(
                    f"Draining {unfinished} unfinished tasks (up to {config.grace:g} s)..."
                )
        services.cancel_scope.cancel()
    return None


def _extent(config: DemoConfig) -> str:
    """How long the run lasts, for the header: ``200 tasks``, ``for 60 s``, ``until stopped``."""
    if config.tasks is None:
        return "until stopped" if config.duration is None else f"for {config.duration:g} s"
    if config.duration is None:
        return f"{config.tasks} tasks"
    return f"{config.tasks} tasks (at most {config.duration:g} s)"


async def _feed(
    queue: WorkQueue, nursery: trio.Nursery, config: DemoConfig
) -> list[MemoryTaskHandle[str]]:
    """Submit the workload: *config.tasks* tasks, whose handles it returns, or forever."""
    handles: list[MemoryTaskHandle[str]] = []
    workload = Workload(config.seed, rate=config.rate, speed=config.speed)
    while True:
        pause, planned = next(workload)
        await trio.sleep(pause)
        handle = await _submit(queue, planned)
        if planned.cancel_after is not None:
            nursery.start_soon(_cancel_later, handle, planned.cancel_after)
        if config.tasks is not None:
            handles.append(handle)
            if len(handles) == config.tasks:
                return handles


async def _submit(queue: WorkQueue, planned: Planned) -> MemoryTaskHandle[str]:
    job = planned.job
    if planned.delay is None:
        return await queue.submit(
            perform,
            job,
            name=job.kind,
            priority=planned.priority,
            timeout=planned.timeout,
            retry=planned.retry,
        )
    return await queue.schedule(
        perform,
        job,
        delay=planned.delay,
        name=job.kind,
        priority=planned.priority,
        timeout=planned.timeout,
        retry=planned.retry,
    )


async def _cancel_later(handle: MemoryTaskHandle[str], delay: float) -> None:
    """The operator: cancel a task a while after it was submitted."""
    await trio.sleep(delay)
    await handle.cancel()


async def _stop_after(stopper: _Stopper, duration: float) -> None:
    await trio.sleep(duration)
    stopper.stop(f"ran for {duration:g} s")


async def _show_progress(console: Console, queue: WorkQueue, tally: Tally, live: bool) -> None:
    interval = LIVE_INTERVAL if live else LINE_INTERVAL
    start = trio.current_time()
    while True:
        await trio.sleep(interval)
        console.progress(progress_text(queue, tally, trio.current_time() - start))


def _print_summary(
    console: Console, tally: Tally, elapsed: float, stopper: _Stopper, seed: int
) -> None:
    rate = tally.finished() / elapsed if elapsed > 0 else 0.0
    how = ", then stopped at once" if stopper.forced_by is not None else ""
    console.line("")
    console.line(
        f"Summary: {tally.accepted} tasks in {elapsed:.1f} s ({rate:.1f} tasks/s); "
        f"{stopper.reason}{how}."
    )
    console.line(summary_table(tally.final))
    reruns = f"; re-run from the dashboard: {tally.reruns}" if tally.reruns else ""
    console.line(f"Retries: {tally.retries}{reruns}; timeouts: {tally.timeouts}; seed: {seed}.")
