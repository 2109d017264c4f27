# SPDX-License-Identifier: MIT
"""A traced worker process: ``python tests/_otel_worker.py STORE_URL OUT_FILE TASKS``.

For the cross-process tracing test (``tests/test_otel_durable.py``). It opens
a durable queue on the store, instruments it with `trio_workq.otel` into an
in-memory exporter of its own, runs tasks until *TASKS* of them have
finished (completed or failed) here, and writes every span it finished to
*OUT_FILE* as a JSON list: names, ids (hex), parent, links, attributes,
status. The test process holds the submitting spans; only the ids cross.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import _otel_tasks
import trio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import trio_workq
from trio_workq.otel import instrument


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """What the test reads of one finished span."""
    assert span.context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{span.context.trace_id:032x}",
        "span_id": f"{span.context.span_id:016x}",
        "parent": None if span.parent is None else f"{span.parent.span_id:016x}",
        "links": [
            {"trace_id": f"{link.context.trace_id:032x}", "span_id": f"{link.context.span_id:016x}"}
            for link in span.links
        ],
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
    }


async def main(url: str, tasks: int) -> list[dict[str, Any]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _otel_tasks.tracer_provider = provider
    finished = 0
    done = trio.Event()

    def on_event(event: trio_workq.TaskEvent) -> None:
        nonlocal finished
        if event.kind in (trio_workq.EventKind.COMPLETED, trio_workq.EventKind.FAILED):
            finished += 1
            if finished >= tasks:
                done.set()

    async with trio_workq.open_work_queue(store=url, workers=2, poll_interval=0.05) as queue:
        queue.add_listener(on_event)
        instrument(queue, tracer_provider=provider, queue_name="remote")
        await done.wait()
    spans = [span_record(span) for span in exporter.get_finished_spans()]
    provider.shutdown()
    return spans


def write(spans: list[dict[str, Any]], out: str) -> None:
    partial = f"{out}.partial"
    with open(partial, "w", encoding="utf-8") as file:
        json.dump(spans, file)
    os.replace(partial, out)  # the test never reads half a file


if __name__ == "__main__":
    write(trio.run(main, sys.argv[1], int(sys.argv[3])), sys.argv[2])
