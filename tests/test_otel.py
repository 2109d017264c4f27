# SPDX-License-Identifier: MIT
# White-box: checks that tracing's hook leaves the queue.
# pyright: reportPrivateUsage=false
"""OpenTelemetry spans per attempt (`trio_workq.otel`), read from the SDK's in-memory exporter."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import trio
import trio.testing
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import trio_workq
from trio_workq.otel import instrument


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@pytest.fixture(autouse=True)
def _quiet_failures(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger="trio_workq")


def attributes(span: ReadableSpan) -> dict[str, object]:
    return dict(span.attributes or {})


async def double(x: int) -> int:
    await trio.sleep(1)
    return 2 * x


async def boom() -> None:
    await trio.lowlevel.checkpoint()
    raise ValueError("boom")


async def forever() -> None:
    await trio.sleep_forever()


async def test_completed_task_gets_one_span(
    autojump_clock: trio.testing.MockClock,
    exporter: InMemorySpanExporter,
    provider: TracerProvider,
) -> None:
    async with trio_workq.open_work_queue(workers=1) as queue:
        instrument(queue, tracer_provider=provider, queue_name="mail")
        handle = await queue.submit(double, 21, name="double")
        assert await handle.result() == 42
    [span] = exporter.get_finished_spans()
    assert span.name == "trio_workq.task double"
    assert span.kind is trace.SpanKind.CONSUMER
    assert attributes(span) == {
        "trio_workq.queue": "mail",
        "trio_workq.task.id": handle.id,
        "trio_workq.task.name": "double",
        "trio_workq.task.attempt": 1,
        "trio_workq.task.status": "completed",
    }
    assert span.status.status_code is trace.StatusCode.OK
    assert span.start_time is not None
    assert span.end_time is not None
    assert span.end_time - span.start_time == pytest.approx(1e9, rel=1e-6)  # the task slept 1 s


async def test_each_attempt_is_a_span_and_errors_are_recorded(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    policy = trio_workq.RetryPolicy(max_attempts=2, backoff=trio_workq.fixed(0))
    async with trio_workq.open_work_queue(workers=1, retry=policy) as queue:
        instrument(queue, tracer_provider=provider)
        handle = await queue.submit(boom, name="boom")
        await handle.wait()
    first, second = exporter.get_finished_spans()
    assert [attributes(s)["trio_workq.task.attempt"] for s in (first, second)] == [1, 2]
    assert attributes(first)["trio_workq.task.status"] == "retrying"
    assert attributes(second)["trio_workq.task.status"] == "failed"
    for span in (first, second):
        assert span.status.status_code is trace.StatusCode.ERROR
        [event] = span.events
        assert event.name == "exception"
        assert (event.attributes or {})["exception.type"] == "ValueError"


async def test_spans_made_by_the_task_are_its_children(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    tracer = provider.get_tracer("test")

    async def traced() -> None:
        with tracer.start_as_current_span("inner"):
            await trio.lowlevel.checkpoint()

    async with trio_workq.open_work_queue(workers=2) as queue:
        instrument(queue, tracer_provider=provider)
        await (await queue.submit(traced, name="traced")).wait()
        await (await queue.submit(traced, name="traced")).wait()
    inner1, outer1, inner2, outer2 = exporter.get_finished_spans()
    assert inner1.parent is not None
    assert outer1.context is not None
    assert outer2.context is not None
    assert inner1.parent.span_id == outer1.context.span_id
    assert inner2.parent is not None
    assert inner2.parent.span_id == outer2.context.span_id
    assert outer2.parent is None  # the worker's context was restored after the first task
    assert trace.get_current_span() is trace.INVALID_SPAN


def ids(span: trace.Span | ReadableSpan) -> tuple[int, int]:
    context = span.get_span_context() if isinstance(span, trace.Span) else span.context
    assert context is not None
    return (context.trace_id, context.span_id)


def links_of(span: ReadableSpan) -> list[tuple[int, int]]:
    return [(link.context.trace_id, link.context.span_id) for link in span.links]


async def test_each_attempt_links_to_the_submitting_span(
    autojump_clock: trio.testing.MockClock,
    exporter: InMemorySpanExporter,
    provider: TracerProvider,
) -> None:
    """Every way to submit stores the submitter's context; each attempt is a root linked to it.

    Retries and a retry by hand link to the same submitter; a task submitted
    under no span gets no link. As on a durable queue, the context travels as
    headers (`TaskRecord.headers`) through the global propagator.
    """
    tracer = provider.get_tracer("app")
    policy = trio_workq.RetryPolicy(max_attempts=2, backoff=trio_workq.fixed(1))
    async with trio_workq.open_work_queue(workers=1, retry=policy) as queue:
        instrument(queue, tracer_provider=provider)
        with tracer.start_as_current_span("request") as request:
            submitted = await queue.submit(double, 1)
            nowait = queue.submit_nowait(double, 2)
            scheduled = await queue.schedule(double, 3, delay=5)
            failing = queue.schedule_nowait(boom, delay=1)
        assert set(submitted.headers) == {"traceparent"}
        plain = await queue.submit(double, 4)
        assert plain.headers == {}
        assert [await h.result() for h in (submitted, nowait, scheduled, plain)] == [2, 4, 6, 8]
        await failing.wait()
        with tracer.start_as_current_span("operator"):  # a retry by hand keeps the submitter
            await (await queue.retry(failing.id)).wait()
    by_task: dict[object, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        if span.name.startswith("trio_workq.task"):
            by_task.setdefault(attributes(span)["trio_workq.task.id"], []).append(span)
    assert [len(by_task[h.id]) for h in (submitted, nowait, scheduled, plain, failing)] == [
        1, 1, 1, 1, 3
    ]  # fmt: skip
    for handle in (submitted, nowait, scheduled, failing):
        for span in by_task[handle.id]:
            assert span.parent is None
            assert links_of(span) == [ids(request)]
            assert ids(span)[0] != ids(request)[0]
    assert links_of(by_task[plain.id][0]) == []


async def test_cancelled_running_task_ends_its_span(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    async with trio_workq.open_work_queue(workers=1) as queue:
        instrument(queue, tracer_provider=provider)
        running = await queue.submit(forever, name="forever")
        never_ran = await queue.submit(forever, name="never")
        await trio.testing.wait_all_tasks_blocked()
        never_ran.cancel_nowait()
        running.cancel_nowait()
    [span] = exporter.get_finished_spans()
    assert attributes(span)["trio_workq.task.name"] == "forever"
    assert attributes(span)["trio_workq.task.status"] == "cancelled"
    assert span.status.status_code is trace.StatusCode.UNSET


async def test_forced_shutdown_ends_spans(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    async with trio_workq.open_work_queue(workers=2, shutdown_timeout=0) as queue:
        instrument(queue, tracer_provider=provider)
        await queue.submit(forever)
        await queue.submit(forever)
        await trio.testing.wait_all_tasks_blocked()
    spans = exporter.get_finished_spans()
    assert [attributes(s)["trio_workq.task.status"] for s in spans] == ["cancelled"] * 2


async def test_uninstrument_stops_tracing(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    """Running attempts keep their span until they end; no new spans start; the listener leaves."""
    tracer = provider.get_tracer("test")

    async def traced() -> None:
        with tracer.start_as_current_span("inner"):
            await trio.lowlevel.checkpoint()

    async with trio_workq.open_work_queue(workers=1) as queue:
        with instrument(queue, tracer_provider=provider) as tracing:
            running = await queue.submit(forever)
            await trio.testing.wait_all_tasks_blocked()
        tracing.uninstrument()  # a second call does nothing
        assert exporter.get_finished_spans() == ()
        assert len(queue._hooks) == 1  # still there: one span is open
        running.cancel_nowait()
        await running.wait()
        assert len(queue._hooks) == 0
        await (await queue.submit(traced)).wait()  # same worker: its context was restored
    open_span, inner = exporter.get_finished_spans()
    assert attributes(open_span)["trio_workq.task.status"] == "cancelled"
    assert inner.name == "inner"
    assert inner.parent is None


async def test_bad_arguments(provider: TracerProvider) -> None:
    with pytest.raises(
        TypeError,
        match=r"^queue must be a trio_workq\.TaskQueue \(a WorkQueue or a DurableWorkQueue\), "
        r"not object$",
    ):
        instrument(object(), tracer_provider=provider)  # type: ignore[arg-type]
    async with trio_workq.open_work_queue(workers=1) as queue:
        with pytest.raises(TypeError, match="queue_name must be a str"):
            instrument(queue, tracer_provider=provider, queue_name=3)  # type: ignore[arg-type]
