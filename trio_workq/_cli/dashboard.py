# SPDX-License-Identifier: MIT
"""``trio-workq dashboard``: serve the web dashboard for the tasks of a durable store.

The web extra is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import functools
import signal
from typing import Any

import trio

from .._durable.queue import open_durable_queue
from .._stores.protocol import Store, StoreError
from .common import (
    EXIT_OK,
    PROG,
    CommandError,
    Commands,
    add_dashboard_options,
    add_store_options,
    dashboard_options,
    say,
    serializer_named,
    store_for,
    user_errors,
)


def add(commands: Commands, parent: argparse.ArgumentParser) -> None:
    """Add ``trio-workq dashboard --store URL``; *parent* holds the options every command takes."""
    dashboard = commands.add_parser(
        "dashboard",
        parents=[parent],
        help="serve the web dashboard for the tasks of a durable store",
        description="Serve the web dashboard and REST API for every task of a durable store "
        "(needs the 'web' extra). It runs no tasks, so its Workers panel says so: start "
        f"workers with '{PROG} worker' (which serves the dashboard itself with --dashboard). "
        "Ctrl-C stops it.",
    )
    dashboard.set_defaults(handler=run)
    add_store_options(dashboard)
    add_dashboard_options(dashboard)


def run(args: argparse.Namespace) -> int:
    """Serve the dashboard of a store until Ctrl-C or SIGTERM."""
    store = store_for(args.store, must_exist=True)
    try:
        from ..web import check_dashboard_options, serve_dashboard
    except ImportError as exc:
        raise CommandError(
            f"the dashboard needs the web extra (pip install 'trio_workq[web]'): {exc}"
        ) from None
    with user_errors(StoreError, ValueError, OSError):
        # Refuse a public host without a token before the store is touched.
        check_dashboard_options(host=args.host, token=args.token, allow_public=args.allow_public)
        trio.run(_serve_dashboard, args, store, serve_dashboard)
    return EXIT_OK


async def _serve_dashboard(args: argparse.Namespace, store: Store, serve_dashboard: Any) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with (
            open_durable_queue(
                store=store, workers=0, serializer=serializer_named(args.serializer)
            ) as queue,
            trio.open_nursery() as nursery,
        ):
            server = functools.partial(serve_dashboard, queue, **dashboard_options(args))
            url = await nursery.start(server)
            say(f"dashboard for {queue.store.url} at {url} (Ctrl-C to stop)")
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()
    say("dashboard stopped")
