# SPDX-License-Identifier: MIT
# The runtime's services share `_Attempt` (this package's record of a task: each writes
# the private times and errors of the attempts it ends) and the queue's event source;
# events and hooks read the record through `TaskRecord`. This module waives the rule.
# pyright: reportPrivateUsage=false
"""The completer: writes how attempts ended, results in batches, with retries.

Workers hand the results of attempts that returned to the completer, which
writes all those waiting in one store call while the workers go on;
failures, cancellations and releases are written by the worker itself,
through the same retrying, lease-conditional write.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import trio

from .._core.info import MAX_ERROR_HISTORY
from .._core.registry import policy_for
from .._core.retry import RetryPolicy
from .._core.status import CANCELLED, COMPLETED, FAILED, RETRYING
from .._core.transitions import Ending, decide
from .._runtime.events import AttemptSignal, logger
from .._stores.protocol import StoreDataError, StoreError
from .attempt import _Attempt
from .errors import conversion_error, error_text
from .runtime import Runtime

R = TypeVar("R")
W = TypeVar("W")


class Completer:
    """Records outcomes: owns the results waiting to be written (``completed``)."""

    def __init__(self, rt: Runtime, retry: RetryPolicy | None) -> None:
        self._rt = rt
        self._store = rt.store
        self._retry = retry
        self._none_result = rt.serializer.dumps(None)  # encoded once: most tasks return None
        # Attempts that returned, with their serialized results, for `run` to write.
        self.completed: list[tuple[_Attempt, bytes]] = []
        self._completed_added = trio.Event()

    async def record_success(self, attempt: _Attempt, value: object) -> None:  # noqa: ASYNC910
        """Hand a returned value to the writer (or fail the task if it cannot be stored)."""
        try:
            result = self._none_result if value is None else self._rt.serializer.dumps(value)
            if not isinstance(result, bytes):  # one bad result must not fail a whole batch
                raise TypeError(f"dumps() returned {type(result).__name__}, not bytes")
        except (TypeError, ValueError) as exc:
            error = conversion_error(
                exc,
                f"the result of task {attempt.name!r} cannot be serialized by "
                f"{self._rt.serializer!r}: {exc}",
            )
            await self.record_failure(attempt, error, Ending.UNRETRYABLE)
            return
        # The recorder writes it, batched with others, while this worker goes on.
        self.completed.append((attempt, result))
        self._completed_added.set()

    async def record_failure(self, attempt: _Attempt, exc: Exception, ending: Ending) -> None:
        """Record a failed attempt as `decide` says; the store applies it (cancel wins).

        *ending* is `Ending.RAISED`, `Ending.RAISED_WHILE_CANCELLED` or
        `Ending.UNRETRYABLE`.
        """
        rt = self._rt
        attempt._last_error = exc
        attempt._errors = (*attempt._errors, exc)[-MAX_ERROR_HISTORY:]
        now = rt.now()
        status, error, retry_at = decide(
            ending,
            exc,
            attempts=attempt.attempts,
            max_attempts=attempt.max_attempts,  # the stored bound wins
            policy=policy_for(attempt.definition, self._retry),
            now=now,
        )
        if error is not exc:  # a broken backoff or retry_if failed the task
            assert error is not None
            attempt._last_error = error
            attempt._errors = (*attempt._errors[:-1], error)
        assert status is FAILED or status is RETRYING
        written = await self.write(
            self._store.fail, attempt, error_text(attempt._last_error), retry_at
        )
        if written is None:
            return
        if written is RETRYING:
            assert retry_at is not None
            logger.info(
                "task %s (%s) attempt %d failed (%r); retrying in %.3g s",
                attempt.id,
                attempt.name,
                attempt.attempts,
                exc,
                retry_at - now,
            )
            attempt._due = rt.clock.current_time() + max(retry_at - rt.now(), 0.0)
            rt.set_status(attempt, RETRYING)
            return
        if written is FAILED:
            logger.warning(
                "task %s (%s) failed after %d attempt(s)",
                attempt.id,
                attempt.name,
                attempt.attempts,
                exc_info=attempt._last_error,
            )
        # (CANCELLED: its cancellation, requested elsewhere, won over the retry.)
        attempt._finished = rt.clock.current_time()
        rt.set_status(attempt, written)
        rt.finish_waiters.finished(attempt.id)

    async def record_cancelled(self, attempt: _Attempt) -> None:
        """Write an attempt stopped by a cancel request: ``cancelled``."""
        if await self.write(self._store.finish_cancelled, attempt):
            attempt._finished = self._rt.clock.current_time()
            self._rt.set_status(attempt, CANCELLED)
            self._rt.finish_waiters.finished(attempt.id)

    async def release(self, attempt: _Attempt) -> None:
        """Give the task back to the store (``queued``, this attempt not counted).

        This is `Ending.INTERRUPTED`: shutdown interrupted the attempt.
        """
        written = await self.write(self._store.release, attempt)
        if written is CANCELLED:
            # Its cancellation, requested elsewhere, won: the store ended it cancelled.
            attempt._finished = self._rt.clock.current_time()
            self._rt.set_status(attempt, CANCELLED)
            self._rt.finish_waiters.finished(attempt.id)
        elif written is not None:  # queued again: no event says so (it is not new)
            self._rt.signal(attempt, AttemptSignal.GIVEN_BACK)

    async def release_all(self, attempts: Sequence[_Attempt]) -> None:  # noqa: ASYNC910
        """Give back claimed tasks that will not run here (concurrently: the store batches)."""
        if attempts:
            async with trio.open_nursery() as nursery:
                for attempt in attempts:
                    attempt.interrupted = True
                    nursery.start_soon(self.release, attempt)

    async def run(self) -> None:  # noqa: ASYNC910 - private; runs until cancelled
        """Write the outcomes of attempts that returned: all waiting ones in one store call."""
        batch: list[tuple[_Attempt, bytes]] = []
        try:
            while True:
                if not self.completed:
                    self._completed_added = trio.Event()
                    await self._completed_added.wait()
                batch, self.completed = self.completed, []
                await self.record_completions(batch)
                batch = []
        except BaseException:
            # Cancelled from outside: the queue writes what is waiting once every
            # worker has stopped (a shielded task may still return after this).
            self.completed[:0] = batch
            raise

    async def record_completions(self, batch: list[tuple[_Attempt, bytes]]) -> None:
        """Write the results of *batch* in one store call (one by one if one is refused)."""
        rt = self._rt
        items = [(attempt.id, attempt.attempts, result) for attempt, result in batch]
        try:
            recorded = await self._retrying_write(
                functools.partial(self._store.complete_many, rt.owner, items),
                [attempt for attempt, _ in batch],
            )
        except StoreDataError as exc:
            # Some result cannot be stored (too big, say): each alone, so that only its task fails.
            if len(batch) > 1:
                for one in batch:
                    await self.record_completions([one])
                return  # noqa: ASYNC910 - private; the write above checkpointed
            attempt = batch[0][0]
            error = StoreDataError(f"the result of task {attempt.name!r} cannot be stored: {exc}")
            await self.record_failure(attempt, error, Ending.UNRETRYABLE)
            return
        for attempt, _ in batch:
            rt.unhold(attempt)
        if recorded is None:
            for attempt, _ in batch:
                rt.signal(attempt, AttemptSignal.UNRECORDED)
            return
        now = rt.clock.current_time()
        refused: list[_Attempt] = []
        for (attempt, _), done in zip(batch, recorded, strict=True):
            if done:
                attempt._finished = now
                rt.set_status(attempt, COMPLETED)
                rt.finish_waiters.finished(attempt.id)
            else:
                refused.append(attempt)
        for attempt in refused:
            if await self._completed_by(attempt):
                # An earlier try committed, but its answer was lost (a dropped connection).
                attempt._finished = rt.clock.current_time()
                rt.set_status(attempt, COMPLETED)
                rt.finish_waiters.finished(attempt.id)
            else:
                _log_lease_lost(attempt)
                rt.signal(attempt, AttemptSignal.LOST)

    async def _completed_by(self, attempt: _Attempt) -> bool:
        """Whether the store holds *attempt*'s own completion (rare: after a refused write)."""
        try:
            row = await self._store.get(attempt.id)
        except StoreError:
            return False  # noqa: ASYNC910 - the failed call was the checkpoint
        # Only this attempt can have completed the task at this attempt number: a later
        # run needs a later claim, and a claim counts an attempt (a release, which gives
        # an attempt number back, is written instead of this attempt's result, never with it).
        return row is not None and row.status is COMPLETED and row.attempts == attempt.attempts

    async def write(
        self, method: Callable[..., Awaitable[W]], attempt: _Attempt, *extra: Any
    ) -> W | None:
        """Write an attempt's outcome; what the store returned, or None if it failed.

        A falsy answer means the lease was no longer ours (nothing recorded).
        Cancelled before the store ran the write, the attempt stays held: whoever
        unwinds (the worker, or the queue's last cleanup) gives it back then.
        """
        owner, task_id, number = self._rt.owner, attempt.id, attempt.attempts

        async def write() -> tuple[W]:
            # Boxed: a store's None ("not held") is not _retrying_write's ("gave up").
            return (await method(owner, task_id, number, *extra),)

        try:
            boxed = await self._retrying_write(write, [attempt])
        except StoreDataError as exc:
            boxed = await self._after_data_error(method, attempt, extra, exc)
        self._rt.unhold(attempt)
        if boxed is None:
            # The store kept failing (logged): its lease expires.
            self._rt.signal(attempt, AttemptSignal.UNRECORDED)
            return None
        if not boxed[0]:
            _log_lease_lost(attempt)
            self._rt.signal(attempt, AttemptSignal.LOST)
            return None
        return boxed[0]

    async def _after_data_error(
        self,
        method: Callable[..., Awaitable[W]],
        attempt: _Attempt,
        extra: tuple[Any, ...],
        exc: StoreDataError,
    ) -> tuple[W] | None:
        """After the store refused an outcome's data: fail the task with a text it holds.

        Only an error text can be refused (the other writes carry no data);
        None if even the replacement is refused (the lease then expires).
        """
        logger.error(
            "task %s (%s): the store refused its outcome: %s", attempt.id, attempt.name, exc
        )
        if method != self._store.fail:
            return None  # noqa: ASYNC910 - private; the write above checkpointed
        text = f"trio_workq.StoreDataError: the store refused this attempt's error: {exc}"
        owner, task_id, number = self._rt.owner, attempt.id, attempt.attempts

        async def write() -> tuple[W]:
            replaced = await self._store.fail(
                owner,
                task_id,
                number,
                ascii(text)[1:-1],  # plain ASCII, whatever the store's message held
                extra[1],
            )
            return (cast("W", replaced),)

        try:
            return await self._retrying_write(write, [attempt])
        except StoreDataError:
            return None  # noqa: ASYNC910 - private; the write above checkpointed

    async def _retrying_write(
        self, write: Callable[[], Awaitable[R]], attempts: Sequence[_Attempt]
    ) -> R | None:
        """``await write()``, retried while the store fails; None once retrying is pointless.

        A failing store is retried until the lease would have expired: past
        that the reaper re-queues the *attempts* anyway. A `StoreDataError`
        is raised at once: the same data fails the same way every time.
        """
        rt = self._rt
        give_up = rt.clock.current_time() + rt.lease
        delay = 0.05
        while True:
            try:
                result = await write()
            except StoreDataError:
                rt.health.ok()  # the store answered: it works
                raise
            except StoreError as exc:
                # Counted, but never raised from here: this runs in cleanup too, where
                # StoreUnavailable would cut the cleanup short.
                rt.health.failed(exc, stop=False)
                if rt.clock.current_time() + delay >= give_up:
                    for attempt in attempts:
                        logger.error(
                            "task %s (%s): could not record its outcome (%s); the store "
                            "re-queues it when its lease expires",
                            attempt.id,
                            attempt.name,
                            exc,
                        )
                    return None  # noqa: ASYNC910 - the failed call was the checkpoint
                logger.warning(
                    "store write for task(s) %s failed (%s); retrying",
                    ", ".join(attempt.id for attempt in attempts),
                    exc,
                )
                await trio.sleep(delay)
                delay = min(delay * 2, 1.0)
            else:
                rt.health.ok()
                return result


def _log_lease_lost(attempt: _Attempt) -> None:
    logger.info(
        "task %s (%s): lease lost before its outcome was recorded; another attempt owns it now",
        attempt.id,
        attempt.name,
    )
