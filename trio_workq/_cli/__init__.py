# SPDX-License-Identifier: MIT
"""The ``trio-workq`` command line (also ``python -m trio_workq``).

One module per command: `demo`, `worker`, `tasks` (``list``, ``show``,
``cancel``, ``retry``) and `dashboard`. Each has ``add(commands, parent)``,
which adds its subparser and sets ``handler``: a function from the parsed
arguments to an exit status, that raises `common.CommandError` for problems
the user can fix. `common` holds what they share. Imports point one way:
this module imports the commands, the commands import `common`, and no
module of the package imports this one but ``__main__``. A command imports what only it needs
(the web extra, the demo's run and workload) when it runs, so that ``--help`` stays
quick and works without the extras.

Exit statuses: 0 success (including a graceful stop by Ctrl-C or SIGTERM),
1 an error, 2 a usage error, 128 + N when signal N stopped a command at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from . import dashboard, demo, tasks, worker
from .common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    CommandError,
    Handler,
    log_to_stderr,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with *argv* (default: ``sys.argv[1:]``); return the exit status.

    Never raises `SystemExit`: ``--help``, ``--version`` and usage errors
    return 0 or 2 after argparse has printed its text.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return _exit_status(exc.code)
    handler: Handler | None = args.handler
    if handler is None:  # no command given
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        with log_to_stderr(args.verbose) as args.log_handler:
            status = handler(args)
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. `trio-workq demo | head`: the reader is gone
        _discard_stdout()
        return EXIT_ERROR
    except CommandError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return status


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="trio_workq: an in-process task queue for Trio.",
        epilog=f"Run '{PROG} COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    parser.set_defaults(handler=None, verbose=0)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    parent = argparse.ArgumentParser(add_help=False)  # the options of every command
    parent.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more to stderr (by default: warnings and errors, one line each): "
        "-v retries and tracebacks, -vv every event",
    )
    # In the order that --help lists them.
    demo.add(commands, parent)
    worker.add(commands, parent)
    tasks.add(commands, parent)
    dashboard.add(commands, parent)
    return parser


def _version() -> str:
    try:
        return version("trio_workq")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _exit_status(code: str | int | None) -> int:
    """The exit status a `SystemExit` raised by argparse stands for."""
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    return EXIT_ERROR  # pragma: no cover - argparse exits with ints


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
