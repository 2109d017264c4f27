# SPDX-License-Identifier: MIT
"""trio_workq: an in-process task queue for Trio.

Submit async functions to a bounded pool of workers; every task has an id,
a status, an awaitable result and its own cancel scope.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._core.errors import QueueClosed as QueueClosed
from ._core.errors import Retry as Retry
from ._core.errors import TaskCancelled as TaskCancelled
from ._core.errors import TaskNotFound as TaskNotFound
from ._core.errors import TaskStateError as TaskStateError
from ._core.errors import TaskTimeout as TaskTimeout
from ._core.info import TaskInfo as TaskInfo
from ._core.info import TaskPage as TaskPage
from ._core.registry import task as task
from ._core.retry import Backoff as Backoff
from ._core.retry import ExponentialBackoff as ExponentialBackoff
from ._core.retry import FixedBackoff as FixedBackoff
from ._core.retry import RetryPolicy as RetryPolicy
from ._core.retry import exponential as exponential
from ._core.retry import fixed as fixed
from ._core.stats import QueueStatistics as QueueStatistics
from ._core.status import EventKind as EventKind
from ._core.status import TaskStatus as TaskStatus
from ._durable.queue import DurableTaskHandle as DurableTaskHandle
from ._durable.queue import DurableWorkQueue as DurableWorkQueue
from ._durable.queue import StoredError as StoredError
from ._durable.queue import StoreUnavailable as StoreUnavailable
from ._durable.queue import open_durable_queue as open_durable_queue
from ._durable.serialize import JSONSerializer as JSONSerializer
from ._durable.serialize import PickleSerializer as PickleSerializer
from ._durable.serialize import Serializer as Serializer
from ._memory.handle import MemoryTaskHandle as MemoryTaskHandle
from ._memory.queue import WorkQueue as WorkQueue
from ._open import open_work_queue as open_work_queue
from ._runtime.api import TaskHandle as TaskHandle
from ._runtime.api import TaskQueue as TaskQueue
from ._runtime.events import EventStream as EventStream
from ._runtime.events import TaskEvent as TaskEvent
from ._runtime.events import current_task as current_task
from ._stores.protocol import Store as Store
from ._stores.protocol import StoreDataError as StoreDataError
from ._stores.protocol import StoreError as StoreError
from ._stores.sqlite import SQLiteStore as SQLiteStore

__all__ = [
    "Backoff",
    "DurableTaskHandle",
    "DurableWorkQueue",
    "EventKind",
    "EventStream",
    "ExponentialBackoff",
    "FixedBackoff",
    "JSONSerializer",
    "MemoryTaskHandle",
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
    "TaskQueue",
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
    # Show trio_workq.X rather than trio_workq._memory.queue.X in reprs and docs.
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
    from ._stores.postgres import PostgresStore as PostgresStore


def __getattr__(name: str) -> Any:
    # PostgresStore is imported on first use: it needs psycopg (the postgres extra),
    # which the core does not depend on. (Not in __all__, so `import *` never needs it.)
    if name == "PostgresStore":
        try:
            from ._stores.postgres import PostgresStore
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
