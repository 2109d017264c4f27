# SPDX-License-Identifier: MIT
"""The interface trio_workq's integrations use: hooks, the records they read, wall time.

`add_hook` / `remove_hook` and the records' ``last_error``, ``queued_time`` and
``started_time`` are internal but stable: `trio_workq.prometheus`,
`trio_workq.otel` and the dashboard rely on them, on either queue. SQLite
tests use the real clock (the writer thread and autojump do not mix).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_workq
from trio_workq import EventKind, RetryPolicy, TaskEvent, TaskStatus, fixed
from trio_workq._runtime.events import AttemptSignal

LIMIT = 20  # seconds: a bound for each test that touches SQLite


_runs: dict[str, int] = {}  # attempts per key (durable arguments are copies)


@trio_workq.task(name="hooks.flaky", retry=RetryPolicy(max_attempts=2, backoff=fixed(0)))
async def fails_once(key: str) -> str:
    """Fails its first attempt for *key* (in this process), then succeeds."""
    _runs[key] = _runs.get(key, 0) + 1
    await trio.lowlevel.checkpoint()
    if _runs[key] == 1:
        raise OSError("first attempt fails")
    return "ok"


# (kind, id, name, status, attempts, last_error, queued_time, started_time, when, was_running)
Seen = tuple[
    EventKind, str, str, TaskStatus, int, "BaseException | None", float, "float | None", float, bool
]


def _recorder(seen: list[Seen]) -> Callable[[EventKind, Any, float, bool], None]:
    def hook(kind: EventKind, task: Any, when: float, was_running: bool) -> None:
        seen.append(
            (
                kind,
                task.id,
                task.name,
                task.status,
                task.attempts,
                task.last_error,
                task.queued_time,
                task.started_time,
                when,
                was_running,
            )
        )

    return hook


@asynccontextmanager
async def _open(backend: str, tmp_path: Path) -> AsyncGenerator[Any, None]:
    if backend == "memory":
        async with trio_workq.open_work_queue(
            workers=1, retry=RetryPolicy(max_attempts=2, backoff=fixed(0))
        ) as queue:
            yield queue
    else:
        store = trio_workq.SQLiteStore(tmp_path / "tasks.db")
        async with trio_workq.open_work_queue(
            store=store, workers=1, poll_interval=0.05, serializer=trio_workq.PickleSerializer()
        ) as queue:
            yield queue


BACKENDS = ["memory", "sqlite"]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_hooks_read_the_same_record_fields_on_both_queues(
    backend: str, tmp_path: Path
) -> None:
    """A hook gets the bare facts and reads the record's current fields, on either queue."""
    seen: list[Seen] = []
    with trio.fail_after(LIMIT):
        async with _open(backend, tmp_path) as queue:
            queue.add_hook(_recorder(seen))
            handle = await queue.submit(fails_once, f"fields-{backend}", name="hooks.flaky")
            assert await handle.result() == "ok"
    kinds = [entry[0] for entry in seen]
    assert kinds == [
        EventKind.SUBMITTED,
        EventKind.STARTED,
        EventKind.RETRYING,
        EventKind.STARTED,
        EventKind.COMPLETED,
    ]
    assert {entry[1] for entry in seen} == {handle.id}
    assert {entry[2] for entry in seen} == {"hooks.flaky"}
    submitted, first, retrying, second, completed = seen
    assert submitted[3] is TaskStatus.QUEUED
    assert (submitted[5], submitted[7], submitted[9]) == (None, None, False)
    # Started: the attempt starts after the task became queued, by the event's time.
    assert (first[3], first[4]) == (TaskStatus.RUNNING, 1)
    assert first[7] is not None
    assert first[6] <= first[7] <= first[8]
    # Retrying ends the running attempt and carries its error.
    assert (retrying[3], retrying[9]) == (TaskStatus.RETRYING, True)
    assert "first attempt fails" in str(retrying[5])
    assert retrying[7] == first[7]
    assert (second[3], second[4]) == (TaskStatus.RUNNING, 2)
    assert second[7] is not None
    assert first[7] < second[7] <= second[8]
    assert (completed[3], completed[9]) == (TaskStatus.COMPLETED, True)
    # Still the latest failed attempt's (a durable record reads it back as a StoredError).
    assert "first attempt fails" in str(completed[5])
    assert completed[7] == second[7]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_remove_hook(backend: str, tmp_path: Path) -> None:
    """A removed hook is called no more; removing one that was never added is a ValueError."""
    seen: list[Seen] = []
    hook = _recorder(seen)
    with trio.fail_after(LIMIT):
        async with _open(backend, tmp_path) as queue:
            queue.add_hook(hook)
            queue.remove_hook(hook)
            await (await queue.submit(fails_once, f"remove-{backend}")).result()
            with pytest.raises(ValueError, match=r"^<function .*> is not a hook of this queue$"):
                queue.remove_hook(hook)
    assert seen == []


@pytest.mark.parametrize("backend", BACKENDS)
async def test_wall_time(backend: str, tmp_path: Path) -> None:
    """`wall_time` maps the run's trio times to aware UTC, as `TaskEvent.timestamp` does."""
    events: list[TaskEvent] = []
    with trio.fail_after(LIMIT):
        async with _open(backend, tmp_path) as queue:
            queue.add_listener(events.append)
            now = queue.wall_time(trio.current_time())
            assert now.tzinfo is timezone.utc
            assert abs(now - datetime.now(timezone.utc)) < timedelta(seconds=1)
            later = queue.wall_time(trio.current_time() + 60)
            assert timedelta(seconds=59) < later - now < timedelta(seconds=61)
            await (await queue.submit(fails_once, f"wall-{backend}")).result()
    assert events
    for event in events:
        assert event.timestamp == queue.wall_time(event.time)


async def test_durable_queue_serializer(tmp_path: Path) -> None:
    """`DurableWorkQueue.serializer` is the serializer it stores arguments with."""
    serializer = trio_workq.PickleSerializer()
    store = trio_workq.SQLiteStore(tmp_path / "tasks.db")
    with trio.fail_after(LIMIT):
        async with trio_workq.open_work_queue(store=store, workers=0, serializer=serializer) as q:
            assert q.serializer is serializer
            handle = await q.submit(fails_once, "stored")
            row = await q.store.get(handle.id)
            assert row is not None
            assert q.serializer.loads(row.payload) == {"args": ["stored"]}


# --- submit hooks: headers stored with each task -----------------------------------

_caller: ContextVar[str] = ContextVar("caller", default="nobody")


@trio_workq.task(name="hooks.echo")
async def echo(value: str) -> str:
    await trio.lowlevel.checkpoint()
    return value


@pytest.mark.parametrize("backend", BACKENDS)
async def test_submit_hooks_give_each_task_its_headers(
    backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Called in the submitting task; merged (a later hook wins); broken hooks are left out.

    The headers are on the record hooks read (`TaskRecord.headers`) when the
    task starts: a durable queue read them back from its store.
    """
    caplog.set_level(logging.ERROR, logger="trio_workq")
    at_start: dict[str, Mapping[str, str]] = {}

    def on_change(kind: EventKind, task: Any, when: float, was_running: bool) -> None:
        if kind is EventKind.STARTED:
            at_start[task.id] = dict(task.headers)

    def broken() -> Mapping[str, str]:
        raise RuntimeError("hook bug")

    calls: list[int] = []

    def counted() -> Mapping[str, str]:
        calls.append(1)
        return {"a": "last"}

    hooks: list[Callable[[], Any]] = [
        lambda: {"who": _caller.get(), "a": "first"},
        broken,
        lambda: {"a": "second", "n": 5},  # not str to str
        lambda: None,
        lambda: ["not", "a", "mapping"],
        counted,
    ]
    with trio.fail_after(LIMIT):
        async with _open(backend, tmp_path) as queue:
            queue.add_hook(on_change)
            for hook in hooks:
                queue.add_submit_hook(hook)
            _caller.set("submitter")
            first = await queue.submit(echo, "1")
            scheduled = await queue.schedule(echo, "2", delay=0)
            assert [await h.result() for h in (first, scheduled)] == ["1", "2"]
            # Without hooks, tasks get none.
            for hook in hooks:
                queue.remove_submit_hook(hook)
            plain = await queue.submit(echo, "3")
            assert await plain.result() == "3"
    expected = {"who": "submitter", "a": "last"}
    assert at_start == {first.id: expected, scheduled.id: expected, plain.id: {}}
    assert calls == [1, 1]
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 6  # three broken hooks, twice each
    assert all(message.startswith("event listener <function") for message in logged)


async def test_submit_many_collects_headers_once(tmp_path: Path) -> None:
    calls: list[int] = []

    def hook() -> Mapping[str, str]:
        calls.append(1)
        return {"k": "v"}

    with trio.fail_after(LIMIT):
        async with _open("sqlite", tmp_path) as queue:
            queue.add_submit_hook(hook)
            handles = await queue.submit_many(echo, [("a",), ("b",)])
            for handle in handles:
                row = await queue.store.get(handle.id)
                assert row is not None
                assert row.headers == {"k": "v"}
    assert calls == [1]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_remove_submit_and_attempt_hooks(backend: str, tmp_path: Path) -> None:
    def hook() -> None:
        return None

    with trio.fail_after(LIMIT):
        async with _open(backend, tmp_path) as queue:
            with pytest.raises(TypeError, match="hook must be callable"):
                queue.add_submit_hook("not callable")
            with pytest.raises(TypeError, match="hook must be callable"):
                queue.add_attempt_hook(None)
            with pytest.raises(ValueError, match=r"^<function .*> is not a submit hook of this"):
                queue.remove_submit_hook(hook)
            with pytest.raises(ValueError, match=r"^<function .*> is not an attempt hook of this"):
                queue.remove_attempt_hook(hook)
            queue.add_submit_hook(hook)
            queue.remove_submit_hook(hook)
            with pytest.raises(ValueError, match="is not a submit hook"):
                queue.remove_submit_hook(hook)


# --- attempt hooks: where a worker's part of an attempt ends --------------------------


async def test_attempt_hooks_on_a_durable_queue(tmp_path: Path) -> None:
    """RAN comes in the worker's task, before the outcome (which another task may announce)."""
    seen: list[tuple[str, str, trio.lowlevel.Task]] = []

    def on_change(kind: EventKind, task: Any, when: float, was_running: bool) -> None:
        seen.append((kind.value, task.id, trio.lowlevel.current_task()))

    def on_attempt(signal: AttemptSignal, task: Any, when: float) -> None:
        seen.append((signal.value, task.id, trio.lowlevel.current_task()))

    with trio.fail_after(LIMIT):
        async with _open("sqlite", tmp_path) as queue:
            queue.add_hook(on_change)
            queue.add_attempt_hook(on_attempt)
            handle = await queue.submit(fails_once, "attempt-hooks")
            assert await handle.result() == "ok"
    kinds = [kind for kind, _, _ in seen]
    assert kinds == ["submitted", "started", "ran", "retrying", "started", "ran", "completed"]
    _, (_, _, worker1), ran1, _, (_, _, worker2), ran2, completed = seen
    assert ran1[2] is worker1
    assert ran2[2] is worker2
    assert completed[2] is not worker2  # the completer writes results in batches


async def test_memory_queue_sends_no_attempt_signals() -> None:
    signals: list[AttemptSignal] = []
    async with trio_workq.open_work_queue(workers=1) as queue:
        queue.add_attempt_hook(lambda signal, task, when: signals.append(signal))
        await (await queue.submit(echo, "x")).result()
    assert signals == []
