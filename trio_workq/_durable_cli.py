# SPDX-License-Identifier: MIT
"""The ``worker`` and ``tasks`` commands of ``trio-workq``: durable stores from the shell.

``_cli.build_parser`` adds them with `add_worker` and `add_tasks`; each
handler returns an exit status or raises `CommandError`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Generator
from datetime import datetime
from typing import Any, TextIO

if sys.version_info < (3, 11):  # pragma: no cover - trio depends on the backport there
    from exceptiongroup import BaseExceptionGroup

import trio

from ._cli import (
    EXIT_OK,
    PROG,
    CommandError,
    add_dashboard_options,
    integer_arg,
    positive_number_arg,
    seconds_arg,
)
from ._core.errors import TaskNotFound, TaskStateError
from ._core.info import TaskInfo
from ._core.status import TaskStatus
from ._durable.queue import DurableWorkQueue, StoredError, open_durable_queue
from ._durable.registry import registered_names
from ._durable.serialize import JSONSerializer, PickleSerializer, Serializer
from ._stores.protocol import Store, StoreError
from ._stores.urls import store_from_url

_WORKER_DESCRIPTION = """\
Run workers for the tasks in a durable store until stopped. Imports each
MODULE first, so that the tasks it registers with @trio_workq.task can run
(the current directory is on the import path, as with python -m). Several
worker processes, on one host (SQLite) or many (PostgreSQL), may share a store.
"""

_WORKER_EPILOG = f"""\
Store failures are logged to stderr as they happen; a store that fails every
call for --store-failure-grace seconds stops the worker with exit status 1.

The first Ctrl-C (or SIGTERM) stops claiming tasks and lets running ones finish
for up to --shutdown-timeout seconds; what is still running then is cancelled
and given back to the store (queued again, for the next worker). A second
signal gives them back at once.

examples:
  {PROG} worker myapp.tasks --store sqlite:///tasks.db --workers 10
  {PROG} worker myapp.tasks myapp.reports --store postgresql://app@db/app
"""

_TASKS_DESCRIPTION = """\
Inspect and act on the tasks of a durable store from outside the workers:
list them, show one, cancel one (a running task is stopped by its worker
within about a second), or retry a failed or cancelled one.
"""


def _store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        required=True,
        metavar="URL",
        help="sqlite:///relative.db, sqlite:////absolute/path.db or postgresql://...",
    )
    parser.add_argument(
        "--serializer",
        choices=("json", "pickle"),
        default="json",
        help="how task arguments and results are stored; every process on a store "
        "must use the same (default: json; pickle trusts everyone who can write "
        "to the store)",
    )


# ------------------------------------------------------------------ worker


def add_worker(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``trio-workq worker``."""
    worker = commands.add_parser(
        "worker",
        parents=[common],
        help="run workers for the tasks in a durable store",
        description=_WORKER_DESCRIPTION,
        epilog=_WORKER_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.set_defaults(handler=run_worker)
    worker.add_argument(
        "modules", nargs="+", metavar="MODULE", help="modules that register the tasks"
    )
    _store_option(worker)
    worker.add_argument(
        "--workers",
        type=integer_arg(1),
        default=10,
        metavar="N",
        help="tasks run at once (default: 10)",
    )
    worker.add_argument(
        "--lease",
        type=positive_number_arg,
        default=30.0,
        metavar="SECONDS",
        help="how long a claimed task stays reserved without a renewal; after a crash "
        "its task runs again once this has passed (default: 30)",
    )
    worker.add_argument(
        "--poll-interval",
        type=positive_number_arg,
        default=1.0,
        metavar="SECONDS",
        help="how often to look for tasks added by other processes (default: 1)",
    )
    worker.add_argument(
        "--shutdown-timeout",
        type=seconds_arg(allow_zero=True),
        default=30.0,
        metavar="SECONDS",
        help="how long a graceful stop waits for running tasks (default: 30)",
    )
    worker.add_argument(
        "--store-failure-grace",
        type=seconds_arg(allow_zero=True),
        default=60.0,
        metavar="SECONDS",
        help="stop with exit status 1 once every store call has failed for this long, "
        "e.g. on a read-only database or a lost server (default: 60)",
    )


def run_worker(args: argparse.Namespace) -> int:
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
    store = _store_for(args.store, must_exist=False)
    with _user_errors(StoreError):
        return trio.run(_serve, args, store, names)


async def _serve(args: argparse.Namespace, store: Store, names: list[str]) -> int:
    forced: list[int] = []
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            async with open_durable_queue(
                nursery,
                store=store,
                workers=args.workers,
                lease=args.lease,
                poll_interval=args.poll_interval,
                serializer=_serializer(args.serializer),
                shutdown_timeout=args.shutdown_timeout,
                store_failure_grace=args.store_failure_grace,
            ) as queue:
                _say(
                    f"worker {queue.owner} serving {queue.store.url} with {args.workers} "
                    f"workers; tasks: {', '.join(names)}"
                )
                async for signum in signals:
                    _say(
                        f"{signal.Signals(signum).name}: stopping; running tasks have "
                        f"{args.shutdown_timeout:g} s to finish (signal again to stop now)"
                    )
                    nursery.start_soon(_force_on_signal, signals, queue, forced)
                    break
            nursery.cancel_scope.cancel()  # the watcher of a second signal
    _say("worker stopped")
    return 128 + forced[0] if forced else EXIT_OK


async def _force_on_signal(signals: Any, queue: DurableWorkQueue, forced: list[int]) -> None:
    async for signum in signals:
        _say(f"{signal.Signals(signum).name}: giving running tasks back to the store now")
        forced.append(signum)
        await queue.shutdown(timeout=0)
        return


# ------------------------------------------------------------------ tasks


def add_tasks(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``trio-workq tasks list|show|cancel|retry``."""
    tasks = commands.add_parser(
        "tasks",
        parents=[common],
        help="list, show, cancel or retry the tasks of a durable store",
        description=_TASKS_DESCRIPTION,
    )
    actions = tasks.add_subparsers(title="actions", metavar="ACTION", required=True)

    listing = actions.add_parser(
        "list",
        parents=[common],
        help="list tasks, newest first",
        description="List tasks, newest first.",
    )
    _store_option(listing)
    listing.add_argument(
        "--status", choices=[s.value for s in TaskStatus], help="only tasks in this status"
    )
    listing.add_argument("--name", help="only tasks with this registered name")
    listing.add_argument(
        "--limit",
        type=integer_arg(1),
        default=50,
        metavar="N",
        help="at most N tasks (default: 50)",
    )
    listing.add_argument("--cursor", help="continue after the previous listing's last task")
    listing.add_argument("--json", action="store_true", help="print JSON lines")
    listing.set_defaults(handler=_tasks_handler(_list))

    for action, help_text, run in (
        ("show", "show one task: its status, attempts, errors and result", _show),
        ("cancel", "cancel a task (a running one is stopped by its worker)", _cancel),
        ("retry", "run a failed or cancelled task again", _retry),
    ):
        parser = actions.add_parser(action, parents=[common], help=help_text, description=help_text)
        parser.add_argument("id", help="the task's id")
        _store_option(parser)
        if action == "show":
            parser.add_argument("--json", action="store_true", help="print JSON")
        parser.set_defaults(handler=_tasks_handler(run))


_Action = Callable[[DurableWorkQueue, argparse.Namespace, TextIO], Awaitable[None]]


def _tasks_handler(action: _Action) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        if getattr(args, "limit", 0) > 1000:
            raise CommandError("--limit must be at most 1000")
        store = _store_for(args.store, must_exist=True)
        with _user_errors(StoreError, TaskNotFound, TaskStateError, ValueError):
            trio.run(_with_queue, action, args, store)
        return EXIT_OK

    return handler


async def _with_queue(action: _Action, args: argparse.Namespace, store: Store) -> None:
    # A queue without workers: only looks and acts, never runs tasks.
    async with open_durable_queue(
        store=store, workers=0, serializer=_serializer(args.serializer)
    ) as queue:
        await action(queue, args, sys.stdout)


async def _list(queue: DurableWorkQueue, args: argparse.Namespace, out: TextIO) -> None:
    page = await queue.list_tasks(
        status=args.status, name=args.name, limit=args.limit, cursor=args.cursor
    )
    if args.json:
        for info in page.tasks:
            print(json.dumps(_info_json(info)), file=out)
    else:
        rows = [("ID", "STATUS", "NAME", "ATTEMPTS", "CREATED", "LAST ERROR")]
        for info in page.tasks:
            error = "" if info.last_error is None else str(info.last_error)
            rows.append(
                (
                    info.id,
                    info.status.value,
                    info.name,
                    f"{info.attempts}/{info.max_attempts}",
                    _time(info.created_at),
                    error[:60],
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
            print("  ".join([*cells, row[-1]]).rstrip(), file=out)
    if page.next_cursor is not None:
        print(f"more: --cursor {page.next_cursor}", file=sys.stderr)


async def _show(queue: DurableWorkQueue, args: argparse.Namespace, out: TextIO) -> None:
    info = await queue.get_info(args.id)
    row = await queue.store.get(args.id)
    if row is None:  # purged since get_info read it
        raise TaskNotFound(f"no task with id {args.id!r} in the store (unknown, or purged)")
    arguments = _decode(queue, row.payload)
    result = _decode(queue, row.result) if row.result is not None else None
    if args.json:
        data = _info_json(info)
        data["errors"] = [error.text for error in info.errors if isinstance(error, StoredError)]
        data["arguments"] = arguments
        data["result"] = result
        print(json.dumps(data), file=out)
        return
    for field, value in (
        ("id", info.id),
        ("name", info.name),
        ("status", info.status.value),
        ("priority", info.priority),
        ("attempts", f"{info.attempts} of {info.max_attempts}"),
        ("timeout", "none" if info.timeout is None else f"{info.timeout:g} s"),
        ("created", _time(info.created_at)),
        ("due", _time(info.due_at)),
        ("started", _time(info.started_at)),
        ("finished", _time(info.finished_at)),
        ("arguments", json.dumps(arguments)),
        ("result", json.dumps(result) if info.status is TaskStatus.COMPLETED else "-"),
    ):
        print(f"{field + ':':11}{value}", file=out)
    for number, error in enumerate(info.errors, 1):
        text = error.text if isinstance(error, StoredError) else str(error)
        print(f"\nerror {number} of {len(info.errors)}:\n{text}", file=out)


async def _cancel(queue: DurableWorkQueue, args: argparse.Namespace, out: TextIO) -> None:
    if await queue.cancel(args.id):
        status = (await queue.get_info(args.id)).status
        if status is TaskStatus.RUNNING:
            print(f"task {args.id}: cancellation requested; its worker stops it", file=out)
        else:
            print(f"task {args.id}: {status.value}", file=out)
    else:
        status = (await queue.get_info(args.id)).status
        raise CommandError(f"task {args.id} has already finished ({status.value})")


async def _retry(queue: DurableWorkQueue, args: argparse.Namespace, out: TextIO) -> None:
    await queue.retry(args.id)
    print(f"task {args.id}: queued again", file=out)


# ------------------------------------------------------------------ dashboard


def add_dashboard(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``trio-workq dashboard --store URL``."""
    dashboard = commands.add_parser(
        "dashboard",
        parents=[common],
        help="serve the web dashboard for the tasks of a durable store",
        description="Serve the web dashboard and REST API for every task of a durable store "
        "(needs the 'web' extra). It runs no tasks: start workers with "
        f"'{PROG} worker'. Ctrl-C stops it.",
    )
    dashboard.set_defaults(handler=run_dashboard)
    _store_option(dashboard)
    add_dashboard_options(dashboard)


def run_dashboard(args: argparse.Namespace) -> int:
    """Serve the dashboard of a store until Ctrl-C or SIGTERM."""
    store = _store_for(args.store, must_exist=True)
    try:
        from .web import check_dashboard_options, serve_dashboard
    except ImportError as exc:
        raise CommandError(
            f"the dashboard needs the web extra (pip install 'trio_workq[web]'): {exc}"
        ) from None
    with _user_errors(StoreError, ValueError, OSError):
        # Refuse a public host without a token before the store is touched.
        check_dashboard_options(host=args.host, token=args.token, allow_public=args.allow_public)
        trio.run(_serve_dashboard, args, store, serve_dashboard)
    return EXIT_OK


async def _serve_dashboard(args: argparse.Namespace, store: Store, serve_dashboard: Any) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with (
            open_durable_queue(
                store=store, workers=0, serializer=_serializer(args.serializer)
            ) as queue,
            trio.open_nursery() as nursery,
        ):
            url = await nursery.start(
                functools.partial(
                    serve_dashboard,
                    queue,
                    host=args.host,
                    port=args.port,
                    token=args.token,
                    allow_public=args.allow_public,
                )
            )
            _say(f"dashboard for {queue.store.url} at {url} (Ctrl-C to stop)")
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()
    _say("dashboard stopped")


# ------------------------------------------------------------------ helpers


@contextlib.contextmanager
def _user_errors(*types: type[Exception]) -> Generator[None, None, None]:
    """Report *types* as command errors, also when a nursery wrapped them in a group."""
    try:
        yield
    except types as exc:
        raise CommandError(str(exc)) from None
    except BaseExceptionGroup as group:
        matched, rest = group.split(types)
        if matched is None or rest is not None:
            raise
        error: BaseException = matched
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
        raise CommandError(str(error)) from None


def _store_for(url: str, *, must_exist: bool) -> Store:
    """The unopened store at *url*; with *must_exist*, one that will not create itself.

    Commands that only look (``tasks``, ``dashboard``) must not turn a typo
    into a new, empty store: a missing SQLite file is refused here, a
    PostgreSQL schema without a store when the store opens.
    """
    try:
        store = store_from_url(url)
    except (ValueError, StoreError) as exc:
        raise CommandError(str(exc)) from None
    if not must_exist:
        return store
    path = getattr(store, "path", None)
    if isinstance(path, str) and not os.path.exists(path):
        raise CommandError(f"no SQLite store at {path!r} (from {url})")
    if url.startswith(("postgresql://", "postgres://")):
        from ._stores.postgres import PostgresStore  # store_from_url has imported it

        store = PostgresStore(url, create=False)
    return store


def _serializer(name: str) -> Serializer:
    return PickleSerializer() if name == "pickle" else JSONSerializer()


def _decode(queue: DurableWorkQueue, data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        value = queue.serializer.loads(data)
        json.dumps(value)
    except Exception:
        return f"<{len(data)} bytes that {queue.serializer!r} cannot show>"
    return value


def _info_json(info: TaskInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "name": info.name,
        "status": info.status.value,
        "priority": info.priority,
        "attempts": info.attempts,
        "max_attempts": info.max_attempts,
        "timeout": info.timeout,
        "created_at": _iso(info.created_at),
        "due_at": _iso(info.due_at),
        "started_at": _iso(info.started_at),
        "finished_at": _iso(info.finished_at),
        "last_error": None if info.last_error is None else str(info.last_error),
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _time(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)
