# SPDX-License-Identifier: MIT
"""Stores named by URL: ``sqlite:///…`` and ``postgresql://…``."""

from __future__ import annotations

import importlib
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import cast

from .protocol import Store, StoreError

_SQLITE_PREFIX = "sqlite:///"
_POSTGRES_SCHEMES = ("postgresql://", "postgres://")

_URL_HELP = (
    "expected sqlite:///relative/path.db, sqlite:////absolute/path.db "
    "or postgresql://user@host:port/database"
)


def store_from_url(url: str) -> Store:
    """A new, unopened store for *url*.

    ``sqlite:///tasks.db`` (relative path), ``sqlite:////var/lib/app/tasks.db``
    (absolute path), or ``postgresql://…`` / ``postgres://…`` (a libpq URL;
    needs the ``trio_workq[postgres]`` extra). Not a checkpoint; nothing is
    opened or connected yet.

    Raises:
        TypeError: If *url* is not a str.
        ValueError: If *url* names no supported store, or is malformed.
        StoreError: If the store's optional dependency is not installed.
    """
    if not isinstance(url, str):
        raise TypeError(f"a store URL must be a str, not {type(url).__name__}")
    if url.startswith("sqlite:"):
        if not url.startswith(_SQLITE_PREFIX) or len(url) == len(_SQLITE_PREFIX):
            raise ValueError(f"malformed SQLite URL {url!r}: {_URL_HELP}")
        from .sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(_POSTGRES_SCHEMES):
        try:
            module = importlib.import_module("trio_workq._stores.postgres")
        except ImportError as exc:
            raise StoreError(
                f"cannot use {_redact(url)}: PostgreSQL support needs the postgres extra "
                f"(pip install 'trio_workq[postgres]'): {exc}"
            ) from exc
        return cast("Store", module.PostgresStore(url))
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise ValueError(f"unsupported store URL {_redact(url)!r} (scheme {scheme!r}): {_URL_HELP}")


@asynccontextmanager
async def open_store_url(url: str) -> AsyncGenerator[Store, None]:
    """Open the store named by *url* for the ``async with`` block, then close it.

    Both halves block. Raises as `store_from_url`, and `StoreError` if the
    store cannot be opened.
    """
    store = store_from_url(url)
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()


def _redact(url: str) -> str:
    """*url* without a password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, at, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***{at}{host}" if ":" in credentials else url
