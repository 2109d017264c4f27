# SPDX-License-Identifier: MIT
"""``trio-workq demo``: its options, turned into a `DemoConfig` for `demo_run.run_demo`.

The run (queue, dashboard, live display, summary) is in `demo_run`, the
workload in `demo_workload`; both are imported only when the demo runs.
"""

from __future__ import annotations

import argparse
import random
import sys

from .common import (
    PROG,
    CommandError,
    Commands,
    OneLineFormatter,
    add_dashboard_options,
    integer,
    positive_number,
    seconds,
)

_DESCRIPTION = """\
Run a realistic mixed workload on an in-memory queue: varied durations,
failures that retry and some that end failed, delayed tasks, priorities,
timeouts and cancellations. Serves the web dashboard, shows live progress,
and prints a summary table by final status when it ends.
"""

_EPILOG = f"""\
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


def add(commands: Commands, parent: argparse.ArgumentParser) -> None:
    """Add ``trio-workq demo``; *parent* holds the options every command takes."""
    demo = commands.add_parser(
        "demo",
        parents=[parent],
        help="run a realistic mixed workload on an in-memory queue, with the dashboard",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.set_defaults(handler=run)
    work = demo.add_argument_group("workload")
    work.add_argument(
        "--workers", type=integer(1), default=8, metavar="N", help="worker tasks (default: 8)"
    )
    work.add_argument(
        "--tasks",
        type=integer(1),
        metavar="N",
        help="submit N tasks, then end once they are done (default: run until stopped)",
    )
    work.add_argument(
        "--duration",
        type=seconds(allow_zero=False),
        metavar="SECONDS",
        help="stop gracefully after this many seconds (default: no limit)",
    )
    work.add_argument(
        "--rate",
        type=positive_number,
        default=10.0,
        metavar="PER_SECOND",
        help="average task arrivals per second, before --speed (default: 10)",
    )
    work.add_argument(
        "--speed",
        type=positive_number,
        default=1.0,
        metavar="FACTOR",
        help="time scale: 10 makes every task, delay and backoff ten times shorter "
        "and arrivals ten times faster (default: 1)",
    )
    work.add_argument(
        "--seed",
        type=integer(0),
        metavar="N",
        help="seed of the workload, for a reproducible run (default: random, printed)",
    )
    work.add_argument(
        "--grace",
        type=seconds(allow_zero=True),
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


def run(args: argparse.Namespace) -> int:
    """Run the demo as *args* say; return its exit status."""
    import trio

    # Imported here: `trio-workq --help` and the other commands do without it.
    from .demo_run import ERASE_LINE, DemoConfig, DemoError, run_demo

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
    if config.live and isinstance(formatter, OneLineFormatter) and sys.stderr.isatty():
        # A log line (a failed task) replaces the progress line, which is redrawn below it.
        formatter.prefix = ERASE_LINE
    try:
        result = trio.run(run_demo, config, sys.stdout)
    except DemoError as exc:
        raise CommandError(str(exc)) from None
    return result.exit_status
