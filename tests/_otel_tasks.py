# SPDX-License-Identifier: MIT
"""Tasks of the tracing tests on durable queues (``tests/test_otel_durable.py``; not collected).

Registered under ``otel.*`` names, so that the test process and a worker
process (``tests/_otel_worker.py``) find the same functions.
"""

from __future__ import annotations

import trio
from opentelemetry import trace

import trio_workq
from trio_workq import RetryPolicy, fixed

#: Where `traced` gets its tracer (the global provider when None). Set by the test or worker.
tracer_provider: trace.TracerProvider | None = None

#: Runs of `flaky` so far in this process, by key.
flaky_runs: dict[str, int] = {}


@trio_workq.task(name="otel.traced")
async def traced(value: int) -> int:
    """Open a span of its own (a child of the attempt's span), and return *value*."""
    tracer = trace.get_tracer("otel-tests", tracer_provider=tracer_provider)
    with tracer.start_as_current_span("inner"):
        await trio.lowlevel.checkpoint()
    return value


@trio_workq.task(name="otel.flaky", retry=RetryPolicy(max_attempts=2, backoff=fixed(0.01)))
async def flaky(key: str) -> str:
    """Fail the first time it runs for *key* in this process, then return *key*."""
    await trio.lowlevel.checkpoint()
    flaky_runs[key] = flaky_runs.get(key, 0) + 1
    if flaky_runs[key] == 1:
        raise ValueError(f"first run of {key}")
    return key


@trio_workq.task(name="otel.boom", retry=None)
async def boom() -> None:
    await trio.lowlevel.checkpoint()
    raise ValueError("boom")


@trio_workq.task(name="otel.forever", retry=None)
async def forever() -> None:
    await trio.sleep_forever()


@trio_workq.task(name="otel.sleep", retry=None)
async def sleep(seconds: float) -> float:
    await trio.sleep(seconds)
    return seconds
