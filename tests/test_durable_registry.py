# SPDX-License-Identifier: MIT
# White-box: inspects and resets the private registry tables.
# pyright: reportPrivateUsage=false
"""The ``@trio_workq.task`` decorator and the registry of named tasks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import trio

import trio_workq
from trio_workq import RetryPolicy, fixed
from trio_workq._core.registry import (
    QUEUE_DEFAULT,
    _by_function,
    _by_name,
    definition_for,
    lookup,
    registered_names,
)


@pytest.fixture(autouse=True)
def _restore_registry() -> Iterator[None]:
    """Each test registers throwaway tasks: put the registry back afterwards."""
    names = dict(_by_name)
    functions = {fn: list(definitions) for fn, definitions in _by_function.items()}
    yield
    _by_name.clear()
    _by_name.update(names)
    _by_function.clear()
    _by_function.update(functions)


async def first() -> str:
    await trio.lowlevel.checkpoint()
    return "first"


async def second() -> str:
    await trio.lowlevel.checkpoint()
    return "second"


def not_async() -> None:
    """A plain function."""


async def agen() -> Any:  # an async generator function is not a task
    yield 1


class Owner:
    async def method(self) -> None:
        await trio.lowlevel.checkpoint()


def test_bare_decorator_uses_module_and_qualname() -> None:
    """@task registers under module:qualname and returns the function unchanged."""
    assert trio_workq.task(first) is first
    definition = definition_for(first, None)
    assert definition.name == f"{__name__}:first"
    assert definition.fn is first
    assert definition.retry is QUEUE_DEFAULT
    assert lookup(definition.name) == definition
    assert definition.name in registered_names()


def test_options() -> None:
    """@task(name=, retry=) stores the name and the policy."""
    policy = RetryPolicy(max_attempts=4, backoff=fixed(1))
    assert trio_workq.task(name="emails.send", retry=policy)(first) is first
    definition = definition_for(first, None)
    assert (definition.name, definition.retry) == ("emails.send", policy)
    trio_workq.task(name="emails.nope", retry=None)(second)
    assert definition_for(second, None).retry is None


def test_one_name_two_functions_is_an_error() -> None:
    """Registering a different function under a taken name raises, and changes nothing."""
    trio_workq.task(name="taken")(first)
    with pytest.raises(ValueError, match=r"'taken' is already registered to .*:first"):
        trio_workq.task(name="taken")(second)
    assert lookup("taken") is not None
    assert lookup("taken").fn is first  # type: ignore[union-attr]
    with pytest.raises(TypeError, match="is not a registered task"):
        definition_for(second, None)


def test_registering_again_replaces() -> None:
    """The same function under the same name again (a re-import) replaces the registration."""
    trio_workq.task(name="again")(first)
    policy = RetryPolicy(max_attempts=2)
    trio_workq.task(name="again", retry=policy)(first)
    assert definition_for(first, None).retry == policy
    assert [d.name for d in _by_function[first]] == ["again"]


def test_reloaded_module_replaces() -> None:
    """A new function object with the same module:qualname (a reload) takes the name over."""
    trio_workq.task(name="reloaded")(first)

    async def first_again() -> str:
        await trio.lowlevel.checkpoint()
        return "new"

    first_again.__qualname__ = first.__qualname__  # as a reloaded module's function has
    trio_workq.task(name="reloaded")(first_again)
    assert lookup("reloaded").fn is first_again  # type: ignore[union-attr]
    assert first not in _by_function


def test_one_function_several_names() -> None:
    """One function may be registered under several names; name= picks one at submit."""
    trio_workq.task(name="a")(first)
    trio_workq.task(name="b", retry=None)(first)
    assert definition_for(first, None).name == "a"
    assert definition_for(first, "b").name == "b"
    with pytest.raises(ValueError, match="is registered as 'a', 'b', not as 'c'"):
        definition_for(first, "c")


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        (not_async, "is not an async function"),
        (agen, "is not an async function"),
        (lambda: None, "a lambda cannot be registered"),
        (Owner().method, "cannot register the bound method"),
        (print, "only module-level async functions can be registered"),
        (Owner, "only module-level async functions can be registered"),
    ],
)
def test_unstorable_functions(fn: Any, match: str) -> None:
    """What another process could not import by name is refused at registration."""
    with pytest.raises(TypeError, match=match):
        trio_workq.task(fn)


def test_nested_function_is_refused() -> None:
    """A function defined inside another (a closure) cannot be registered."""

    async def nested() -> None:
        await trio.lowlevel.checkpoint()

    with pytest.raises(TypeError, match="nested in a function"):
        trio_workq.task(nested)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"name": 5}, TypeError, "name must be a str or None"),
        ({"name": "  "}, ValueError, "name must not be empty"),
        ({"retry": 3}, TypeError, "retry must be a RetryPolicy or None"),
    ],
)
def test_bad_options(kwargs: dict[str, Any], error: type, match: str) -> None:
    """Bad decorator options raise before anything is registered."""
    with pytest.raises(error, match=match):
        trio_workq.task(**kwargs)
    assert first not in _by_function


def test_lookup_of_unknown_name() -> None:
    """An unknown name has no registration."""
    assert lookup("never.registered") is None
