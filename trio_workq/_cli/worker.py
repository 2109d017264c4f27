# SPDX-License-Identifier: MIT
"""``trio-workq worker``: run workers for the tasks of a durable store until stopped."""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import signal
import sys
from typing import Any

import trio

from .._core.registry import registered_names
from .._durable.queue import DurableWorkQueue, open_durable_queue
from .._stores.protocol import Store, StoreError
from .common import (
    EXIT_OK,
    PROG,
    CommandError,
    Commands,
    add_dashboard_options,
    add_store_options,
    dashboard_options,
    integer,
    positive_number,
    say,
    seconds,
    serializer_named,
    store_for,
    user_errors,
)

_DESCRIPTION = """\
Run workers for the tasks in a durable store until stopped. Imports each
MODULE first, so that the tasks it registers with @trio_workq.task can run
(the current directory is on the import path, as with python -m). Several
worker processes, on one host (SQLite) or many (PostgreSQL), may share a store.
"""

_EPILOG = f"""\
Store failures are logged to stderr as they happen; a store that fails every
call for --store-failure-grace seconds stops the worker with exit status 1.

The first Ctrl-C (or SIGTERM) stops claiming tasks and lets running ones finish
for up to --shutdown-timeout seconds; what is still running then is cancelled
and given back to the store (queued again, for the next worker). A second
signal gives them back at once.

With --dashboard the worker also serves the web dashboard: every task of the
store, and this worker's own workers in its Workers panel.

examples:
  {PROG} worker myapp.tasks --store sqlite:///tasks.db --workers 10
  {PROG} worker myapp.tasks myapp.reports --store postgresql://app@db/app
  {PROG} worker myapp.tasks --store sqlite:///tasks.db --dashboard --port 8001
"""


def add(commands: Commands, parent: argparse.ArgumentParser) -> None:
    """Add ``trio-workq worker``; *parent* holds the options every command takes."""
    worker = commands.add_parser(
        "worker",
        parents=[parent],
        help="run workers for the tasks in a durable store",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.set_defaults(handler=run)
    worker.add_argument(
        "modules", nargs="+", metavar="MODULE", help="modules that register the tasks"
    )
    add_store_options(worker)
    worker.add_argument(
        "--workers",
        type=integer(1),
        default=10,
        metavar="N",
        help="tasks run at once (default: 10)",
    )
    worker.add_argument(
        "--lease",
        type=positive_number,
        default=30.0,
        metavar="SECONDS",
        help="how long a claimed task stays reserved without a renewal; after a crash "
        "its task runs again once this has passed (default: 30)",
    )
    worker.add_argument(
        "--poll-interval",
        type=positive_number,
        default=1.0,
        metavar="SECONDS",
        help="how often to look for tasks added by other processes (default: 1)",
    )
    worker.add_argument(
        "--shutdown-timeout",
        type=seconds(allow_zero=True),
        default=30.0,
        metavar="SECONDS",
        help="how long a graceful stop waits for running tasks (default: 30)",
    )
    worker.add_argument(
        "--store-failure-grace",
        type=seconds(allow_zero=True),
        default=60.0,
        metavar="SECONDS",
        help="stop with exit status 1 once every store call has failed for this long, "
        "e.g. on a read-only database or a lost server (default: 60)",
    )
    web = worker.add_argument_group("dashboard (needs the 'web' extra)")
    web.add_argument(
        "--dashboard",
        action="store_true",
        help="also serve the web dashboard of the store, with this worker's workers "
        "(the options below apply to it)",
    )
    add_dashboard_options(web)


def run(args: argparse.Namespace) -> int:
    """Import the modules, then serve the store until a signal stops the worker."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: the app's own modules
    for module in args.modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise CommandError(f"cannot import {module!r}: {exc}") from None
    names = registered_names()
    if not names:
        raise CommandError(
            f"no tasks are registered after importing {', '.join(args.modules)}: "
            "decorate task functions with @trio_workq.task"
        )
    serve_dashboard = _dashboard_server(args) if args.dashboard else None
    store = store_for(args.store, must_exist=False)
    with user_errors(StoreError, CommandError):
        return trio.run(_serve, args, store, names, serve_dashboard)


def _dashboard_server(args: argparse.Namespace) -> Any:
    """`trio_workq.web.serve_dashboard`, once the options are checked; nothing has run yet."""
    try:
        from ..web import check_dashboard_options, serve_dashboard
    except ImportError as exc:
        raise CommandError(
            f"--dashboard needs the web extra (pip install 'trio_workq[web]'): {exc}"
        ) from None
    with user_errors(ValueError):
        check_dashboard_options(
            host=args.host, port=args.port, token=args.token, allow_public=args.allow_public
        )
    return serve_dashboard


async def _serve(
    args: argparse.Namespace, store: Store, names: list[str], serve_dashboard: Any
) -> int:
    forced: list[int] = []
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            async with open_durable_queue(
                nursery,
                store=store,
                workers=args.workers,
                lease=args.lease,
                poll_interval=args.poll_interval,
                serializer=serializer_named(args.serializer),
                shutdown_timeout=args.shutdown_timeout,
                store_failure_grace=args.store_failure_grace,
            ) as queue:
                say(
                    f"worker {queue.owner} serving {queue.store.url} with {args.workers} "
                    f"workers; tasks: {', '.join(names)}"
                )
                if serve_dashboard is not None:
                    server = functools.partial(serve_dashboard, queue, **dashboard_options(args))
                    try:
                        url = await nursery.start(server)
                    except OSError as exc:  # the message names the address and the reason
                        raise CommandError(str(exc.strerror or exc)) from None
                    say(f"dashboard at {url}")
                async for signum in signals:
                    say(
                        f"{signal.Signals(signum).name}: stopping; running tasks have "
                        f"{args.shutdown_timeout:g} s to finish (signal again to stop now)"
                    )
                    nursery.start_soon(_force_on_signal, signals, queue, forced)
                    break
            nursery.cancel_scope.cancel()  # the watcher of a second signal
    say("worker stopped")
    return 128 + forced[0] if forced else EXIT_OK


async def _force_on_signal(signals: Any, queue: DurableWorkQueue, forced: list[int]) -> None:
    async for signum in signals:
        say(f"{signal.Signals(signum).name}: giving running tasks back to the store now")
        forced.append(signum)
        await queue.shutdown(timeout=0)
        return
