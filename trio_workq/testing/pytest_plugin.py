# SPDX-License-Identifier: MIT
"""trio_workq's pytest plugin: a queue per backend for your tests.

Installed with trio_workq as a ``pytest11`` entry point named as this
module, so pytest loads it by itself; where plugin autoloading is off, load
it with ``-p trio_workq.testing.pytest_plugin`` (``-p
no:trio_workq.testing.pytest_plugin`` disables it). It does nothing unless a
test asks for one of its fixtures (it only adds its options and a marker):

- ``work_queue``: an open queue (pytest-trio runs the async fixture in the
  test's ``trio.run``), on the backend of ``workq_backend``.
- ``workq_backend``: the backend's name; a test that uses it, directly or
  through ``work_queue``, runs once per selected backend: ``memory``
  (`trio_workq.WorkQueue`), ``memorystore`` (a durable queue on
  `trio_workq.testing.MemoryStore`), ``sqlite`` (in the test's
  ``tmp_path``) and ``postgres`` (a schema of its own, dropped after).
- ``workq_options``: the keyword arguments ``work_queue`` passes to
  `trio_workq.open_work_queue` (none; override the fixture to change them).
- ``work_queue_factory``: ``factory(**options)`` opens more queues on the
  test's backend (``async with factory() as queue``); durable ones share
  the test's store, as processes share a database.

Select the backends with ``--workq-backends=memory,sqlite`` or the
``workq_backends`` ini option (default: ``memory,memorystore,sqlite``), and
for one test with the ``workq_backends(...)`` marker. ``postgres`` needs
``--workq-postgres-url`` (default: the ``TRIO_WORKQ_POSTGRES_URL``
environment variable) and the ``postgres`` extra. A test that uses
``autojump_clock`` runs only on ``memory`` and ``memorystore``: the SQLite
and PostgreSQL stores work in threads, which race a virtual clock.
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Final, cast

import pytest

from .. import TaskQueue, open_work_queue
from ._store import MemoryStore

#: Every backend, in the order tests run on them.
BACKENDS: Final = ("memory", "memorystore", "sqlite", "postgres")
#: The backends a test runs on unless told otherwise.
DEFAULT_BACKENDS: Final = "memory,memorystore,sqlite"
#: The backends that can run under a virtual clock (``autojump_clock``).
VIRTUAL_TIME_BACKENDS: Final = frozenset({"memory", "memorystore"})
#: The environment variable holding the default ``--workq-postgres-url``.
POSTGRES_URL_VARIABLE: Final = "TRIO_WORKQ_POSTGRES_URL"

#: The type of the ``work_queue_factory`` fixture.
QueueFactory = Callable[..., AbstractAsyncContextManager[TaskQueue]]

_SELECTED: Final = pytest.StashKey[tuple[str, ...]]()
_POSTGRES_URL: Final = pytest.StashKey["str | None"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--workq-backends``, ``--workq-postgres-url`` and the ``workq_backends`` ini option."""
    group = parser.getgroup("trio_workq", "trio_workq's queue fixtures")
    group.addoption(
        "--workq-backends",
        dest="workq_backends",
        default=None,
        metavar="NAMES",
        help=(
            "comma-separated backends for the work_queue fixture: "
            f"{', '.join(BACKENDS)} (default: the workq_backends ini option)"
        ),
    )
    group.addoption(
        "--workq-postgres-url",
        dest="workq_postgres_url",
        default=None,
        metavar="URL",
        help=(
            "libpq URL of the PostgreSQL database for the postgres backend; each test "
            f"gets a schema of its own (default: ${POSTGRES_URL_VARIABLE})"
        ),
    )
    parser.addini(
        "workq_backends",
        "comma-separated backends for trio_workq's work_queue fixture",
        default=DEFAULT_BACKENDS,
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker; check the options (a bad one is a usage error)."""
    config.addinivalue_line(
        "markers",
        "workq_backends(*names): run this test's work_queue only on these trio_workq backends",
    )
    option: str | None = config.getoption("workq_backends")
    where = "--workq-backends"
    if option is None:
        option = str(config.getini("workq_backends"))
        where = "the workq_backends ini option"
    selected = _parse_backends(option, where)
    url: str | None = config.getoption("workq_postgres_url") or os.environ.get(
        POSTGRES_URL_VARIABLE
    )
    if "postgres" in selected:
        _check_postgres(url)
    config.stash[_SELECTED] = selected
    config.stash[_POSTGRES_URL] = url


def _parse_backends(option: str, where: str) -> tuple[str, ...]:
    names = [name.strip() for name in option.split(",") if name.strip()]
    if not names:
        raise pytest.UsageError(f"{where} names no backend; choose from {', '.join(BACKENDS)}")
    unknown = [name for name in names if name not in BACKENDS]
    if unknown:
        raise pytest.UsageError(
            f"{where}: unknown trio_workq backend(s) {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(BACKENDS)}"
        )
    return tuple(dict.fromkeys(names))  # in the given order, once each


def _check_postgres(url: str | None) -> None:
    if not url:
        raise pytest.UsageError(
            "the postgres trio_workq backend needs a database: pass --workq-postgres-url "
            f"or set ${POSTGRES_URL_VARIABLE}"
        )
    if not url.startswith(("postgresql://", "postgres://")):
        raise pytest.UsageError(f"--workq-postgres-url must be a postgresql:// URL, got {url!r}")
    if "schema=" in url.partition("?")[2]:
        raise pytest.UsageError(
            "--workq-postgres-url must not name a schema: each test gets a schema of its own"
        )
    if importlib.util.find_spec("psycopg") is None:
        raise pytest.UsageError(
            "the postgres trio_workq backend needs psycopg: pip install 'trio_workq[postgres]'"
        )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test that uses ``workq_backend`` (or ``work_queue``) once per backend."""
    if "workq_backend" not in metafunc.fixturenames:
        return
    for parametrize in metafunc.definition.iter_markers("parametrize"):
        names = parametrize.args[0] if parametrize.args else parametrize.kwargs.get("argnames", "")
        if "workq_backend" in (names.split(",") if isinstance(names, str) else names):
            return  # the test chose its backends itself
    selected: tuple[str, ...] = metafunc.config.stash[_SELECTED]
    backends = list(selected)
    why = [f"selected: {', '.join(selected)}"]
    only = metafunc.definition.get_closest_marker("workq_backends")
    if only is not None:
        wanted = _parse_backends(",".join(only.args), "the workq_backends marker")
        backends = [name for name in backends if name in wanted]
        why.append(f"the workq_backends marker allows {', '.join(wanted)}")
    if "autojump_clock" in metafunc.fixturenames:
        backends = [name for name in backends if name in VIRTUAL_TIME_BACKENDS]
        why.append("autojump_clock allows memory, memorystore")
    if backends:
        metafunc.parametrize("workq_backend", backends, indirect=True)
    else:
        reason = f"no trio_workq backend fits this test ({'; '.join(why)})"
        skipped = pytest.param(None, marks=pytest.mark.skip(reason=reason), id="no-backend")
        metafunc.parametrize("workq_backend", [skipped], indirect=True)


@pytest.fixture
def workq_backend(request: pytest.FixtureRequest) -> str:
    """The name of the backend this test runs on (parametrized: see the module)."""
    backend = getattr(request, "param", None)
    if backend not in BACKENDS:
        raise pytest.UsageError(
            f"workq_backend is parametrized by trio_workq's plugin; got {backend!r}, "
            f"expected one of {', '.join(BACKENDS)}"
        )
    return str(backend)


@pytest.fixture
def workq_options(workq_backend: str) -> dict[str, Any]:
    """Keyword arguments for `trio_workq.open_work_queue` in ``work_queue``: none.

    Override it in a conftest.py (it may use ``workq_backend``: some
    options apply to one kind of queue only).
    """
    return {}


@pytest.fixture
def work_queue_factory(
    workq_backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[QueueFactory]:
    """``factory(**options)``: open a queue on this test's backend (``async with``).

    Durable queues opened this way share the test's store. The options are
    `trio_workq.open_work_queue`'s.
    """
    with _store_target(workq_backend, tmp_path, request.config) as target:

        @asynccontextmanager
        async def factory(**options: Any) -> AsyncGenerator[TaskQueue]:
            if target is not None:
                options["store"] = target
            # Either overload, by the options: the type is the union of both.
            opening = cast("AbstractAsyncContextManager[TaskQueue]", open_work_queue(**options))
            async with opening as queue:
                yield queue

        yield factory


@pytest.fixture
async def work_queue(
    work_queue_factory: QueueFactory, workq_options: dict[str, Any]
) -> AsyncIterator[TaskQueue]:
    """An open queue on this test's backend, shut down after the test.

    Async: it needs pytest-trio (``trio_mode = true``, or the test marked
    ``@pytest.mark.trio``).
    """
    async with work_queue_factory(**workq_options) as queue:
        yield queue


@contextmanager
def _store_target(backend: str, tmp_path: Path, config: pytest.Config) -> Generator[Any]:
    """What ``open_work_queue(store=...)`` takes for *backend* (``None``: in memory)."""
    if backend == "memory":
        yield None
    elif backend == "memorystore":
        yield MemoryStore()
    elif backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'workq.db'}"
    else:
        url = config.stash[_POSTGRES_URL]
        if url is None:  # selected by a marker only, or parametrized by the test
            _check_postgres(url)
        assert url is not None
        schema = f"workq_test_{uuid.uuid4().hex[:16]}"
        try:
            yield f"{url}{'&' if '?' in url else '?'}schema={schema}"
        finally:
            _drop_schema(url, schema)


def _drop_schema(url: str, schema: str) -> None:
    # Imported here: psycopg is optional, and loading the plugin must not import it.
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
