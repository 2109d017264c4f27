# SPDX-License-Identifier: MIT
"""The demo behind ``python -m trio_workq``."""

from __future__ import annotations

import subprocess
import sys

import pytest
import trio.testing

from trio_workq import _demo


async def test_demo_output(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo runs every feature it advertises and reports the expected totals."""
    _demo._tries.clear()
    await _demo.demo()
    out = capsys.readouterr().out
    assert "24 pages fetched, total 30000; 3 needed retries" in out
    assert "reminder (delayed 0.3 s) -> 9900" in out
    assert "slow task with timeout=0.1 -> failed (TaskTimeout(" in out
    assert "cancelled task -> cancelled" in out
    assert "shut down: completed=25 failed=1 cancelled=1" in out


def test_python_dash_m() -> None:
    """``python -m trio_workq`` exits 0 and prints the summary."""
    result = subprocess.run(
        [sys.executable, "-m", "trio_workq"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "shut down: completed=25" in result.stdout
