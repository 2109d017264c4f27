# SPDX-License-Identifier: MIT
"""Prometheus metrics: trio_workq.prometheus.instrument (the ``prometheus`` extra)."""

from __future__ import annotations

import gc
import logging

import pytest
import trio
import trio.testing
from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import trio_workq
from trio_workq.prometheus import (
    QUEUE_WAIT_BUCKETS,
    RUN_DURATION_BUCKETS,
    Instrumentation,
    instrument,
)

#: Every family instrument() exports, as the parser names them, with its type.
FAMILIES = {
    "trio_workq_tasks_submitted": "counter",
    "trio_workq_tasks_completed": "counter",
    "trio_workq_tasks_failed": "counter",
    "trio_workq_tasks_retried": "counter",
    "trio_workq_tasks_cancelled": "counter",
    "trio_workq_tasks_timed_out": "counter",
    "trio_workq_task_run_duration_seconds": "histogram",
    "trio_workq_task_queue_wait_seconds": "histogram",
    "trio_workq_tasks_queued": "gauge",
    "trio_workq_tasks_scheduled": "gauge",
    "trio_workq_tasks_retrying": "gauge",
    "trio_workq_tasks_running": "gauge",
    "trio_workq_workers_busy": "gauge",
    "trio_workq_workers": "gauge",
}

COUNTERS = ("submitted", "completed", "failed", "retried", "cancelled", "timed_out")
GAUGES = ("tasks_queued", "tasks_scheduled", "tasks_retrying", "tasks_running")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(registry: CollectorRegistry) -> Samples:
    """Expose the registry as text and parse it back: {(sample name, labels): value}."""
    text = generate_latest(registry).decode()
    return parse(text)


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def counters(samples: Samples, queue: str, task: str) -> dict[str, float | None]:
    return {
        c: value(samples, f"trio_workq_tasks_{c}_total", queue=queue, task=task) for c in COUNTERS
    }


def histogram(samples: Samples, name: str, queue: str, task: str) -> tuple[float, float]:
    """(count, sum) of one histogram series; checks that the buckets are cumulative."""
    full = f"trio_workq_{name}"
    buckets = sorted(
        (float(dict(labels)["le"]), v)
        for (sample, labels), v in samples.items()
        if sample == f"{full}_bucket" and ("queue", queue) in labels and ("task", task) in labels
    )
    counts = [v for _, v in buckets]
    assert counts == sorted(counts)
    count = value(samples, f"{full}_count", queue=queue, task=task)
    total = value(samples, f"{full}_sum", queue=queue, task=task)
    assert count is not None
    assert total is not None
    assert counts[-1] == count
    return count, total


def gauges(samples: Samples, queue: str) -> dict[str, float | None]:
    names = (*GAUGES, "workers_busy", "workers")
    return {g: value(samples, f"trio_workq_{g}", queue=queue) for g in names}


async def sleeper(seconds: float) -> None:
    await trio.sleep(seconds)


async def noop() -> None:
    await trio.lowlevel.checkpoint()


async def boom() -> None:
    await trio.lowlevel.checkpoint()
    raise ValueError("boom")


async def fail_once(attempts: list[int]) -> None:
    attempts.append(1)
    await trio.lowlevel.checkpoint()
    if len(attempts) == 1:
        raise OSError("first attempt fails")


class TestExposition:
    async def test_exposition_parses_with_every_family(self) -> None:
        """generate_latest() output parses; every documented family is there with its type."""
        registry = CollectorRegistry()
        async with trio_workq.open_work_queue(workers=3) as queue:
            instrument(queue, registry)
            await (await queue.submit(noop, name="n")).wait()
            text = generate_latest(registry).decode()
        families = {f.name: f.type for f in text_string_to_metric_families(text)}
        assert families == FAMILIES
        samples = parse(text)
        assert counters(samples, "default", "n")["completed"] == 1
        assert gauges(samples, "default")["workers"] == 3
        buckets = {
            dict(labels)["le"]
            for (name, labels) in samples
            if name == "trio_workq_task_run_duration_seconds_bucket"
        }
        assert len(buckets) == len(RUN_DURATION_BUCKETS) + 1
        assert "+Inf" in buckets

    async def test_empty_queue_exports_gauges_only(self) -> None:
        """Before any task, there are gauges and no counter series (but the families exist)."""
        registry = CollectorRegistry()
        async with trio_workq.open_work_queue(workers=2) as queue:
            instrument(queue, registry, queue_name="idle")
            samples = scrape(registry)
        assert gauges(samples, "idle") == {
            "tasks_queued": 0,
            "tasks_scheduled": 0,
            "tasks_retrying": 0,
            "tasks_running": 0,
            "workers_busy": 0,
            "workers": 2,
        }
        assert all(labels == {("queue", "idle")} for _, labels in samples)


class TestWorkload:
    async def test_counters_and_run_durations(self, autojump_clock: trio.testing.MockClock) -> None:
        """A mixed workload gives exact counter values and run-duration histograms."""
        registry = CollectorRegistry()
        retry_once = trio_workq.RetryPolicy(max_attempts=2, backoff=trio_workq.fixed(1))
        async with trio_workq.open_work_queue(workers=10) as queue:
            instrument(queue, registry, queue_name="main")
            for _ in range(3):
                await queue.submit(sleeper, 1, name="ok")
            for _ in range(2):
                await queue.submit(boom, name="boom")
            attempts: list[int] = []
            await queue.submit(fail_once, attempts, name="flaky", retry=retry_once)
            await queue.submit(sleeper, 5, name="slow", timeout=2)
            await queue.submit(sleeper, 5, name="slow_retry", timeout=1, retry=retry_once)
            victim = await queue.submit(sleeper, 100, name="victim")
            later = await queue.schedule(sleeper, 1, delay=50, name="later")
            dropped = await queue.schedule(sleeper, 1, delay=50, name="dropped")
            dropped.cancel_nowait()
            await trio.sleep(3)
            assert victim.status is trio_workq.TaskStatus.RUNNING
            victim.cancel_nowait()
            await later.wait()
            stats = queue.statistics_nowait()
            samples = scrape(registry)

        expected = {
            #             submitted completed failed retried cancelled timed_out
            "ok": (3, 3, 0, 0, 0, 0),
            "boom": (2, 0, 2, 0, 0, 0),
            "flaky": (1, 1, 0, 1, 0, 0),
            "slow": (1, 0, 1, 0, 0, 1),
            "slow_retry": (1, 0, 1, 1, 0, 2),
            "victim": (1, 0, 0, 0, 1, 0),
            "later": (1, 1, 0, 0, 0, 0),
            "dropped": (1, 0, 0, 0, 1, 0),
        }
        for task, values in expected.items():
            assert counters(samples, "main", task) == dict(zip(COUNTERS, values, strict=True)), task
        # The counters agree with the queue's own totals.
        assert sum(v[0] for v in expected.values()) == stats.submitted
        assert sum(v[1] for v in expected.values()) == stats.completed
        assert sum(v[2] for v in expected.values()) == stats.failed
        assert sum(v[4] for v in expected.values()) == stats.cancelled

        # One run-duration observation per ended attempt (a cancel before start has none).
        runs = {
            "ok": (3, 3.0),
            "boom": (2, 0.0),
            "flaky": (2, 0.0),
            "slow": (1, 2.0),
            "slow_retry": (2, 2.0),
            "victim": (1, 3.0),
            "later": (1, 1.0),
        }
        for task, (count, total) in runs.items():
            run = histogram(samples, "task_run_duration_seconds", "main", task)
            assert run == pytest.approx((count, total)), task
        # One queue-wait observation per start; ten workers, so nobody waited.
        starts = {"ok": 3, "boom": 2, "flaky": 2, "slow": 1, "slow_retry": 2, "victim": 1}
        for task, count in {**starts, "later": 1}.items():
            wait = histogram(samples, "task_queue_wait_seconds", "main", task)
            assert wait == (count, 0.0), task
        no_runs = (
            "trio_workq_task_run_duration_seconds_count",
            frozenset({("queue", "main"), ("task", "dropped")}),
        )
        assert samples[no_runs] == 0

        # A 1 s attempt lands in the le="1.0" bucket and not below it.
        bucket = "trio_workq_task_run_duration_seconds_bucket"
        assert value(samples, bucket, queue="main", task="ok", le="1.0") == 3
        assert value(samples, bucket, queue="main", task="ok", le="0.5") == 0

    async def test_queue_wait(self, autojump_clock: trio.testing.MockClock) -> None:
        """Queue wait runs from becoming queued to starting, per start."""
        registry = CollectorRegistry()
        async with trio_workq.open_work_queue(workers=1) as queue:
            instrument(queue, registry)
            await queue.submit(sleeper, 2, name="first")
            await queue.submit(sleeper, 0, name="second")  # waits 2 s for the worker
            await queue.submit(sleeper, 0, name="third")  # waits 2 s as well
        samples = scrape(registry)
        assert histogram(samples, "task_queue_wait_seconds", "default", "first") == (1, 0.0)
        for task in ("second", "third"):
            wait = histogram(samples, "task_queue_wait_seconds", "default", task)
            assert wait == pytest.approx((1, 2.0)), task
        le = {repr(b) for b in QUEUE_WAIT_BUCKETS}
        assert "2.5" in le
        assert "1.0" in le
        bucket = "trio_workq_task_queue_wait_seconds_bucket"
        assert value(samples, bucket, queue="default", task="second", le="2.5") == 1
        assert value(samples, bucket, queue="default", task="second", le="1.0") == 0

    async def test_gauges_mid_workload(self, autojump_clock: trio.testing.MockClock) -> None:
        """Gauges are read from statistics() at scrape time, also from another thread."""
        registry = CollectorRegistry()
        gate = trio.Event()

        async def blocked() -> None:
            await gate.wait()

        policy = trio_workq.RetryPolicy(max_attempts=2, backoff=trio_workq.fixed(1000))
        async with trio_workq.open_work_queue(workers=2) as queue:
            metrics = instrument(queue, registry, queue_name="busy")
            await queue.submit(boom, name="retried", retry=policy)
            await trio.testing.wait_all_tasks_blocked()
            for _ in range(2):
                await queue.submit(blocked, name="blocker")
            await trio.testing.wait_all_tasks_blocked()
            for _ in range(3):
                await queue.submit(blocked, name="waiting")
            await queue.schedule(noop, delay=100, name="later")
            expected = {
                "tasks_queued": 3,
                "tasks_scheduled": 1,
                "tasks_retrying": 1,
                "tasks_running": 2,
                "workers_busy": 2,
                "workers": 2,
            }
            assert gauges(scrape(registry), "busy") == expected
            gate.set()
            await trio.sleep(50)
            idle = gauges(scrape(registry), "busy")
            assert idle["tasks_running"] == idle["tasks_queued"] == 0
            assert idle["tasks_scheduled"] == idle["tasks_retrying"] == 1
        metrics.uninstrument()
        samples = scrape(registry)
        assert gauges(samples, "busy") == dict.fromkeys(expected)
        # Counters stay: the retried task got its last attempt during shutdown.
        assert counters(samples, "busy", "retried") == {
            "submitted": 1,
            "completed": 0,
            "failed": 1,
            "retried": 1,
            "cancelled": 0,
            "timed_out": 0,
        }
        assert counters(samples, "busy", "later")["cancelled"] == 1

    async def test_scrape_from_another_thread(self) -> None:
        """A scrape from a thread (like start_http_server's) reads the queue in its Trio thread."""
        registry = CollectorRegistry()
        gate = trio.Event()

        async def blocked() -> None:
            await gate.wait()

        async with trio_workq.open_work_queue(workers=2) as queue:
            instrument(queue, registry, queue_name="threaded")
            for _ in range(3):
                await queue.submit(blocked, name="blocked")
            await trio.testing.wait_all_tasks_blocked()
            text = await trio.to_thread.run_sync(generate_latest, registry)
            gate.set()
        samples = parse(text.decode())
        assert gauges(samples, "threaded") == {
            "tasks_queued": 1,
            "tasks_scheduled": 0,
            "tasks_retrying": 0,
            "tasks_running": 2,
            "workers_busy": 2,
            "workers": 2,
        }
        assert counters(samples, "threaded", "blocked")["submitted"] == 3

    async def test_labels_are_names_not_ids(self) -> None:
        """The task label is the task's name (default module:qualname), never its id."""
        registry = CollectorRegistry()
        async with trio_workq.open_work_queue() as queue:
            instrument(queue, registry)
            handles = [await queue.submit(noop) for _ in range(5)]
            handles += [await queue.submit(noop, name="named") for _ in range(5)]
        samples = scrape(registry)
        tasks = {dict(labels).get("task") for _, labels in samples} - {None}
        assert tasks == {f"{noop.__module__}:{noop.__qualname__}", "named"}
        assert not tasks & {h.id for h in handles}
        assert counters(samples, "default", "named")["completed"] == 5


class TestRegistries:
    async def test_two_queues_one_registry(self) -> None:
        """Two queues share a registry under different queue labels; names must not clash."""
        registry = CollectorRegistry()
        async with (
            trio_workq.open_work_queue(workers=1) as alpha,
            trio_workq.open_work_queue(workers=4) as beta,
        ):
            a = instrument(alpha, registry, queue_name="alpha")
            instrument(beta, registry, queue_name="beta")
            await (await alpha.submit(noop, name="job")).wait()
            for _ in range(3):
                await (await beta.submit(noop, name="job")).wait()
            with pytest.raises(ValueError, match=r"queue_name='alpha' is already in use"):
                instrument(beta, registry, queue_name="alpha")
            with pytest.raises(ValueError, match=r"already instrumented .* as queue_name='beta'"):
                instrument(beta, registry, queue_name="gamma")
            samples = scrape(registry)
            assert counters(samples, "alpha", "job")["completed"] == 1
            assert counters(samples, "beta", "job")["completed"] == 3
            assert gauges(samples, "alpha")["workers"] == 1
            assert gauges(samples, "beta")["workers"] == 4
            # Once alpha is uninstrumented, its name may be reused, and its counters go on.
            a.uninstrument()
            with instrument(alpha, registry, queue_name="alpha") as a2:
                await (await alpha.submit(noop, name="job")).wait()
            assert not a2.active
            samples = scrape(registry)
            assert counters(samples, "alpha", "job")["completed"] == 2
            assert gauges(samples, "alpha")["workers"] is None  # uninstrumented: no gauges

    async def test_namespaces_and_default_registry(self) -> None:
        """The namespace prefixes every name; registry=None means prometheus_client.REGISTRY."""
        registry = CollectorRegistry()
        async with trio_workq.open_work_queue() as queue:
            instrument(queue, registry, namespace="jobs")
            instrument(queue, registry)  # another namespace is another set of metrics
            await (await queue.submit(noop, name="n")).wait()
            samples = scrape(registry)
            assert value(samples, "jobs_tasks_completed_total", queue="default", task="n") == 1
            assert counters(samples, "default", "n")["completed"] == 1
            with instrument(queue, namespace="trio_workq_test_default") as metrics:
                assert metrics.registry is REGISTRY
                await (await queue.submit(noop, name="n")).wait()
                samples = scrape(REGISTRY)
            name = "trio_workq_test_default_tasks_completed_total"
            assert value(samples, name, queue="default", task="n") == 1
            assert not metrics.active

    async def test_clash_with_existing_metrics(self) -> None:
        """A registry that already has a metric of the same name is refused clearly."""
        registry = CollectorRegistry()
        Counter("trio_workq_tasks_submitted", "someone else's", registry=registry)
        async with trio_workq.open_work_queue() as queue:
            with pytest.raises(ValueError, match=r"cannot register trio_workq metrics"):
                instrument(queue, registry)
            instrument(queue, registry, namespace="mine")  # no clash there

    def test_scrape_after_the_run_ended(self) -> None:
        """Once the Trio run is over, counters stay scrapeable and the gauges are left out."""
        registry = CollectorRegistry()

        async def main() -> Instrumentation:
            async with trio_workq.open_work_queue() as queue:
                metrics = instrument(queue, registry)
                await queue.submit(noop, name="n")
            return metrics

        metrics = trio.run(main)
        assert metrics.active
        samples = scrape(registry)
        assert counters(samples, "default", "n")["completed"] == 1
        assert gauges(samples, "default")["workers"] is None


class TestArguments:
    async def test_bad_arguments(self) -> None:
        """Wrong types and bad values are rejected with clear errors."""
        registry = CollectorRegistry()
        async with trio_workq.open_work_queue() as queue:
            with pytest.raises(TypeError, match=r"queue must be a trio_workq\.TaskQueue"):
                instrument("queue", registry)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match=r"registry must be a prometheus_client\."):
                instrument(queue, {})  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="namespace must be a str"):
                instrument(queue, registry, namespace=1)  # type: ignore[arg-type]
            for bad in ("1abc", "my-app", "a b"):
                with pytest.raises(ValueError, match="namespace must be a valid Prometheus"):
                    instrument(queue, registry, namespace=bad)
            with pytest.raises(TypeError, match="queue_name must be a str"):
                instrument(queue, registry, queue_name=None)  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="queue_name must not be empty"):
                instrument(queue, registry, queue_name="")
            # None of those registered anything.
            assert list(registry.collect()) == []

    def test_outside_trio(self) -> None:
        """instrument() outside a Trio run is a RuntimeError."""

        async def make() -> trio_workq.WorkQueue:
            async with trio_workq.open_work_queue() as queue:
                return queue
            raise AssertionError("unreachable")  # pragma: no cover - for the type checkers

        queue = trio.run(make)
        with pytest.raises(RuntimeError, match="inside the Trio run"):
            instrument(queue, CollectorRegistry())


class TestLifecycle:
    async def test_uninstrument_stops_counting(self) -> None:
        """uninstrument() removes the listener (idempotently); counters keep their values."""
        registry = CollectorRegistry()
        async with trio_workq.open_work_queue() as queue:
            metrics = instrument(queue, registry)
            assert metrics.active
            assert metrics.queue is queue
            assert metrics.queue_name == "default"
            assert metrics.namespace == "trio_workq"
            assert metrics.registry is registry
            await (await queue.submit(noop, name="n")).wait()
            metrics.uninstrument()
            metrics.uninstrument()
            assert not metrics.active
            assert "detached" in repr(metrics)
            await (await queue.submit(noop, name="n")).wait()
        assert counters(scrape(registry), "default", "n")["submitted"] == 1

    async def test_a_dropped_queue_frees_its_name(self) -> None:
        """A queue dropped without uninstrument() stops being exported; its name is free again."""
        registry = CollectorRegistry()
        async with trio_workq.open_work_queue() as queue:
            instrument(queue, registry, queue_name="jobs")  # the handle is not kept
            await (await queue.submit(noop, name="n")).wait()
        del queue
        gc.collect()
        async with trio_workq.open_work_queue(workers=3) as queue:
            with instrument(queue, registry, queue_name="jobs"):
                await (await queue.submit(noop, name="n")).wait()
                samples = scrape(registry)
        assert counters(samples, "jobs", "n")["completed"] == 2
        assert gauges(samples, "jobs")["workers"] == 3

    async def test_listener_never_raises_into_the_queue(
        self, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A failure inside the metrics listener is logged; the queue and its tasks carry on."""

        def broken(self: object) -> None:
            raise RuntimeError("metrics bug")

        monkeypatch.setattr("trio_workq.prometheus._TaskSeries.__init__", broken)
        registry = CollectorRegistry()
        async with trio_workq.open_work_queue() as queue:
            instrument(queue, registry)
            handle = await queue.submit(noop, name="n")
            await handle.result()
        errors = [r for r in caplog.records if r.name == "trio_workq.prometheus"]
        assert len(errors) == 3  # submitted, started, completed
        assert errors[0].levelno == logging.ERROR
        assert errors[0].exc_info is not None
        # Nothing from the core: the listener itself swallowed the error.
        assert not [r for r in caplog.records if r.name == "trio_workq"]
