# SPDX-License-Identifier: MIT
# The runtime's services share `_Attempt` (this package's record of a task: each writes
# the private times and errors of the attempts it ends) and the queue's event source;
# events and hooks read the record through `TaskRecord`. This module waives the rule.
# pyright: reportPrivateUsage=false
"""Intake: checks and serializes new tasks, and stores them (one commit per batch)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import trio

from .._core.errors import check_seconds
from .._core.info import NO_HEADERS
from .._core.registry import definition_for, policy_for
from .._core.retry import RetryPolicy
from .._core.status import QUEUED, SCHEDULED, EventKind
from .._core.validate import check_aware, check_name, check_priority, check_timeout
from .._stores.protocol import NewTask
from .attempt import _Attempt
from .errors import closed_error, conversion_error
from .handle import DurableTaskHandle
from .runtime import Runtime


class Intake:
    """Turns submits into stored tasks: `new_task` checks, `add_all` commits."""

    def __init__(self, rt: Runtime, retry: RetryPolicy | None) -> None:
        self._rt = rt
        self._retry = retry

    def due(self, delay: float | None, at: datetime | None) -> float:
        """The due time of a `schedule` call, on the store's clock (one of *delay* and *at*)."""
        if at is None:
            if delay is None:
                raise TypeError("schedule() takes exactly one of delay= and at=")
            return self._rt.now() + check_seconds("delay", delay)
        if delay is not None:
            raise TypeError("schedule() takes exactly one of delay= and at=")
        return check_aware(at).timestamp()

    def headers(self) -> Mapping[str, str]:
        """The headers of tasks submitted now, from the submit hooks. Not a checkpoint.

        Called in the submitting task (hooks read its context), once per
        submit call: ``submit_many``'s tasks share them.
        """
        events = self._rt.events
        return events._submit_headers() if events._submit_hooks else NO_HEADERS

    def new_task(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        name: str | None,
        priority: int,
        timeout: float | None,
        due: float | None,
        headers: Mapping[str, str] = NO_HEADERS,
    ) -> NewTask:
        """Validate and serialize a submit; raise before anything is stored."""
        if self._rt.closing:
            raise closed_error()
        kwargs: dict[str, Any] = {}
        if isinstance(fn, functools.partial):
            partial = cast("functools.partial[Awaitable[Any]]", fn)
            args = (*partial.args, *args)
            kwargs = dict(partial.keywords)
            fn = partial.func
        check_name(name)
        definition = definition_for(fn, name)
        check_priority(priority)
        timeout = check_timeout(timeout)
        payload = self._dump_arguments(definition.name, args, kwargs)
        policy = policy_for(definition, self._retry)
        return NewTask(
            name=definition.name,
            payload=payload,
            priority=priority,
            due_at=self._rt.now() if due is None else due,
            max_attempts=1 if policy is None else policy.max_attempts,
            timeout=timeout,
            status=QUEUED if due is None else SCHEDULED,
            headers=headers,
        )

    def _dump_arguments(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        if not args and not kwargs:
            return self._rt.no_arguments
        call: dict[str, Any] = {"args": list(args)}
        if kwargs:
            call["kwargs"] = kwargs
        serializer = self._rt.serializer
        try:
            return serializer.dumps(call)
        except (TypeError, ValueError) as exc:
            raise conversion_error(
                exc,
                f"the arguments of task {name!r} cannot be serialized by {serializer!r}: {exc}",
            ) from exc

    async def add(self, new: NewTask) -> DurableTaskHandle[Any]:
        """Store one task; its handle once committed. Always a checkpoint."""
        (handle,) = await self.add_all([new])
        return handle

    async def add_all(self, tasks: list[NewTask]) -> list[DurableTaskHandle[Any]]:
        """Store *tasks* in one commit; their handles. Always a checkpoint."""
        rt = self._rt
        queue = rt.queue
        announced = trio.Event()
        rt.adds_in_flight.add(announced)
        try:
            ids = await rt.store.add(tasks)
            self._announce(ids, tasks)
        finally:
            rt.adds_in_flight.discard(announced)
            announced.set()
        rt.hint()
        return [DurableTaskHandle(queue, task_id) for task_id in ids]

    def _announce(self, ids: Sequence[str], tasks: list[NewTask]) -> None:
        """Emit the submitted (or scheduled) events of tasks just stored. Not a checkpoint."""
        rt = self._rt
        queue = rt.queue
        if rt.events._hooks:
            now = rt.clock.current_time()
            for task_id, new in zip(ids, tasks, strict=True):
                record = _Attempt(
                    queue,
                    task_id,
                    new.name,
                    new.status,
                    new.priority,
                    new.max_attempts,
                    new.timeout,
                    now,
                )
                kind = EventKind.SUBMITTED
                if new.status is SCHEDULED:
                    kind = EventKind.SCHEDULED
                    record._due = now + max(new.due_at - rt.now(), 0.0)
                rt.emit(record, kind, was_running=False)
