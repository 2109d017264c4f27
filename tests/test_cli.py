# SPDX-License-Identifier: MIT
# White-box: tests the CLI's private one-line log formatter.
# pyright: reportPrivateUsage=false
"""The ``trio-workq`` command line: in-process ``main(argv)`` calls and real subprocesses.

Subprocess tests follow the I/O rules: 127.0.0.1, port 0 or a port we hold,
and a deadline on every wait.
"""

from __future__ import annotations

import argparse
import functools
import logging
import re
import runpy
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import TextIO

import pytest
import trio
from _demo_helpers import expected_rows, summary_rows

import trio_workq
from trio_workq import _cli as _cli
from trio_workq._cli import common as cli_common
from trio_workq._cli import demo as cli_demo
from trio_workq._cli import demo_run as _demo
from trio_workq._cli.demo_run import DemoConfig, DemoResult

#: A quick finite run: 200 tasks at twenty times the normal pace (about a second).
FAST_200 = ["demo", "--tasks", "200", "--no-dashboard", "--speed", "20", "--seed", "11"]
#: The summary table FAST_200 ends with: every task reaches its script's final status.
FAST_200_ROWS = expected_rows(seed=11, tasks=200)

#: A quicker one, with retries, failures and cancellations all the same (about 0.3 s).
FAST_60 = ["demo", "--tasks", "60", "--no-dashboard", "--speed", "40", "--seed", "11"]

#: The console script next to the interpreter running the tests (pip installs it there).
SCRIPT = Path(sys.executable).with_name("trio-workq")


def summary_totals(output: str) -> tuple[int, int, int, int]:
    """(completed, failed, cancelled, total) of the summary, after checking that rows add up."""
    rows = summary_rows(output)
    totals = rows.pop("total")
    for completed, failed, cancelled, total in rows.values():
        assert completed + failed + cancelled == total
    assert totals == tuple(sum(column) for column in zip(*rows.values(), strict=True))
    completed, failed, cancelled, total = totals
    return completed, failed, cancelled, total


def seed(output: str) -> str:
    match = re.search(r"; seed: (\d+)\.$", output, re.MULTILINE)
    assert match is not None, output
    return match.group(1)


def submitted(output: str) -> int:
    match = re.search(r"^Summary: (\d+) tasks in ", output, re.MULTILINE)
    assert match is not None, output
    return int(match.group(1))


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another socket is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


class TestArguments:
    @pytest.mark.parametrize("argv", [["--help"], ["-h"], ["demo", "--help"]])
    def test_help(self, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
        """--help prints usage on stdout and exits 0."""
        assert _cli.main(argv) == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: trio-workq")
        if argv[0] == "demo":
            for option in ("--workers", "--tasks", "--port", "--host", "--duration"):
                assert option in out
            for option in ("--no-dashboard", "--seed", "--token", "--speed", "--verbose"):
                assert option in out
        else:
            assert "demo" in out

    def test_version(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--version prints the installed distribution's version."""
        assert _cli.main(["--version"]) == 0
        assert capsys.readouterr().out == f"trio-workq {version('trio_workq')}\n"

    def test_no_command(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Without a command: the help on stderr, usage-error status 2."""
        assert _cli.main([]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "usage: trio-workq" in captured.err
        assert "demo" in captured.err

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["bogus"], "invalid choice: 'bogus'"),
            (["--bogus"], "unrecognized arguments: --bogus"),
            (["demo", "--bogus"], "unrecognized arguments: --bogus"),
            (["demo", "--workers", "0"], "argument --workers: must be at least 1, got 0"),
            (["demo", "--workers", "two"], "argument --workers: expected a whole number"),
            (["demo", "--tasks", "-5"], "argument --tasks: must be at least 1, got -5"),
            (["demo", "--tasks", "0"], "argument --tasks: must be at least 1, got 0"),
            (["demo", "--port", "65536"], "argument --port: expected a port number"),
            (["demo", "--port", "-1"], "argument --port: expected a port number"),
            (["demo", "--port", "http"], "argument --port: expected a port number"),
            (["demo", "--duration", "0"], "argument --duration: must be greater than 0"),
            (["demo", "--duration", "-3"], "argument --duration: must be greater than 0"),
            (["demo", "--speed", "0"], "argument --speed: must be greater than 0"),
            (["demo", "--speed", "nan"], "argument --speed: must be a finite number"),
            (["demo", "--speed", "fast"], "argument --speed: expected a number, got 'fast'"),
            (["demo", "--rate", "inf"], "argument --rate: must be a finite number"),
            (["demo", "--grace", "-1"], "argument --grace: must be 0 or more seconds"),
            (["demo", "--seed", "-1"], "argument --seed: must be at least 0"),
            (["demo", "--host", ""], "argument --host: must not be empty"),
            (["demo", "--workers"], "argument --workers: expected one argument"),
        ],
    )
    def test_bad_arguments(
        self, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A usage mistake: a one-line reason on stderr after the usage, status 2."""
        assert _cli.main(argv) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert message in captured.err
        assert captured.err.startswith("usage: trio-workq")
        assert "Traceback" not in captured.err

    def test_token_from_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """--token defaults to $TRIO_WORKQ_TOKEN; the option wins over it."""
        monkeypatch.setenv("TRIO_WORKQ_TOKEN", "from-env")
        assert _cli.build_parser().parse_args(["demo"]).token == "from-env"
        assert _cli.build_parser().parse_args(["demo", "--token", "x"]).token == "x"
        monkeypatch.setenv("TRIO_WORKQ_TOKEN", "")
        assert _cli.build_parser().parse_args(["demo"]).token is None

    def test_dashboard_options_helper(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """add_dashboard_options gives any parser the dashboard's four options, checked."""
        monkeypatch.delenv("TRIO_WORKQ_TOKEN", raising=False)
        parser = argparse.ArgumentParser(prog="x", exit_on_error=False)
        cli_common.add_dashboard_options(parser)
        args = parser.parse_args([])
        assert (args.host, args.port, args.allow_public, args.token) == (
            "127.0.0.1",
            8000,
            False,
            None,
        )
        argv = ["--host", "::1", "--port", "0", "--allow-public", "--token", "t"]
        args = parser.parse_args(argv)
        assert (args.host, args.port, args.allow_public, args.token) == ("::1", 0, True, "t")
        with pytest.raises(argparse.ArgumentError, match="expected a port number"):
            parser.parse_args(["--port", "70000"])
        with pytest.raises(argparse.ArgumentError, match="must not be empty"):
            parser.parse_args(["--host", " "])

    def test_defaults(self) -> None:
        """The documented defaults."""
        args = _cli.build_parser().parse_args(["demo"])
        assert (args.workers, args.tasks, args.duration, args.seed) == (8, None, None, None)
        assert (args.rate, args.speed, args.grace) == (10.0, 1.0, 10.0)
        assert (args.dashboard, args.host, args.port) == (True, "127.0.0.1", 8000)
        assert args.verbose == 0


class TestDemoInProcess:
    def test_finishes_with_summary(self, capsys: pytest.CaptureFixture[str]) -> None:
        """demo --tasks 200 --no-dashboard ends by itself with the scripts' final statuses."""
        assert _cli.main(FAST_200) == 0
        captured = capsys.readouterr()
        assert submitted(captured.out) == 200
        assert summary_rows(captured.out) == FAST_200_ROWS
        assert FAST_200_ROWS["total"][3] == 200
        assert "all 200 tasks finished" in captured.out
        # Each failed task is one warning line on stderr; tracebacks only with -v.
        warnings = captured.err.splitlines()
        assert len(warnings) == FAST_200_ROWS["total"][1]
        for line in warnings:
            assert re.fullmatch(
                r"trio-workq: warning: task \d+ \(\w+\) failed after \d attempt\(s\) \(\w+: .+\)",
                line,
            ), line

    def test_options_reach_the_demo(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Every option lands in the demo's config; its exit status is main()'s."""
        configs: list[DemoConfig] = []

        async def fake_run_demo(config: DemoConfig, out: TextIO) -> DemoResult:
            await trio.lowlevel.checkpoint()
            configs.append(config)
            return DemoResult(submitted=0, final={}, exit_status=143)

        monkeypatch.setattr(_demo, "run_demo", fake_run_demo)
        argv = [
            *("demo", "--workers", "3", "--tasks", "7", "--duration", "9", "--rate", "2"),
            *("--speed", "4", "--seed", "5", "--grace", "1", "--host", "::1", "--port", "0"),
            *("--token", "t0k", "--allow-public", "--no-dashboard"),
        ]
        assert _cli.main(argv) == 143
        assert configs == [
            DemoConfig(
                seed=5,
                workers=3,
                tasks=7,
                duration=9,
                rate=2,
                speed=4,
                grace=1,
                dashboard=False,
                host="::1",
                port=0,
                token="t0k",
                allow_public=True,
                live=False,  # the captured stdout is not a terminal
            )
        ]

    def test_random_seed_is_printed(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Without --seed a random one is used and printed, so the run can be repeated."""
        assert _cli.main(["demo", "--tasks", "5", "--no-dashboard", "--speed", "50"]) == 0
        out = capsys.readouterr().out
        assert re.search(r"^trio-workq demo: 8 workers, 5 tasks, seed \d+, speed 50x$", out, re.M)
        assert re.search(r"seed: \d+\.$", out, re.M)

    @pytest.mark.parametrize(("flag", "level"), [("-v", "INFO"), ("-vv", "DEBUG")])
    def test_verbose_logs_to_stderr(
        self, flag: str, level: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """-v sends the trio_workq logger to stderr (retries at INFO); -vv adds events."""
        assert _cli.main([*FAST_60, flag]) == 0
        err = capsys.readouterr().err
        assert f"{level} trio_workq: task " in err
        assert "retrying in" in err
        assert ("started" in err) == (level == "DEBUG")
        assert "Traceback (most recent call last)" in err
        # The handler is gone afterwards: main() leaves logging as it found it.
        assert _cli.main(FAST_60) == 0
        err = capsys.readouterr().err
        assert "INFO" not in err
        assert "Traceback" not in err
        assert logging.getLogger("trio_workq").handlers == []

    def test_log_line_erases_a_live_progress_line(self) -> None:
        """In the demo's live mode, a warning line first erases the progress line it replaces."""
        formatter = cli_common.OneLineFormatter()
        record = logging.LogRecord("trio_workq", logging.WARNING, __file__, 1, "lost", (), None)
        assert formatter.format(record) == "trio-workq: warning: lost"
        formatter.prefix = _demo.ERASE_LINE
        assert formatter.format(record) == "\r\x1b[2Ktrio-workq: warning: lost"

    def test_missing_web_extra(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Without the web extra: a clear error naming the fixes, status 1, nothing run."""
        monkeypatch.setitem(sys.modules, "trio_workq.web", None)
        assert _cli.main(["demo", "--tasks", "5"]) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.startswith("trio-workq: error: the dashboard needs the optional 'web'")
        assert "pip install 'trio_workq[web]'" in captured.err
        assert "--no-dashboard" in captured.err
        assert "Traceback" not in captured.err

    def test_keyboard_interrupt_outside_the_run(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Ctrl-C before the demo handles signals itself: 'interrupted', status 130."""

        def interrupted(args: object) -> int:
            raise KeyboardInterrupt

        monkeypatch.setattr(cli_demo, "run", interrupted)
        assert _cli.main(["demo"]) == 130
        assert capsys.readouterr().err == "trio-workq: interrupted\n"


class TestDashboard:
    """The demo with the dashboard (needs the web extra, which the test sessions install)."""

    def test_port_in_use(self, held_port: int, capsys: pytest.CaptureFixture[str]) -> None:
        """A busy port: a clear error naming it, status 1, no traceback."""
        argv = ["demo", "--tasks", "5", "--speed", "50", "--port", str(held_port)]
        assert _cli.main(argv) == 1
        captured = capsys.readouterr()
        assert captured.err.startswith(
            f"trio-workq: error: cannot serve the dashboard on 127.0.0.1 port {held_port}: "
        )
        assert captured.err.endswith(
            "Address already in use (try another --port, or --port 0 for any free one)\n"
        )
        assert "Traceback" not in captured.err
        assert "Summary" not in captured.out

    def test_address_not_here(self, capsys: pytest.CaptureFixture[str]) -> None:
        """An address this machine does not have (TEST-NET-1): the system's reason, status 1."""
        argv = ["demo", "--tasks", "5", "--host", "192.0.2.1", "--token", "t", "--port", "0"]
        assert _cli.main(argv) == 1
        err = capsys.readouterr().err
        assert err == (
            "trio-workq: error: cannot serve the dashboard on 192.0.2.1 port 0: "
            "Cannot assign requested address\n"
        )

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            (
                ["--host", "0.0.0.0"],
                "refusing to serve the dashboard on 0.0.0.0 without a token: anyone who can "
                "reach it could cancel and retry tasks. Give a token, or allow public access "
                "if the network is trusted\n",
            ),
            (["--token", "two words"], "token must be a non-empty string"),
        ],
    )
    def test_refused_before_anything_runs(
        self, options: list[str], message: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A public address without a token, or a malformed token: status 1, nothing run."""
        assert _cli.main(["demo", "--tasks", "5", *options]) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.startswith(f"trio-workq: error: {message}")
        assert "Traceback" not in captured.err

    def test_serves_and_prints_url(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--port 0 serves on a free port and prints the URL; the run still ends by itself."""
        assert _cli.main(["demo", "--tasks", "50", "--speed", "20", "--port", "0"]) == 0
        out = capsys.readouterr().out
        assert re.search(r"^Dashboard: http://127\.0\.0\.1:\d+/", out, re.M)
        assert summary_rows(out) == expected_rows(seed=int(seed(out)), tasks=50)

    async def test_dashboard_acts_on_the_running_demo(self) -> None:
        """The printed URL serves the demo's queue; a task re-run there is counted once."""
        import httpx

        argv = [sys.executable, "-m", "trio_workq", "demo", "--port", "0", "--speed", "5"]
        async with trio.open_nursery() as nursery:
            process = await start_process(nursery, argv)
            reader = LineReader(process)
            line = await reader.until(re.compile(r"^Dashboard: http://127\.0\.0\.1:\d+/$"))
            async with httpx.AsyncClient(base_url=line.split()[1]) as client:
                stats = (await client.get("/api/stats")).json()
                assert stats["workers"] == 8
                failed: list[dict[str, str]] = []
                for _ in range(200):  # about one task a second ends failed at this speed
                    response = await client.get("/api/tasks", params={"status": "failed"})
                    failed = response.json()["tasks"]
                    if failed:
                        break
                    await trio.sleep(0.1)
                assert failed, "no task failed"
                response = await client.post(f"/api/tasks/{failed[0]['id']}/retry")
                assert response.status_code == 200, response.text
            process.send_signal(signal.SIGINT)
            rest = await reader.rest()
            assert await process.wait() == 0
        assert summary_totals(rest)[3] == submitted(rest)
        assert "re-run from the dashboard: 1;" in rest


class LineReader:
    """Reads a subprocess's stdout line by line (trio, so every wait has a deadline)."""

    def __init__(self, process: trio.Process) -> None:
        assert process.stdout is not None
        self._stream = process.stdout
        self._buffer = b""
        self.seen = ""

    async def until(self, pattern: re.Pattern[str]) -> str:
        """Read lines until one matches *pattern*; return it."""
        while True:
            while b"\n" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\n", 1)
                line = raw.decode()
                self.seen += line + "\n"
                if pattern.search(line):
                    return line
            chunk = await self._stream.receive_some()
            if not chunk:
                raise AssertionError(f"output ended before {pattern.pattern!r}:\n{self.seen}")
            self._buffer += chunk

    async def rest(self) -> str:
        """Everything until the end of the output (all of it, including what was seen)."""
        while chunk := await self._stream.receive_some():
            self._buffer += chunk
        self.seen += self._buffer.decode()
        self._buffer = b""
        return self.seen


async def start_process(nursery: trio.Nursery, argv: list[str]) -> trio.Process:
    """Start *argv* with piped stdout and stderr; it is killed if the test ends first."""
    run = functools.partial(
        trio.run_process, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False
    )
    process: trio.Process = await nursery.start(run)
    return process


class TestSubprocess:
    def test_demo_finishes(self) -> None:
        """python -m trio_workq demo --tasks 200 --no-dashboard: a summary of 200, no codes."""
        result = subprocess.run(
            [sys.executable, "-m", "trio_workq", *FAST_200],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        # One warning line per failed task, no traceback.
        assert len(result.stderr.splitlines()) == FAST_200_ROWS["total"][1]
        assert all(
            line.startswith("trio-workq: warning: task ") for line in result.stderr.splitlines()
        )
        assert summary_rows(result.stdout) == FAST_200_ROWS
        assert submitted(result.stdout) == 200
        # Not a terminal: plain lines only.
        assert "\x1b" not in result.stdout
        assert "\r" not in result.stdout

    def test_console_script(self) -> None:
        """The trio-workq console script is the same command line as python -m trio_workq."""
        assert SCRIPT.exists(), f"{SCRIPT} is missing: is trio_workq installed here?"
        script = subprocess.run(
            [SCRIPT, "--version"], capture_output=True, text=True, timeout=60, check=False
        )
        module = subprocess.run(
            [sys.executable, "-m", "trio_workq", "--version"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert script.returncode == module.returncode == 0
        assert script.stdout == module.stdout == f"trio-workq {version('trio_workq')}\n"

    def test_bad_argument(self) -> None:
        """A usage error from a real process: status 2, a message, no traceback."""
        result = subprocess.run(
            [sys.executable, "-m", "trio_workq", "demo", "--workers", "-2"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2
        assert "argument --workers: must be at least 1, got -2" in result.stderr
        assert "Traceback" not in result.stderr

    @pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
    async def test_signal_stops_gracefully(self, signum: signal.Signals) -> None:
        """SIGINT or SIGTERM to a running demo: graceful stop, a summary, exit status 0."""
        argv = [sys.executable, "-m", "trio_workq", "demo", "--no-dashboard", "--speed", "5"]
        async with trio.open_nursery() as nursery:
            process = await start_process(nursery, argv)
            reader = LineReader(process)
            await reader.until(re.compile(r"^Press Ctrl-C to stop\.$"))
            await trio.sleep(1)  # let tasks pile up, so there is something to drain
            process.send_signal(signum)
            output = await reader.rest()
            assert await process.wait() == 0
            assert process.stderr is not None
            err = b""
            while chunk := await process.stderr.receive_some():
                err += chunk
        assert b"Traceback" not in err
        assert all(line.startswith(b"trio-workq: warning: ") for line in err.splitlines())
        assert f"Stopping: {signum.name} received; no new tasks" in output
        completed, _, _, total = summary_totals(output)
        assert total == submitted(output) > 0
        assert completed > 0

    async def test_second_sigint_forces(self) -> None:
        """A second SIGINT while draining cancels the rest: exit status 130."""
        argv = [
            *(sys.executable, "-m", "trio_workq", "demo", "--no-dashboard"),
            *("--grace", "600", "--workers", "2"),  # a long backlog, a long drain
        ]
        async with trio.open_nursery() as nursery:
            process = await start_process(nursery, argv)
            reader = LineReader(process)
            await reader.until(re.compile(r"^Press Ctrl-C to stop\.$"))
            await trio.sleep(1)
            process.send_signal(signal.SIGINT)
            await reader.until(re.compile(r"^Draining \d+ unfinished tasks"))
            process.send_signal(signal.SIGINT)
            output = await reader.rest()
            assert await process.wait() == 130
        assert "SIGINT received: cancelling every unfinished task now." in output
        assert summary_totals(output)[3] == submitted(output)
        assert summary_totals(output)[2] > 0

    def test_closed_pipe(self) -> None:
        """`trio-workq demo | head -1`: the demo stops once the reader is gone; no traceback."""
        argv = [sys.executable, "-m", "trio_workq", "demo", "--no-dashboard", "--speed", "5"]
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
            assert process.stdout is not None
            assert process.stdout.readline().startswith(b"trio-workq demo:")
            process.stdout.close()
            _, err = process.communicate(timeout=60)
        assert process.returncode == 1
        # Nothing but the warnings of tasks that failed before the reader left.
        assert all(line.startswith(b"trio-workq: warning: task ") for line in err.splitlines())


def test_main_module(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """trio_workq/__main__.py exits with main()'s status."""
    monkeypatch.setattr(sys, "argv", ["trio-workq", "--version"])
    # Run by path: with the pytest plugin's entry point installed, pytest's assertion
    # rewriter is the package's loader, and runpy.run_module cannot get code from it.
    main_path = Path(trio_workq.__file__).parent / "__main__.py"
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(main_path), run_name="__main__")
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("trio-workq ")


def test_python_dash_m_is_the_cli() -> None:
    """`python -m trio_workq` runs the same main(): no command means help and status 2."""
    result = subprocess.run(
        [sys.executable, "-m", "trio_workq"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "usage: trio-workq" in result.stderr


def test_help_imports_no_extra() -> None:
    """`trio-workq --help` imports neither the web extra, psycopg nor the demo's workload."""
    code = (
        "import sys\n"
        "from trio_workq._cli import main\n"
        "assert main(['--help']) == 0\n"
        "print(*sorted(sys.modules), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "usage: trio-workq" in result.stdout
    loaded = set(result.stderr.split())
    assert "trio_workq._cli.worker" in loaded  # the list is complete
    heavy = {
        "trio_workq.web",
        "trio_workq._cli.demo_run",
        "trio_workq._cli.demo_workload",
        "psycopg",
        "starlette",
        "hypercorn",
    }
    assert loaded & heavy == set()
