# SPDX-License-Identifier: MIT
"""Worker processes for the durable tests: ``python -m trio_workq worker durable_helper``.

Their tasks append ``EVENT KEY PID`` lines to a log file (see `durable_helper`),
which tells exactly how often each task ran and where.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import durable_helper as helper
import trio

TESTS = Path(__file__).parent


class WorkerProcesses:
    """One test's log file and the worker processes it starts on the store at *url*."""

    #: The workers' ``--poll-interval`` unless a test gives one.
    poll_interval = 0.05

    def __init__(self, tmp_path: Path, url: str) -> None:
        self.url = url
        self.log = tmp_path / "runs.log"
        self.output = tmp_path / "workers.out"
        self.output_file = open(self.output, "ab")  # noqa: SIM115 - closed by aclose()
        self.processes: list[trio.Process] = []

    def environ(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
        env[helper.LOG_ENV] = str(self.log)
        return env

    async def start_worker(self, *options: str, poll_interval: float | None = None) -> trio.Process:
        interval = self.poll_interval if poll_interval is None else poll_interval
        command = [
            sys.executable,
            "-m",
            "trio_workq",
            "worker",
            "durable_helper",
            "--store",
            self.url,
            "--poll-interval",
            str(interval),
            *options,
        ]
        process = await trio.lowlevel.open_process(
            command, env=self.environ(), stdout=self.output_file, stderr=subprocess.STDOUT
        )
        self.processes.append(process)
        return process

    def runs(self) -> list[tuple[str, int, int]]:
        entries: list[tuple[str, int, int]] = helper.read_log(str(self.log))
        return entries

    async def wait_for_log(
        self, event: str, count: int, *, pid: int | None = None, within: float = 30
    ) -> None:
        """Wait for *count* log lines of *event* (written by process *pid*, if given)."""
        with trio.fail_after(within):
            while True:  # another process writes the log: poll it
                if sum(1 for e, _, p in self.runs() if e == event and pid in (None, p)) >= count:
                    return
                await trio.sleep(0.02)

    async def stop(self, process: trio.Process, signum: int = signal.SIGTERM) -> int:
        process.send_signal(signum)
        with trio.fail_after(20):
            return await process.wait()

    async def aclose(self) -> None:
        """Kill the workers still running and reap them (a failed test leaves some)."""
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            for process in self.processes:
                if process.returncode is None:
                    process.kill()
                await process.wait()
        self.output_file.close()

    def worker_output(self) -> str:
        return self.output.read_text() if self.output.exists() else ""
