# SPDX-License-Identifier: MIT
# White-box in places: reads the instrumentation's hooks on the queue, and moves a task's
# owner in a MemoryStore to make a worker lose its lease.
# pyright: reportPrivateUsage=false
"""OpenTelemetry spans of durable queues (`trio_workq.otel`), across processes too.

The submitting span's context is stored with each task; the span of every
attempt, in whichever process runs it, links to it. The cross-process tests
submit here (SQLite file, PostgreSQL schema) and run the tasks in a worker
process (``tests/_otel_worker.py``) that exports its spans to a JSON file.
In-process tests run on `trio_workq.testing.MemoryStore` under
``autojump_clock`` where time matters, and on SQLite in real time.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import sys
import uuid
from collections.abc import AsyncGenerator, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import _otel_tasks as tasks
import psycopg
import pytest
import trio
import trio.testing
from _pg import PG_URL, require_postgres
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from psycopg import sql

import trio_workq
from trio_workq import DurableTaskHandle, DurableWorkQueue, EventKind, TaskEvent, TaskStatus
from trio_workq._runtime.events import AttemptSignal
from trio_workq._stores.protocol import StoreError
from trio_workq.otel import instrument
from trio_workq.testing import MemoryStore

WORKER = Path(__file__).with_name("_otel_worker.py")
ROOT = Path(trio_workq.__file__).resolve().parents[1]
ATTEMPT = "trio_workq.task "


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tasks.tracer_provider = provider
    tasks.flaky_runs.clear()
    yield provider
    tasks.tracer_provider = None
    provider.shutdown()


@pytest.fixture(autouse=True)
def _quiet_failures(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger="trio_workq")


@pytest.fixture
def context_errors(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """What OpenTelemetry logs about contexts (a failed detach): must stay empty."""
    caplog.set_level(logging.DEBUG, logger="opentelemetry.context")
    yield caplog.records
    assert [r for r in caplog.records if r.name.startswith("opentelemetry")] == []


@pytest.fixture
def pg_url() -> Iterator[str]:
    require_postgres()
    schema = f"twq_otel_{uuid.uuid4().hex[:12]}"
    yield f"{PG_URL}{'&' if '?' in PG_URL else '?'}schema={schema}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def attributes(span: ReadableSpan) -> dict[str, object]:
    return dict(span.attributes or {})


def attempts(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith(ATTEMPT)]


def links_of(span: ReadableSpan) -> list[tuple[int, int]]:
    return [(link.context.trace_id, link.context.span_id) for link in span.links]


def ids(span: trace.Span | ReadableSpan) -> tuple[int, int]:
    context = span.get_span_context() if isinstance(span, trace.Span) else span.context
    assert context is not None
    return (context.trace_id, context.span_id)


def hex_ids(span: trace.Span) -> dict[str, str]:
    trace_id, span_id = ids(span)
    return {"trace_id": f"{trace_id:032x}", "span_id": f"{span_id:016x}"}


async def stored_headers(store: trio_workq.Store, task_id: str) -> Mapping[str, str]:
    row = await store.get(task_id)
    assert row is not None
    return row.headers


async def started(queue: DurableWorkQueue) -> trio.Event:
    """An event set when the next attempt starts in *queue*."""
    event = trio.Event()

    def on_event(e: TaskEvent) -> None:
        if e.kind is EventKind.STARTED:
            event.set()

    queue.add_listener(on_event)
    await trio.lowlevel.checkpoint()
    return event


def dropped(queue: DurableWorkQueue) -> trio.Event:
    """An event set once an attempt of *queue* ended without an ending event (after its span)."""
    event = trio.Event()

    def on_attempt(signal: AttemptSignal, task: object, when: float) -> None:
        if signal is not AttemptSignal.RAN:
            event.set()

    queue.add_attempt_hook(on_attempt)
    return event


STORES = ["memory", "sqlite"]


@asynccontextmanager
async def durable(
    kind: str, tmp_path: Path, **options: Any
) -> AsyncGenerator[DurableWorkQueue, None]:
    store: trio_workq.Store | str
    store = MemoryStore() if kind == "memory" else f"sqlite:///{tmp_path}/tasks.db"
    options.setdefault("poll_interval", 0.05)
    async with trio_workq.open_durable_queue(store=store, **options) as queue:
        yield queue


# ------------------------------------------------------------------ across processes


async def check_links_across_processes(
    url: str, tmp_path: Path, exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    """Submit here under spans; a worker process runs the tasks; its spans link to ours."""
    tracer = provider.get_tracer("app")
    out = tmp_path / "worker-spans.json"
    log = tmp_path / "worker.out"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(WORKER.parent), str(ROOT), env.get("PYTHONPATH")])
    )
    with trio.fail_after(60):
        async with trio_workq.open_work_queue(store=url, workers=0, poll_interval=0.05) as queue:
            instrument(queue, tracer_provider=provider)
            with tracer.start_as_current_span("request") as request:
                one = await queue.submit(tasks.traced, 1)
                flaky = await queue.submit(tasks.flaky, "k")
            with tracer.start_as_current_span("batch") as batch:
                many = await queue.submit_many(tasks.traced, [(2,), (3,)])
            with tracer.start_as_current_span("later") as later:
                scheduled = await queue.schedule(tasks.traced, 4, delay=0.2)
            plain = await queue.submit(tasks.traced, 5)  # under no span: no link
            # open_process wants a file descriptor: a plain file, opened before the run.
            with open(log, "wb") as output:  # noqa: ASYNC230
                process = await trio.lowlevel.open_process(
                    [sys.executable, str(WORKER), url, str(out), "6"],
                    env=env,
                    stdout=output,
                    stderr=output,
                )
                try:
                    handles: list[DurableTaskHandle[Any]] = [one, flaky, *many, scheduled, plain]
                    assert [await h.result() for h in handles] == [1, "k", 2, 3, 4, 5]
                    assert await process.wait() == 0, log.read_text()
                finally:
                    if process.returncode is None:
                        process.kill()
                        with trio.move_on_after(5):
                            await process.wait()
    # The submitting process made no attempt span: only the submitting spans.
    assert sorted(s.name for s in exporter.get_finished_spans()) == ["batch", "later", "request"]
    spans: list[dict[str, Any]] = json.loads(out.read_text())
    by_task: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        if span["name"].startswith(ATTEMPT):
            by_task.setdefault(span["attributes"]["trio_workq.task.id"], []).append(span)
    expected = {
        one.id: request,
        flaky.id: request,
        many[0].id: batch,
        many[1].id: batch,
        scheduled.id: later,
        plain.id: None,
    }
    assert set(by_task) == set(expected)
    for task_id, submitter in expected.items():
        for number, span in enumerate(by_task[task_id], start=1):
            assert span["kind"] == "CONSUMER"
            assert span["parent"] is None  # a root ...
            if submitter is None:
                assert span["links"] == []
            else:
                assert span["links"] == [hex_ids(submitter)]  # ... linked to the submitter
                assert span["trace_id"] != hex_ids(submitter)["trace_id"]
            assert span["attributes"]["trio_workq.queue"] == "remote"
            assert span["attributes"]["trio_workq.task.attempt"] == number
    first, second = by_task[flaky.id]
    assert (first["attributes"]["trio_workq.task.status"], first["status"]) == ("retrying", "ERROR")
    assert (second["attributes"]["trio_workq.task.status"], second["status"]) == ("completed", "OK")
    # The task's own spans are children of its attempt's span, in the worker.
    inner = [span for span in spans if span["name"] == "inner"]
    attempt_ids = {span["span_id"]: span["trace_id"] for span in spans if span["parent"] is None}
    assert len(inner) == 5
    for span in inner:
        assert attempt_ids[span["parent"]] == span["trace_id"]


async def test_links_across_processes_sqlite(
    tmp_path: Path, exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    await check_links_across_processes(
        f"sqlite:///{tmp_path}/tasks.db", tmp_path, exporter, provider
    )


async def test_links_across_processes_postgres(
    pg_url: str, tmp_path: Path, exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    await check_links_across_processes(pg_url, tmp_path, exporter, provider)


# ------------------------------------------------------------------ in one process


@pytest.mark.parametrize("kind", STORES)
async def test_attempt_span_links_to_the_submitting_span(
    kind: str,
    tmp_path: Path,
    exporter: InMemorySpanExporter,
    provider: TracerProvider,
    context_errors: list[logging.LogRecord],
) -> None:
    tracer = provider.get_tracer("app")
    with trio.fail_after(20):
        async with durable(kind, tmp_path, workers=1) as queue:
            instrument(queue, tracer_provider=provider, queue_name="mail")
            with tracer.start_as_current_span("request") as request:
                handle = await queue.submit(tasks.traced, 21)
            # The W3C trace context (there is no baggage).
            assert set(await stored_headers(queue.store, handle.id)) == {"traceparent"}
            assert await handle.result() == 21
    inner, submitting, attempt = sorted(exporter.get_finished_spans(), key=lambda s: s.name)
    assert (inner.name, submitting.name) == ("inner", "request")
    assert attempt.name == "trio_workq.task otel.traced"
    assert attempt.kind is trace.SpanKind.CONSUMER
    assert attempt.parent is None
    assert links_of(attempt) == [ids(request)]
    assert ids(attempt)[0] != ids(request)[0]  # a trace of its own
    assert attributes(attempt) == {
        "trio_workq.queue": "mail",
        "trio_workq.task.id": handle.id,
        "trio_workq.task.name": "otel.traced",
        "trio_workq.task.attempt": 1,
        "trio_workq.task.status": "completed",
    }
    assert attempt.status.status_code is trace.StatusCode.OK
    assert inner.parent is not None
    assert inner.parent.span_id == ids(attempt)[1]


@pytest.mark.parametrize("kind", STORES)
async def test_failed_attempts_and_retries(
    kind: str, tmp_path: Path, exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    """A failed attempt records its error; a retried task gives one span per attempt."""
    tracer = provider.get_tracer("app")
    with trio.fail_after(20):
        async with durable(kind, tmp_path, workers=1) as queue:
            instrument(queue, tracer_provider=provider)
            with tracer.start_as_current_span("request") as request:
                failing = await queue.submit(tasks.boom)
                flaky = await queue.submit(tasks.flaky, "once")
            await failing.wait()
            assert await flaky.result() == "once"
    by_task: dict[object, list[ReadableSpan]] = {}
    for span in attempts(exporter):
        by_task.setdefault(attributes(span)["trio_workq.task.id"], []).append(span)
    [failed] = by_task[failing.id]
    assert attributes(failed)["trio_workq.task.status"] == "failed"
    assert failed.status.status_code is trace.StatusCode.ERROR
    [event] = failed.events
    assert event.name == "exception"
    assert (event.attributes or {})["exception.type"] == "ValueError"
    first, second = by_task[flaky.id]
    assert [attributes(s)["trio_workq.task.attempt"] for s in (first, second)] == [1, 2]
    assert attributes(first)["trio_workq.task.status"] == "retrying"
    assert first.status.status_code is trace.StatusCode.ERROR
    assert attributes(second)["trio_workq.task.status"] == "completed"
    for span in (failed, first, second):
        assert links_of(span) == [ids(request)]


@pytest.mark.parametrize("kind", STORES)
async def test_cancelled_running_task_ends_its_span(
    kind: str, tmp_path: Path, exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    with trio.fail_after(20):
        async with durable(kind, tmp_path, workers=1) as queue:
            instrument(queue, tracer_provider=provider)
            running = await started(queue)
            handle = await queue.submit(tasks.forever)
            await running.wait()
            assert await queue.cancel(handle.id)
            with pytest.raises(trio_workq.TaskCancelled):
                await handle.result()
    [span] = attempts(exporter)
    assert attributes(span)["trio_workq.task.status"] == "cancelled"
    assert span.status.status_code is trace.StatusCode.UNSET
    assert links_of(span) == []  # submitted under no span


@pytest.mark.parametrize("kind", STORES)
async def test_the_workers_context_is_restored_after_each_attempt(
    kind: str,
    tmp_path: Path,
    exporter: InMemorySpanExporter,
    provider: TracerProvider,
    context_errors: list[logging.LogRecord],
) -> None:
    """A completion is written by another task than the worker's: the worker restores first.

    A listener added before `instrument` sees, at each ``started`` event, the
    worker's context before the attempt's span is attached: no span left
    over from the attempt before (the same worker ran it).
    """
    current_at_start: list[trace.Span] = []

    def on_event(event: TaskEvent) -> None:
        if event.kind is EventKind.STARTED:
            current_at_start.append(trace.get_current_span())

    with trio.fail_after(20):
        async with durable(kind, tmp_path, workers=1) as queue:
            queue.add_listener(on_event)
            instrument(queue, tracer_provider=provider)
            for value in range(3):
                assert await (await queue.submit(tasks.traced, value)).result() == value
    assert current_at_start == [trace.INVALID_SPAN] * 3
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["inner", "trio_workq.task otel.traced"] * 3
    for inner, outer in zip(spans[::2], spans[1::2], strict=True):
        assert inner.parent is not None
        assert inner.parent.span_id == ids(outer)[1]
        assert outer.parent is None


async def test_give_back_at_the_shutdown_deadline_ends_the_span(
    autojump_clock: trio.testing.MockClock,
    exporter: InMemorySpanExporter,
    provider: TracerProvider,
    context_errors: list[logging.LogRecord],
) -> None:
    """No event announces a give-back: the span still ends, saying so, at the deadline."""
    store = MemoryStore()
    async with trio_workq.open_work_queue(store=store, workers=1, shutdown_timeout=5) as queue:
        tracing = instrument(queue, tracer_provider=provider)
        running = await started(queue)
        handle = await queue.submit(tasks.forever)
        await running.wait()
        begun = trio.current_time()
    [span] = attempts(exporter)
    assert attributes(span)["trio_workq.task.status"] == "given_back"
    assert span.status.status_code is trace.StatusCode.UNSET  # not an error: it runs again
    assert span.start_time is not None
    assert span.end_time is not None
    assert (span.end_time - span.start_time) / 1e9 == pytest.approx(5, abs=0.01)
    assert trio.current_time() - begun == pytest.approx(5, abs=0.01)
    assert tracing._open == {}
    await store.open()
    row = await store.get(handle.id)
    assert row is not None
    assert (row.status, row.attempts) == (TaskStatus.QUEUED, 0)
    await store.aclose()


async def test_lost_lease_ends_the_span(
    autojump_clock: trio.testing.MockClock,
    exporter: InMemorySpanExporter,
    provider: TracerProvider,
    context_errors: list[logging.LogRecord],
) -> None:
    store = MemoryStore()
    async with trio_workq.open_work_queue(store=store, workers=1, lease=3) as queue:
        instrument(queue, tracer_provider=provider)
        running = await started(queue)
        handle = await queue.submit(tasks.forever)
        await running.wait()
        ended = dropped(queue)
        # Another process recovered the task (as if this one had stalled past its lease).
        store._rows[int(handle.id)].owner = "another process"
        with trio.fail_after(10):
            await ended.wait()
        queue._abort()
    [span] = attempts(exporter)
    assert attributes(span)["trio_workq.task.status"] == "lease_lost"
    assert span.status.status_code is trace.StatusCode.ERROR
    assert span.status.description is not None
    assert "lease was lost" in span.status.description


async def test_an_outcome_not_recorded_ends_the_span(
    autojump_clock: trio.testing.MockClock,
    exporter: InMemorySpanExporter,
    provider: TracerProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store refuses the result until the lease would end: the span ends, as unrecorded."""
    store = MemoryStore()

    async def refuse(*args: object) -> list[bool]:
        await trio.lowlevel.checkpoint()
        raise StoreError("simulated: the store is down")

    monkeypatch.setattr(store, "complete_many", refuse)
    async with trio_workq.open_work_queue(store=store, workers=1, lease=3) as queue:
        instrument(queue, tracer_provider=provider)
        ended = dropped(queue)
        await queue.submit(tasks.sleep, 0.5)
        with trio.fail_after(10):
            await ended.wait()
        queue._abort()
    span = attempts(exporter)[0]
    assert attributes(span)["trio_workq.task.status"] == "unrecorded"
    assert span.status.status_code is trace.StatusCode.ERROR


async def test_uninstrument(
    autojump_clock: trio.testing.MockClock,
    exporter: InMemorySpanExporter,
    provider: TracerProvider,
) -> None:
    """New tasks get no headers at once; a running attempt keeps its span; then the hooks go."""
    tracer = provider.get_tracer("app")
    async with trio_workq.open_work_queue(store=MemoryStore(), workers=2) as queue:
        running = await started(queue)
        hooks = (len(queue._hooks), len(queue._attempt_hooks), len(queue._submit_hooks))
        with instrument(queue, tracer_provider=provider) as tracing:
            with tracer.start_as_current_span("request"):
                long = await queue.submit(tasks.sleep, 10)
            await running.wait()
        tracing.uninstrument()  # a second call does nothing
        assert len(queue._submit_hooks) == hooks[2]
        with tracer.start_as_current_span("request"):
            later = await queue.submit(tasks.traced, 1)
        assert await stored_headers(queue.store, later.id) == {}
        assert await later.result() == 1
        assert len(queue._hooks) == hooks[0] + 1  # still there: one span is open
        assert await long.result() == 10
        # Its end is announced by the task that wrote it, maybe after result() returned.
        with trio.fail_after(1):
            while (len(queue._hooks), len(queue._attempt_hooks)) != hooks[:2]:  # noqa: ASYNC110
                await trio.sleep(0.01)  # (no event says the hooks left)
    # The attempt that ran meanwhile got no span; its inner span has no parent.
    names = [(s.name, s.parent) for s in exporter.get_finished_spans() if s.name != "request"]
    assert names == [("inner", None), ("trio_workq.task otel.sleep", None)]


async def test_bad_arguments(tmp_path: Path, provider: TracerProvider) -> None:
    with pytest.raises(
        TypeError,
        match=r"^queue must be a trio_workq\.TaskQueue \(a WorkQueue or a DurableWorkQueue\), "
        r"not object$",
    ):
        instrument(object(), tracer_provider=provider)  # type: ignore[arg-type]
    with trio.fail_after(20):
        async with durable("sqlite", tmp_path, workers=0) as queue:
            with pytest.raises(TypeError, match="queue_name must be a str"):
                instrument(queue, tracer_provider=provider, queue_name=3)  # type: ignore[arg-type]
            assert queue._hooks == ()
            assert queue._submit_hooks == ()
            assert queue._attempt_hooks == ()


# ------------------------------------------------------------------ hostile input

SQLITE_GARBAGE = [
    "'garbage'",
    '\'{"traceparent": "00-garbage"}\'',
    '\'{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01"}\'',
    "'{\"traceparent\": 5}'",
    "'[1, 2]'",
    "'\"text\"'",
    "x'00ff'",
    "3.5",
]
PG_GARBAGE = ['\'{"traceparent": "garbage"}\'', "'[1, 2]'", '\'{"traceparent": {"a": 1}}\'']


async def run_with_stored_headers(
    url: str,
    update: str,
    exporter: InMemorySpanExporter,
    provider: TracerProvider,
    execute: Any,
) -> None:
    """Submit under a span, replace the stored headers by *update*, run: done, unlinked."""
    tracer = provider.get_tracer("app")
    with trio.fail_after(30):
        async with trio_workq.open_work_queue(store=url, workers=0) as producer:
            instrument(producer, tracer_provider=provider)
            with tracer.start_as_current_span("request"):
                handle = await producer.submit(tasks.traced, 7)
        await execute(update, int(handle.id))
        async with trio_workq.open_work_queue(store=url, workers=1, poll_interval=0.05) as queue:
            instrument(queue, tracer_provider=provider)
            assert await (await queue.get_handle(handle.id)).result() == 7
            assert (await queue.get_info(handle.id)).errors == ()  # not a corrupt row
    [span] = attempts(exporter)
    assert attributes(span)["trio_workq.task.status"] == "completed"
    assert links_of(span) == []


@pytest.mark.parametrize("value", SQLITE_GARBAGE)
async def test_garbage_headers_sqlite(
    value: str, tmp_path: Path, exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    path = tmp_path / "tasks.db"

    async def execute(update: str, task_id: int) -> None:
        def run() -> None:
            with sqlite3.connect(path) as conn:
                conn.execute(f"UPDATE tasks SET headers = {update} WHERE id = ?", (task_id,))

        await trio.to_thread.run_sync(run)

    await run_with_stored_headers(f"sqlite:///{path}", value, exporter, provider, execute)


@pytest.mark.parametrize("value", PG_GARBAGE)
async def test_garbage_headers_postgres(
    value: str, pg_url: str, exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    schema = pg_url.rpartition("schema=")[2]

    async def execute(update: str, task_id: int) -> None:
        def run() -> None:
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                statement = sql.SQL("UPDATE {} SET headers = {}::jsonb WHERE id = %s").format(
                    sql.Identifier(schema, "tasks"),
                    sql.SQL(update),  # pyright: ignore[reportArgumentType] - the test's own text
                )
                conn.execute(statement, (task_id,))

        await trio.to_thread.run_sync(run)

    await run_with_stored_headers(pg_url, value, exporter, provider, execute)


class _Choking(TextMapPropagator):
    """A propagator that fails on every call (a broken vendor propagator)."""

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        raise RuntimeError("cannot extract")

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        raise RuntimeError("cannot inject")

    @property
    def fields(self) -> set[str]:
        return set()


@pytest.fixture
def global_propagator() -> Iterator[None]:
    before = propagate.get_global_textmap()
    yield
    propagate.set_global_textmap(before)


@pytest.mark.usefixtures("global_propagator")
async def test_a_propagator_that_raises_never_stops_a_task(
    autojump_clock: trio.testing.MockClock,
    exporter: InMemorySpanExporter,
    provider: TracerProvider,
) -> None:
    """Submitting stores no headers (the hook is logged); a garbled task runs unlinked."""
    tracer = provider.get_tracer("app")
    store = MemoryStore()
    async with trio_workq.open_work_queue(store=store, workers=0) as producer:
        instrument(producer, tracer_provider=provider)
        with tracer.start_as_current_span("request"):
            stored = await producer.submit(tasks.traced, 1)
        assert await stored_headers(store, stored.id) != {}
        propagate.set_global_textmap(_Choking())
        with tracer.start_as_current_span("request"):
            unstored = await producer.submit(tasks.traced, 2)
        assert await stored_headers(store, unstored.id) == {}
    async with trio_workq.open_work_queue(store=store, workers=1) as queue:
        instrument(queue, tracer_provider=provider)
        assert (
            await (await queue.get_handle(stored.id)).result() == 1
        )  # headers not extractable now
        assert await (await queue.get_handle(unstored.id)).result() == 2
    assert [links_of(span) for span in attempts(exporter)] == [[], []]


@pytest.mark.usefixtures("global_propagator")
async def test_the_global_propagator_decides_the_headers(
    autojump_clock: trio.testing.MockClock,
    exporter: InMemorySpanExporter,
    provider: TracerProvider,
) -> None:
    """An application's propagator (here: one under other header names) is the one used."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    class Renamed(TextMapPropagator):
        inner = TraceContextTextMapPropagator()

        def extract(
            self,
            carrier: CarrierT,
            context: Context | None = None,
            getter: Getter[CarrierT] = default_getter,
        ) -> Context:
            value = getter.get(carrier, "x-trace")
            return self.inner.extract({"traceparent": value[0]} if value else {}, context)

        def inject(
            self,
            carrier: CarrierT,
            context: Context | None = None,
            setter: Setter[CarrierT] = default_setter,
        ) -> None:
            headers: dict[str, str] = {}
            self.inner.inject(headers, context)
            if "traceparent" in headers:
                setter.set(carrier, "x-trace", headers["traceparent"])

        @property
        def fields(self) -> set[str]:
            return {"x-trace"}

    propagate.set_global_textmap(Renamed())
    tracer = provider.get_tracer("app")
    store = MemoryStore()
    async with trio_workq.open_work_queue(store=store, workers=1) as queue:
        instrument(queue, tracer_provider=provider)
        with tracer.start_as_current_span("request") as request:
            handle = await queue.submit(tasks.traced, 1)
        assert set(await stored_headers(store, handle.id)) == {"x-trace"}
        await handle.result()
    [span] = attempts(exporter)
    assert links_of(span) == [ids(request)]
