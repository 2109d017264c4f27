# SPDX-License-Identifier: MIT
"""The ``trio-workq`` command line (also ``python -m trio_workq``).

Every command is a subparser added by an ``_add_<command>`` function, which
sets ``handler``: a function from the parsed arguments to an exit status.
A new command (``worker``, ``tasks list|show|cancel|retry``, ``dashboard``)
is one more such function, listed in `build_parser`; a handler raises
`CommandError` for problems the user can fix.

Exit statuses: 0 success (including a graceful stop by Ctrl-C or SIGTERM),
1 an error, 2 a usage error, 128 + N when signal N stopped a command at once.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import random
import sys
from collections.abc import Callable, Generator, Sequence
from importlib.metadata import PackageNotFoundError, version

PROG = "trio-workq"

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
#: A KeyboardInterrupt outside a command's own signal handling (128 + SIGINT).
EXIT_INTERRUPTED = 130

#: The environment variable that supplies ``--token`` when the option is not given.
TOKEN_ENV = "TRIO_WORKQ_TOKEN"

Handler = Callable[[argparse.Namespace], int]


class CommandError(Exception):
    """A problem the user can fix: printed as ``trio-workq: error: ...``, exit status 1."""


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
        with _log_to_stderr(args.verbose) as args.log_handler:
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
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more to stderr (by default: warnings and errors, one line each): "
        "-v retries and tracebacks, -vv every event",
    )
    _add_demo(commands, common)
    from ._durable_cli import add_dashboard, add_tasks, add_worker  # it imports this module

    add_worker(commands, common)
    add_tasks(commands, common)
    add_dashboard(commands, common)
    return parser


# ------------------------------------------------------------------ demo

_DEMO_DESCRIPTION = """\
Run a realistic mixed workload on an in-memory queue: varied durations,
failures that retry and some that end failed, delayed tasks, priorities,
timeouts and cancellations. Serves the web dashboard, shows live progress,
and prints a summary table by final status when it ends.
"""

_DEMO_EPILOG = f"""\
The workload is reproducible: the same --seed and --tasks give the same tasks
and the same final statuses. The first Ctrl-C (or SIGTERM) stops submitting and
lets the queue drain for up to --grace seconds; a second one cancels every
unfinished task at once.

examples:
  {PROG} demo
      run until Ctrl-C, with the dashboard at http://127.0.0.1:8000/
  {PROG} demo --duration 60
      stop gracefully after a minute
  {PROG} demo --tasks 200 --no-dashboard --speed 20
      200 tasks, twenty times faster, then the summary
  {PROG} demo --port 0 --token s3cret
      serve on any free port; the dashboard asks for the token
"""


def _add_demo(
    # argparse has no public name for these types (typeshed's are private).
    commands: argparse._SubParsersAction[argparse.ArgumentParser],  # pyright: ignore[reportPrivateUsage]
    common: argparse.ArgumentParser,
) -> None:
    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="run a realistic mixed workload on an in-memory queue, with the dashboard",
        description=_DEMO_DESCRIPTION,
        epilog=_DEMO_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.set_defaults(handler=_run_demo)
    work = demo.add_argument_group("workload")
    work.add_argument(
        "--workers", type=integer_arg(1), default=8, metavar="N", help="worker tasks (default: 8)"
    )
    work.add_argument(
        "--tasks",
        type=integer_arg(1),
        metavar="N",
        help="submit N tasks, then end once they are done (default: run until stopped)",
    )
    work.add_argument(
        "--duration",
        type=seconds_arg(allow_zero=False),
        metavar="SECONDS",
        help="stop gracefully after this many seconds (default: no limit)",
    )
    work.add_argument(
        "--rate",
        type=positive_number_arg,
        default=10.0,
        metavar="PER_SECOND",
        help="average task arrivals per second, before --speed (default: 10)",
    )
    work.add_argument(
        "--speed",
        type=positive_number_arg,
        default=1.0,
        metavar="FACTOR",
        help="time scale: 10 makes every task, delay and backoff ten times shorter "
        "and arrivals ten times faster (default: 1)",
    )
    work.add_argument(
        "--seed",
        type=integer_arg(0),
        metavar="N",
        help="seed of the workload, for a reproducible run (default: random, printed)",
    )
    work.add_argument(
        "--grace",
        type=seconds_arg(allow_zero=True),
        default=10.0,
        metavar="SECONDS",
        help="how long a graceful stop waits for unfinished tasks before cancelling "
        "them (default: 10)",
    )
    web = demo.add_argument_group("dashboard (needs the 'web' extra)")
    web.add_argument(
        "--no-dashboard",
        dest="dashboard",
        action="store_false",
        help="do not serve the dashboard",
    )
    add_dashboard_options(web)


def _run_demo(args: argparse.Namespace) -> int:
    import trio

    from ._demo import ERASE_LINE, DemoConfig, DemoError, run_demo

    seed: int = random.randrange(1_000_000) if args.seed is None else args.seed
    config = DemoConfig(
        seed=seed,
        workers=args.workers,
        tasks=args.tasks,
        duration=args.duration,
        rate=args.rate,
        speed=args.speed,
        grace=args.grace,
        dashboard=args.dashboard,
        host=args.host,
        port=args.port,
        token=args.token,
        allow_public=args.allow_public,
        # Redraw one line only on a terminal, and not while log lines go there too.
        live=sys.stdout.isatty() and not args.verbose,
    )
    log_handler = getattr(args, "log_handler", None)
    formatter = log_handler.formatter if log_handler is not None else None
    if config.live and isinstance(formatter, _OneLineFormatter) and sys.stderr.isatty():
        # A log line (a failed task) replaces the progress line, which is redrawn below it.
        formatter.prefix = ERASE_LINE
    try:
        result = trio.run(run_demo, config, sys.stdout)
    except DemoError as exc:
        raise CommandError(str(exc)) from None
    return result.exit_status


# ------------------------------------------------------------------ helpers


def add_dashboard_options(parser: argparse._ActionsContainer) -> None:  # pyright: ignore[reportPrivateUsage]
    """Add the dashboard's options to *parser* (a parser or an argument group).

    ``--host``, ``--port``, ``--allow-public`` and ``--token`` (default:
    ``$TRIO_WORKQ_TOKEN``) become ``args.host``, ``args.port``,
    ``args.allow_public`` and ``args.token``: the keyword arguments of
    `trio_workq.web.serve_dashboard`, which checks them together (as
    `trio_workq.web.check_dashboard_options` does).
    """
    parser.add_argument(
        "--host",
        type=_host,
        default="127.0.0.1",
        help="address to serve on (default: 127.0.0.1; other addresses need --token "
        "or --allow-public)",
    )
    parser.add_argument(
        "--port",
        type=_port,
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


@contextlib.contextmanager
def _log_to_stderr(verbosity: int) -> Generator[logging.Handler, None, None]:
    """Send the ``trio_workq`` logger to stderr while a command runs; yield the handler.

    By default only warnings and errors, one line each (an exception as its
    ``Type: message``); ``-v`` adds retries and tracebacks, ``-vv`` every event.
    """
    logger = logging.getLogger("trio_workq")
    handler = logging.StreamHandler(sys.stderr)
    if verbosity:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(_OneLineFormatter())
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


class _OneLineFormatter(logging.Formatter):
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


def integer_arg(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number, at least *minimum* (shared by the commands)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_number_arg(text: str) -> float:
    """An argparse ``type``: a finite number greater than 0."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def seconds_arg(*, allow_zero: bool) -> Callable[[str], float]:
    """An argparse ``type``: a finite number of seconds, 0 only if *allow_zero*."""

    def parse(text: str) -> float:
        value = _number(text)
        if value < 0 or (value == 0 and not allow_zero):
            bound = "0 or more" if allow_zero else "greater than 0"
            raise argparse.ArgumentTypeError(f"must be {bound} seconds, got {text}")
        return value

    return parse


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}")
    return value


def _host(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text
