# SPDX-License-Identifier: MIT
"""trio_workq: an in-process task queue for Trio.

Submit async functions to a bounded pool of workers; every task has an id,
a status, an awaitable result and its own cancel scope.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._durable import DurableQueueStatistics as DurableQueueStatistics
from ._durable import DurableTaskHandle as DurableTaskHandle
from ._durable import DurableWorkQueue as DurableWorkQueue
from ._durable import StoredError as StoredError
from ._durable import StoreUnavailable as StoreUnavailable
from ._durable import open_durable_queue as open_durable_queue
from ._errors import QueueClosed as QueueClosed
from ._errors import Retry as Retry
from ._errors import TaskCancelled as TaskCancelled
from ._errors import TaskNotFound as TaskNotFound
from ._errors import TaskStateError as TaskStateError
from ._errors import TaskTimeout as TaskTimeout
from ._events import EventKind as EventKind
from ._events import EventStream as EventStream
from ._events import TaskEvent as TaskEvent
from ._events import current_task as current_task
from ._queue import QueueStatistics as QueueStatistics
from ._queue import TaskPage as TaskPage
from ._queue import WorkQueue as WorkQueue
from ._queue import open_work_queue as open_work_queue
from ._registry import task as task
from ._retry import Backoff as Backoff
from ._retry import ExponentialBackoff as ExponentialBackoff
from ._retry import FixedBackoff as FixedBackoff
from ._retry import RetryPolicy as RetryPolicy
from ._retry import exponential as exponential
from ._retry import fixed as fixed
from ._serialize import JSONSerializer as JSONSerializer
from ._serialize import PickleSerializer as PickleSerializer
from ._serialize import Serializer as Serializer
from ._sqlite import SQLiteStore as SQLiteStore
from ._store import Store as Store
from ._store import StoreDataError as StoreDataError
from ._store import StoreError as StoreError
from ._task import TaskHandle as TaskHandle
from ._task import TaskInfo as TaskInfo
from ._task import TaskStatus as TaskStatus

__all__ = [
    "Backoff",
    "DurableQueueStatistics",
    "DurableTaskHandle",
    "DurableWorkQueue",
    "EventKind",
    "EventStream",
    "ExponentialBackoff",
    "FixedBackoff",
    "JSONSerializer",
    "PickleSerializer",
    "QueueClosed",
    "QueueStatistics",
    "Retry",
    "RetryPolicy",
    "SQLiteStore",
    "Serializer",
    "Store",
    "StoreDataError",
    "StoreError",
    "StoreUnavailable",
    "StoredError",
    "TaskCancelled",
    "TaskEvent",
    "TaskHandle",
    "TaskInfo",
    "TaskNotFound",
    "TaskPage",
    "TaskStateError",
    "TaskStatus",
    "TaskTimeout",
    "WorkQueue",
    "current_task",
    "exponential",
    "fixed",
    "open_durable_queue",
    "open_work_queue",
    "task",
]


def _fixup_module_metadata() -> None:
    # Show trio_workq.X rather than trio_workq._queue.X in reprs and docs.
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("trio_workq._"):
            try:
                obj.__module__ = __name__
            except (AttributeError, TypeError):  # pragma: no cover - e.g. type aliases
                pass


_fixup_module_metadata()
del _fixup_module_metadata


if TYPE_CHECKING:
    from ._postgres import PostgresStore as PostgresStore


def __getattr__(name: str) -> Any:
    # PostgresStore is imported on first use: it needs psycopg (the postgres extra),
    # which the core does not depend on. (Not in __all__, so `import *` never needs it.)
    if name == "PostgresStore":
        try:
            from ._postgres import PostgresStore
        except ImportError as exc:
            raise ImportError(
                "trio_workq.PostgresStore needs the postgres extra "
                f"(pip install 'trio_workq[postgres]'): {exc}"
            ) from exc
        PostgresStore.__module__ = __name__
        return PostgresStore
    if name == "__version__":
        from importlib.metadata import version

        return version("trio_workq")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
