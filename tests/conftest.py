# SPDX-License-Identifier: MIT
"""Every async test fails instead of hanging."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

#: Trio seconds after which a test counts as hung. Under autojump_clock a deadlocked
#: test jumps straight to its deadline, so the virtual limit can be generous.
VIRTUAL_LIMIT = 1_000_000.0
REAL_LIMIT = 60.0


def _bounded(test: Callable[..., Awaitable[None]], limit: float) -> Callable[..., Awaitable[None]]:
    @functools.wraps(test)  # keeps the signature, so fixtures still resolve
    async def bounded(*args: Any, **kwargs: Any) -> None:
        with trio.fail_after(limit):
            await test(*args, **kwargs)

    return bounded


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            virtual = "autojump_clock" in item.fixturenames
            item.obj = _bounded(item.obj, VIRTUAL_LIMIT if virtual else REAL_LIMIT)
