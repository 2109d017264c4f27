# SPDX-License-Identifier: MIT
"""``trio-workq tasks list|show|cancel|retry``: the tasks of a durable store, from the shell."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TextIO

import trio

from .._core.errors import TaskNotFound, TaskStateError
from .._core.info import TaskInfo
from .._core.status import TaskStatus
from .._durable.queue import DurableWorkQueue, StoredError, open_durable_queue
from .._durable.serialize import Serializer
from .._stores.protocol import Store, StoreError
from .common import (
    EXIT_OK,
    CommandError,
    Commands,
    Handler,
    add_store_options,
    integer,
    serializer_named,
    store_for,
    user_errors,
)

_DESCRIPTION = """\
Inspect and act on the tasks of a durable store from outside the workers:
list them, show one, cancel one (a running task is stopped by its worker
within about a second), or retry a failed or cancelled one.
"""


def add(commands: Commands, parent: argparse.ArgumentParser) -> None:
    """Add ``trio-workq tasks list|show|cancel|retry``.

    *parent* holds the options every command takes.
    """
    tasks = commands.add_parser(
        "tasks",
        parents=[parent],
        help="list, show, cancel or retry the tasks of a durable store",
        description=_DESCRIPTION,
    )
    actions = tasks.add_subparsers(title="actions", metavar="ACTION", required=True)

    listing = actions.add_parser(
        "list",
        parents=[parent],
        help="list tasks, newest first",
        description="List tasks, newest first.",
    )
    add_store_options(listing)
    listing.add_argument(
        "--status", choices=[s.value for s in TaskStatus], help="only tasks in this status"
    )
    listing.add_argument("--name", help="only tasks with this registered name")
    listing.add_argument(
        "--limit", type=integer(1), default=50, metavar="N", help="at most N tasks (default: 50)"
    )
    listing.add_argument("--cursor", help="continue after the previous listing's last task")
    listing.add_argument("--json", action="store_true", help="print JSON lines")
    listing.set_defaults(handler=_tasks_handler(_list))

    for action, help_text, run in (
        ("show", "show one task: its status, attempts, errors and result", _show),
        ("cancel", "cancel a task (a running one is stopped by its worker)", _cancel),
        ("retry", "run a failed or cancelled task again", _retry),
    ):
        parser = actions.add_parser(action, parents=[parent], help=help_text, description=help_text)
        parser.add_argument("id", help="the task's id")
        add_store_options(parser)
        if action == "show":
            parser.add_argument("--json", action="store_true", help="print JSON")
        parser.set_defaults(handler=_tasks_handler(run))


_Action = Callable[[DurableWorkQueue, argparse.Namespace, TextIO], Awaitable[None]]


def _tasks_handler(action: _Action) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        if getattr(args, "limit", 0) > 1000:
            raise CommandError("--limit must be at most 1000")
        store = store_for(args.store, must_exist=True)
        with user_errors(StoreError, TaskNotFound, TaskStateError, ValueError):
            trio.run(_with_queue, action, args, store)
        return EXIT_OK

    return handler


async def _with_queue(action: _Action, args: argparse.Namespace, store: Store) -> None:
    # A queue without workers: only looks and acts, never runs tasks.
    async with open_durable_queue(
        store=store, workers=0, serializer=serializer_named(args.serializer)
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
    info = await queue.get_info(args.id)  # TaskNotFound for an unknown id
    row = await queue.store.get(args.id)  # the stored arguments and result
    if row is None:  # purged since: as get_info says it
        raise TaskNotFound(f"no task with id {args.id!r} in the store (unknown, or purged)")
    serializer = serializer_named(args.serializer)  # the queue's
    arguments = _decode(serializer, row.payload)
    result = _decode(serializer, row.result) if row.result is not None else None
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


# ------------------------------------------------------------------ helpers


def _decode(serializer: Serializer, data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        value = serializer.loads(data)
        json.dumps(value)
    except Exception:
        return f"<{len(data)} bytes that {serializer!r} cannot show>"
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
