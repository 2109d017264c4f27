# SPDX-License-Identifier: MIT
"""What the commands of ``trio-workq`` share.

Exit statuses, `CommandError`, logging to stderr, the types that check option
values, the dashboard's options, and the store helpers of the durable
commands (``worker``, ``tasks``, ``dashboard``). Every command module imports
this one; it imports no command.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import sys
from collections.abc import Callable, Generator
from typing import Any, Protocol

if sys.version_info < (3, 11):  # pragma: no cover - trio depends on the backport there
    from exceptiongroup import BaseExceptionGroup

from .._durable.serialize import JSONSerializer, PickleSerializer, Serializer
from .._stores.protocol import Store, StoreError
from .._stores.urls import store_from_url  # imports psycopg only for a PostgreSQL URL

PROG = "trio-workq"

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
#: A KeyboardInterrupt outside a command's own signal handling (128 + SIGINT).
EXIT_INTERRUPTED = 130

#: The environment variable that supplies ``--token`` when the option is not given.
TOKEN_ENV = "TRIO_WORKQ_TOKEN"

#: A command's handler: from the parsed arguments to an exit status.
Handler = Callable[[argparse.Namespace], int]


class CommandError(Exception):
    """A problem the user can fix: printed as ``trio-workq: error: ...``, exit status 1."""


class Commands(Protocol):
    """The subparsers a command adds itself to (what ``add_subparsers()`` returns)."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


class Options(Protocol):
    """A parser or an argument group: something to add options to."""

    def add_argument(self, *name_or_flags: str, **kwargs: Any) -> argparse.Action: ...


# ------------------------------------------------------------------ logging


@contextlib.contextmanager
def log_to_stderr(verbosity: int) -> Generator[logging.Handler, None, None]:
    """Send the ``trio_workq`` logger to stderr while a command runs; yield the handler.

    By default only warnings and errors, one line each (an exception as its
    ``Type: message``); ``-v`` adds retries and tracebacks, ``-vv`` every event.
    """
    logger = logging.getLogger("trio_workq")
    handler = logging.StreamHandler(sys.stderr)
    if verbosity:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(OneLineFormatter())
        handler.setLevel(logging.WARNING)
    old_level = logger.level
    logger.addHandler(handler)
    if verbosity:
        logger.setLevel(logging.INFO if verbosity == 1 else logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


class OneLineFormatter(logging.Formatter):
    """``trio-workq: warning: message (Type: text)``: a log record as one line, no traceback.

    Attributes:
        prefix: Written before each line (the demo's code that erases its progress line).
    """

    prefix = ""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{self.prefix}{PROG}: {record.levelname.lower()}: {record.getMessage()}"
        error = record.exc_info[1] if record.exc_info else None
        if error is not None:
            text = f"{text} ({type(error).__name__}: {error})"
        return text


def say(message: str) -> None:
    """Tell the user what a long-running command is doing: one line on stderr."""
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ option values


def integer(minimum: int) -> Callable[[str], int]:
    """The type of an option that takes a whole number of at least *minimum*."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def number(text: str) -> float:
    """The type of an option that takes a finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_number(text: str) -> float:
    """The type of an option that takes a finite number greater than 0."""
    value = number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def seconds(*, allow_zero: bool) -> Callable[[str], float]:
    """The type of an option that takes a duration: more than 0 seconds, or 0 too."""

    def parse(text: str) -> float:
        value = number(text)
        if value < 0 or (value == 0 and not allow_zero):
            bound = "0 or more" if allow_zero else "greater than 0"
            raise argparse.ArgumentTypeError(f"must be {bound} seconds, got {text}")
        return value

    return parse


def port(text: str) -> int:
    """The type of ``--port``: 0 to 65535."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}")
    return value


def host(text: str) -> str:
    """The type of ``--host``: not empty."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


# ------------------------------------------------------------------ shared options


def dashboard_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of `trio_workq.web.serve_dashboard` from `add_dashboard_options`."""
    return {
        "host": args.host,
        "port": args.port,
        "token": args.token,
        "allow_public": args.allow_public,
    }


def add_dashboard_options(parser: Options) -> None:
    """Add the dashboard's options to *parser* (a parser or an argument group).

    ``--host``, ``--port``, ``--allow-public`` and ``--token`` (default:
    ``$TRIO_WORKQ_TOKEN``) become ``args.host``, ``args.port``,
    ``args.allow_public`` and ``args.token``: the keyword arguments of
    `trio_workq.web.serve_dashboard`, which checks them together (as
    `trio_workq.web.check_dashboard_options` does).
    """
    parser.add_argument(
        "--host",
        type=host,
        default="127.0.0.1",
        help="address to serve on (default: 127.0.0.1; other addresses need --token "
        "or --allow-public)",
    )
    parser.add_argument(
        "--port",
        type=port,
        default=8000,
        help="port to serve on; 0 picks a free one (default: 8000)",
    )
    parser.add_argument(
        "--allow-public",
        action="store_true",
        help="serve a non-loopback --host without a token (anyone who can reach it "
        "can cancel and retry tasks)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV) or None,
        help=f"require this bearer token (default: ${TOKEN_ENV}, else none)",
    )


def add_store_options(parser: Options) -> None:
    """Add ``--store URL`` (required) and ``--serializer``: a durable command's store."""
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


# ------------------------------------------------------------------ stores


def store_for(url: str, *, must_exist: bool) -> Store:
    """The unopened store at *url*; with *must_exist*, one that will not create itself.

    Commands that only look (``tasks``, ``dashboard``) must not turn a typo
    into a new, empty store: a missing SQLite file is refused here, a
    PostgreSQL schema without a store when the store opens.

    Raises:
        CommandError: If *url* names no store this package can open.
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
        from .._stores.postgres import PostgresStore  # store_from_url has imported it

        store = PostgresStore(url, create=False)
    return store


def serializer_named(name: str) -> Serializer:
    """The serializer that ``--serializer`` *name* stands for."""
    return PickleSerializer() if name == "pickle" else JSONSerializer()


@contextlib.contextmanager
def user_errors(*types: type[Exception]) -> Generator[None, None, None]:
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
