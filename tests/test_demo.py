# SPDX-License-Identifier: MIT
# White-box: checks that the demo's private tally stays bounded.
# pyright: reportPrivateUsage=false
"""The demo behind ``trio-workq demo``, run in-process under a mock clock."""

from __future__ import annotations

import io
import itertools
import re
import signal
from collections import Counter

import attrs
import pytest
import trio
import trio.testing
from _demo_helpers import expected_final, summary_rows

from trio_workq import RetryPolicy, TaskStatus, fixed, open_work_queue
from trio_workq._cli.demo_run import DemoConfig, DemoResult, Tally, run_demo, summary_table
from trio_workq._cli.demo_workload import Job, Planned, Workload, perform

COMPLETED = TaskStatus.COMPLETED
FAILED = TaskStatus.FAILED
CANCELLED = TaskStatus.CANCELLED


def check_summary(output: str, result: DemoResult) -> None:
    """The table matches the result, every row adds up, and the totals are the column sums."""
    rows = summary_rows(output)
    totals = rows.pop("total")
    assert set(rows) == set(result.final)
    for name, (completed, failed, cancelled, total) in rows.items():
        assert completed + failed + cancelled == total
        assert (completed, failed, cancelled) == tuple(
            result.final[name][status] for status in (COMPLETED, FAILED, CANCELLED)
        )
    assert totals == tuple(sum(column) for column in zip(*rows.values(), strict=True))
    assert totals[3] == result.submitted
    assert f"Summary: {result.submitted} tasks in " in output


class Output(io.StringIO):
    """The demo's output, which a test can wait on."""

    def __init__(self) -> None:
        super().__init__()
        self._written = trio.Event()

    def write(self, text: str) -> int:
        count = super().write(text)
        self._written.set()
        self._written = trio.Event()
        return count

    async def wait_for(self, text: str) -> None:
        while text not in self.getvalue():
            await self._written.wait()


#: Trio seconds after which a demo run counts as hung (mock clock: fails fast in real time).
RUN_LIMIT = 600


async def run_bounded(config: DemoConfig, out: io.StringIO) -> DemoResult:
    """Run the demo, failing the test if it does not end within RUN_LIMIT."""
    with trio.fail_after(RUN_LIMIT):
        return await run_demo(config, out)


async def run_in_background(
    nursery: trio.Nursery, config: DemoConfig, out: Output
) -> list[DemoResult]:
    """Start the demo; return (once its signal handling is up) a list that gets its result."""
    results: list[DemoResult] = []

    async def run() -> None:
        results.append(await run_bounded(config, out))

    nursery.start_soon(run)
    await out.wait_for("Press Ctrl-C to stop.")
    return results


class TestWorkload:
    def test_same_seed_same_jobs(self) -> None:
        """A seed fixes the whole stream of jobs, pauses included."""
        first = list(itertools.islice(Workload(7), 500))
        assert first == list(itertools.islice(Workload(7), 500))
        assert first != list(itertools.islice(Workload(8), 500))

    def test_mix(self) -> None:
        """Every kind arrives; some tasks are delayed, cancelled, timed, and end each way."""
        plans = [planned for _, planned in itertools.islice(Workload(1), 2000)]
        assert {p.job.kind for p in plans} == {kind for kind, _ in Workload.KINDS}
        assert {p.expected for p in plans} == {COMPLETED, FAILED, CANCELLED}
        assert any(p.delay is not None for p in plans)
        assert any(p.cancel_after is not None for p in plans)
        assert any(p.job.hangs and p.timeout is not None for p in plans)
        assert len({p.priority for p in plans}) > 3
        retried = [p for p in plans if p.job.failures and p.expected is COMPLETED]
        assert retried

    def test_speed_scales_time(self) -> None:
        """--speed divides every duration, delay, timeout and pause."""
        slow = list(itertools.islice(Workload(3), 200))
        fast = list(itertools.islice(Workload(3, speed=4), 200))
        for (slow_pause, slow_plan), (fast_pause, fast_plan) in zip(slow, fast, strict=True):
            assert fast_pause == pytest.approx(slow_pause / 4)
            assert fast_plan.job.duration == pytest.approx(slow_plan.job.duration / 4)
            for field in ("delay", "timeout", "cancel_after"):
                slow_value = getattr(slow_plan, field)
                fast_value = getattr(fast_plan, field)
                assert (slow_value is None) == (fast_value is None)
                if slow_value is not None:
                    assert fast_value == pytest.approx(slow_value / 4)

    def test_cancellations_come_before_the_end(self) -> None:
        """The operator cancels a task before it could finish, so the outcome is certain."""
        for _, planned in itertools.islice(Workload(5), 3000):
            if planned.cancel_after is not None:
                end = planned.delay if planned.delay is not None else planned.job.duration
                assert planned.cancel_after < end

    @pytest.mark.parametrize(
        ("planned", "expected"),
        [
            (Planned(Job("a", "x", 1.0)), COMPLETED),
            (Planned(Job("a", "x", 1.0), cancel_after=0.5), CANCELLED),
            (Planned(Job("a", "x", 1.0, failures=1)), FAILED),
            (Planned(Job("a", "x", 1.0, failures=1, hangs=True), timeout=2.0), FAILED),
        ],
    )
    def test_expected_without_retry(self, planned: Planned, expected: TaskStatus) -> None:
        """Without a retry policy any failed attempt ends the task."""
        assert planned.expected is expected

    def test_expected_with_retry(self) -> None:
        """Retried errors succeed while attempts remain; others fail at once."""
        policy = RetryPolicy(max_attempts=3, retry_on=OSError)
        job = Job("a", "x", 1.0, error=OSError)
        assert Planned(attrs.evolve(job, failures=2), retry=policy).expected is COMPLETED
        assert Planned(attrs.evolve(job, failures=3), retry=policy).expected is FAILED
        wrong_kind = attrs.evolve(job, failures=1, error=ValueError)
        assert Planned(wrong_kind, retry=policy).expected is FAILED

    def test_job_repr(self) -> None:
        """The dashboard shows a job as a short call, not its script."""
        assert repr(Job("send_email", "a@example.org", 0.1)) == "send_email('a@example.org')"


class TestRun:
    @pytest.mark.parametrize("seed", [1, 2, 3])
    async def test_finite_run_matches_the_scripts(
        self, seed: int, autojump_clock: trio.testing.MockClock
    ) -> None:
        """With --tasks, every task reaches the final status its script leads to."""
        out = Output()
        config = DemoConfig(seed=seed, tasks=300, dashboard=False)
        result = await run_bounded(config, out)
        assert result.exit_status == 0
        assert result.submitted == 300
        assert result.final == expected_final(seed, 300)
        output = out.getvalue()
        check_summary(output, result)
        assert "all 300 tasks finished" in output
        assert f"seed: {seed}." in output
        assert "\x1b" not in output
        assert "\r" not in output

    async def test_feeds_the_queue_at_the_rate(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Arrivals follow --rate and --speed: 200 tasks at 10/s take about 20 s."""
        start = trio.current_time()
        await run_bounded(DemoConfig(seed=4, tasks=200, dashboard=False), io.StringIO())
        slow = trio.current_time() - start
        start = trio.current_time()
        await run_bounded(DemoConfig(seed=4, tasks=200, dashboard=False, speed=10), io.StringIO())
        fast = trio.current_time() - start
        assert 10 < slow < 40
        assert fast == pytest.approx(slow / 10, rel=0.2)

    async def test_duration_stops_gracefully(self, autojump_clock: trio.testing.MockClock) -> None:
        """--duration stops intake, the queue drains, and the summary adds up."""
        out = Output()
        start = trio.current_time()
        result = await run_bounded(DemoConfig(seed=1, duration=20, dashboard=False), out)
        elapsed = trio.current_time() - start
        assert result.exit_status == 0
        assert 20 <= elapsed <= 20 + 10  # at most the grace period after the duration
        output = out.getvalue()
        assert "Stopping: ran for 20 s; no new tasks" in output
        assert output.startswith("trio-workq demo: 8 workers, for 20 s, seed 1, speed 1x\n")
        assert result.submitted > 100
        check_summary(output, result)

    @pytest.mark.parametrize(
        ("tasks", "duration", "extent"),
        [
            (None, None, "until stopped"),
            (None, 2.5, "for 2.5 s"),
            (3, None, "3 tasks"),
            (3, 60, "3 tasks (at most 60 s)"),
        ],
    )
    async def test_header_says_how_long_the_run_lasts(
        self,
        tasks: int | None,
        duration: float | None,
        extent: str,
        autojump_clock: trio.testing.MockClock,
    ) -> None:
        """The first line names the run's end: its tasks, its duration, or a signal."""
        out = Output()
        config = DemoConfig(seed=2, workers=3, tasks=tasks, duration=duration, dashboard=False)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_bounded, config, out)
            await out.wait_for("\n")
            nursery.cancel_scope.cancel()
        assert (
            out.getvalue().splitlines()[0]
            == f"trio-workq demo: 3 workers, {extent}, seed 2, speed 1x"
        )

    @pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
    async def test_signal_stops_gracefully(
        self, signum: signal.Signals, autojump_clock: trio.testing.MockClock
    ) -> None:
        """The first SIGINT/SIGTERM stops intake and drains; exit status 0."""
        out = Output()
        async with trio.open_nursery() as nursery:
            results = await run_in_background(nursery, DemoConfig(seed=2, dashboard=False), out)
            await trio.sleep(10)
            signal.raise_signal(signum)
        [result] = results
        assert result.exit_status == 0
        output = out.getvalue()
        assert f"Stopping: {signum.name} received; no new tasks" in output
        assert "Draining" in output
        check_summary(output, result)
        # A drain runs what was queued: nothing was cut short by the stop.
        assert "stopped at once" not in output

    async def test_second_signal_stops_at_once(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A second signal during the drain cancels every unfinished task; exit 128 + signal."""
        out = Output()
        config = DemoConfig(seed=2, dashboard=False, grace=1000)
        async with trio.open_nursery() as nursery:
            results = await run_in_background(nursery, config, out)
            await trio.sleep(10)
            signal.raise_signal(signal.SIGINT)
            await out.wait_for("Draining")
            start = trio.current_time()
            signal.raise_signal(signal.SIGTERM)
        [result] = results
        assert trio.current_time() - start < 1  # not the 1000 s grace period
        assert result.exit_status == 128 + signal.SIGTERM
        output = out.getvalue()
        assert "SIGTERM received: cancelling every unfinished task now." in output
        assert "SIGINT received, then stopped at once." in output
        check_summary(output, result)
        assert summary_rows(output)["total"][2] > 0  # something was cancelled

    async def test_grace_period_bounds_the_drain(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """After --grace seconds the drain cancels what is left (exports take seconds)."""
        out = Output()
        config = DemoConfig(seed=2, dashboard=False, grace=0.5, workers=2)
        async with trio.open_nursery() as nursery:
            results = await run_in_background(nursery, config, out)
            await trio.sleep(10)
            start = trio.current_time()
            signal.raise_signal(signal.SIGINT)
        [result] = results
        assert trio.current_time() - start <= 0.5 + 0.01
        assert result.exit_status == 0
        check_summary(out.getvalue(), result)

    async def test_plain_progress_lines(self, autojump_clock: trio.testing.MockClock) -> None:
        """Off a terminal, progress is a plain line every few seconds, without control codes."""
        out = Output()
        await run_bounded(DemoConfig(seed=1, duration=12, dashboard=False), out)
        output = out.getvalue()
        progress = re.findall(r"^ *\d+\.\ds: \d+/8 running, \d+ queued, .* retrying$", output, re.M)
        assert len(progress) >= 2
        assert "\x1b" not in output
        assert "\r" not in output

    async def test_live_progress_line(self, autojump_clock: trio.testing.MockClock) -> None:
        """On a terminal, one progress line is redrawn in place and erased before other text."""
        out = Output()
        result = await run_bounded(DemoConfig(seed=1, duration=3, dashboard=False, live=True), out)
        output = out.getvalue()
        assert output.count("\r\x1b[2K") > 5
        # Every redraw erases the line first; text lines never start mid-progress.
        for line in output.split("\n"):
            assert "\r" not in line or line.startswith("\r\x1b[2K")
        check_summary(output.replace("\r\x1b[2K", "\n"), result)

    async def test_closed_output_stops_the_run(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A reader that goes away (broken pipe) stops an endless run at once; status 1."""

        class ClosedAfter(io.StringIO):
            def __init__(self, lines: int) -> None:
                super().__init__()
                self.lines = lines

            def write(self, text: str) -> int:
                self.lines -= 1
                if self.lines < 0:
                    raise BrokenPipeError(32, "Broken pipe")
                return super().write(text)

        out = ClosedAfter(4)
        result = await run_bounded(DemoConfig(seed=1, dashboard=False), out)
        assert result.exit_status == 1
        assert "Summary" not in out.getvalue()

    async def test_missing_web_extra(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without the web extra the demo says how to get it, and runs nothing."""
        import sys

        from trio_workq._cli.demo_run import DemoError

        monkeypatch.setitem(sys.modules, "trio_workq.web", None)
        out = Output()
        with pytest.raises(DemoError, match=r"pip install 'trio_workq\[web\]'.*--no-dashboard"):
            await run_bounded(DemoConfig(seed=1, tasks=5), out)
        assert out.getvalue() == ""


class TestTally:
    async def test_counts_a_rerun_once(self, autojump_clock: trio.testing.MockClock) -> None:
        """A finished task re-run from the dashboard counts once, by its latest status."""
        tally = Tally(retained=100)
        job = Job("charge_card", "order-1", 0.1, failures=1, error=ValueError)
        async with open_work_queue(workers=1) as queue:
            queue.add_listener(tally)
            handle = await queue.submit(perform, job, name="charge_card")
            await handle.wait()
            assert tally.final == {"charge_card": Counter({FAILED: 1})}
            queue.retry_nowait(handle.id)  # what the dashboard's retry button does
            await handle.wait()
        assert handle.status is COMPLETED
        assert tally.final == {"charge_card": Counter({COMPLETED: 1})}
        assert tally.finished() == tally.accepted == 1
        assert (tally.reruns, tally.retries) == (1, 0)

    async def test_counts_retries_and_timeouts(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Retried attempts and timed-out attempts are counted; a task counts once."""
        tally = Tally(retained=100)
        policy = RetryPolicy(max_attempts=3, backoff=fixed(1))
        async with open_work_queue(workers=2) as queue:
            queue.add_listener(tally)
            flaky = Job("sync", "w", 0.1, failures=2, error=ConnectionError)
            await queue.submit(perform, flaky, name="sync", retry=policy)
            hung = Job("charge", "o", 0.1, failures=3, hangs=True)
            await queue.submit(perform, hung, name="charge", timeout=1, retry=policy)
        assert tally.final == {
            "sync": Counter({COMPLETED: 1}),
            "charge": Counter({FAILED: 1}),
        }
        assert (tally.accepted, tally.retries, tally.timeouts, tally.reruns) == (2, 4, 3, 0)

    async def test_a_rerun_does_not_count_its_old_timeout(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A re-run's event carries the timeout that ended the task before: counted once."""
        tally = Tally(retained=100)
        hung = Job("charge_card", "order-1", 0.1, failures=1, hangs=True)
        async with open_work_queue(workers=1) as queue:
            queue.add_listener(tally)
            handle = await queue.submit(perform, hung, name="charge_card", timeout=1)
            await handle.wait()
            assert (tally.timeouts, handle.status) == (1, FAILED)
            queue.retry_nowait(handle.id)  # the dashboard's retry button; this attempt succeeds
            await handle.wait()
        assert handle.status is COMPLETED
        assert (tally.timeouts, tally.reruns, tally.retries) == (1, 1, 0)
        assert tally.final == {"charge_card": Counter({COMPLETED: 1})}

    async def test_remembers_only_what_the_queue_retains(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Memory for re-runs is bounded like the queue's records: only those can be re-run."""
        tally = Tally(retained=2)
        async with open_work_queue(workers=1, max_retained=2) as queue:
            queue.add_listener(tally)
            handles = [
                await queue.submit(perform, Job("a", str(n), 0.1, failures=1), name="a")
                for n in range(3)
            ]
            await handles[-1].wait()
            queue.retry_nowait(handles[-1].id)
            await handles[-1].wait()
        assert tally.final == {"a": Counter({FAILED: 2, COMPLETED: 1})}
        assert tally.reruns == 1
        assert len(tally._final_of) == 2


class TestConfig:
    @pytest.mark.parametrize(
        "changes",
        [
            {"workers": 0},
            {"tasks": 0},
            {"duration": 0},
            {"rate": 0},
            {"speed": -1},
            {"grace": -1},
            {"port": 65536},
            {"port": -1},
        ],
    )
    def test_rejects_bad_values(self, changes: dict[str, float]) -> None:
        """Bad options fail when the config is built, before anything runs."""
        with pytest.raises(ValueError, match=f"'{next(iter(changes))}' must be"):
            DemoConfig(seed=1, **changes)  # type: ignore[arg-type]


def test_summary_table() -> None:
    """A row per task name (sorted), a column per final status, and totals."""
    table = summary_table(
        {
            "send_email": Counter({COMPLETED: 120, FAILED: 2}),
            "charge_card": Counter({COMPLETED: 9, CANCELLED: 1}),
        }
    )
    assert table == (
        "task         completed  failed  cancelled  total\n"
        "charge_card          9       0          1     10\n"
        "send_email         120       2          0    122\n"
        "total              129       2          1    132"
    )
