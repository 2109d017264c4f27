# SPDX-License-Identifier: MIT
"""The package's layers: imports only point down, and the layers form no cycle.

Every module of ``trio_workq`` is imported (so none is missed or broken),
then its source is parsed and every import it holds is an edge of the
graph: top-level, inside functions (lazy) and under ``TYPE_CHECKING``, and
``importlib.import_module`` of a constant name. A type-only import still
couples the layers, so it counts.

The layers, bottom to top (`MAY_IMPORT` is the rule; ``docs/design.md``
explains it)::

    _core                                   statuses, snapshots, retry, checks
    _runtime          -> _core              events, waiters, lifecycle
    _memory           -> _core, _runtime    the in-memory queue
    _stores           -> _core              the Store protocol and stores
    _durable          -> _core, _runtime, _stores
    _open             -> all of the above   open_work_queue
    trio_workq        -> all of the above   the public API (__init__)
    prometheus, otel, web, cli, testing     anything; nothing below imports them

Violations known today are in `KNOWN_VIOLATIONS`, each with who removes it;
any other one fails the test, and so does an entry that no longer exists,
so the list only shrinks.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _ci import unavailable

import trio_workq

PACKAGE = "trio_workq"

#: The layer of each top-level part of the package (``""`` is its ``__init__``).
LAYER_OF: dict[str, str] = {
    "_core": "_core",
    "_runtime": "_runtime",
    "_memory": "_memory",
    "_stores": "_stores",
    "_durable": "_durable",
    "_open": "_open",
    "": "api",
    "prometheus": "top",
    "otel": "top",
    "web": "top",
    "cli": "top",
    "_cli": "top",
    "testing": "top",
    "__main__": "top",
}

_BELOW_OPEN = {"_core", "_runtime", "_memory", "_stores", "_durable"}

#: The layers each layer may import (its own always allowed).
MAY_IMPORT: dict[str, set[str]] = {
    "_core": set(),
    "_runtime": {"_core"},
    "_memory": {"_core", "_runtime"},
    "_stores": {"_core"},
    "_durable": {"_core", "_runtime", "_stores"},
    "_open": _BELOW_OPEN,
    "api": _BELOW_OPEN | {"_open"},
    "top": _BELOW_OPEN | {"_open", "api"},
}

#: Imports between top-level parts of the package that break the rule today,
#: and who removes them. Listed per part, not per module, so that moving code
#: inside a part (as the branches of issue 15 do) does not touch the list. An
#: import listed here is ignored by both checks; once none is left, its entry
#: must go too (the test fails on a stale entry). The lead empties the list.
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {}


def module_names() -> list[str]:
    """Every module of the package, imported (an import error fails the test)."""

    def fail(name: str) -> None:
        raise ImportError(f"cannot import {name}")

    names = [PACKAGE]
    for info in pkgutil.walk_packages(trio_workq.__path__, PACKAGE + ".", onerror=fail):
        names.append(info.name)
    for name in names:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.partition(".")[0] == PACKAGE:
                raise
            unavailable(f"{name} needs {exc.name} (an optional dependency)")
    return sorted(names)


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """Absolute names each import in *tree* refers to (modules, or module.attribute)."""
    here = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = here.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            yield target
            for alias in node.names:
                yield f"{target}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value


def import_graph(modules: list[str]) -> dict[str, set[str]]:
    """Module -> the modules of the package it imports."""
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for module in modules:
        source = sys.modules[module].__file__
        assert source is not None
        path = Path(source)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        targets: set[str] = set()
        for name in _imported_names(tree, module, path.name == "__init__.py"):
            # "from pkg import name": the submodule pkg.name if there is one, else pkg.
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name.startswith(PACKAGE) and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def part_of(module: str) -> str:
    """The top-level part of the package holding *module* (``""`` for the package itself)."""
    return module.removeprefix(PACKAGE).removeprefix(".").partition(".")[0]


def layer_of(module: str) -> str:
    part = part_of(module)
    if part not in LAYER_OF:
        pytest.fail(f"{module} is in no layer: add {part!r} to LAYER_OF in {__file__}")
    return LAYER_OF[part]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(module_names())


def _checked_edges(graph: dict[str, set[str]]) -> Iterator[tuple[str, str]]:
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if (part_of(module), part_of(target)) not in KNOWN_VIOLATIONS:
                yield module, target


def breaks_layers(module: str, target: str) -> bool:
    source, destination = layer_of(module), layer_of(target)
    return source != destination and destination not in MAY_IMPORT[source]


def package_graph(edges: Iterator[tuple[str, str]]) -> dict[str, set[str]]:
    """The graph of the top-level parts of the package, from module edges."""
    parts: dict[str, set[str]] = {}
    for module, target in edges:
        source, destination = part_of(module), part_of(target)
        parts.setdefault(source, set())
        if destination != source:
            parts[source].add(destination)
    return parts


def test_layer_rule(graph: dict[str, set[str]]) -> None:
    """Each module imports only its own layer and the layers `MAY_IMPORT` allows it."""
    violations = [
        f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})"
        for module, target in _checked_edges(graph)
        if breaks_layers(module, target)
    ]
    assert not violations, "\n".join(violations)


def test_no_cycles_between_packages(graph: dict[str, set[str]]) -> None:
    """The top-level parts of the package (``_core``, ``_memory``, ``web``, …) form no cycle."""
    found = cycles(package_graph(_checked_edges(graph)))
    assert not found, f"import cycles between {found}"


def test_known_violations_are_current(graph: dict[str, set[str]]) -> None:
    """Every entry of `KNOWN_VIOLATIONS` still has an import that breaks a rule.

    A fixed violation must leave the list, so the list only shrinks.
    """
    edges = [(module, target) for module, targets in graph.items() for target in targets]
    in_cycles = [set(component) for component in cycles(package_graph(iter(edges)))]
    stale = [
        f"{source} -> {destination} (removed by {who})"
        for (source, destination), who in KNOWN_VIOLATIONS.items()
        if not any(
            (part_of(module), part_of(target)) == (source, destination)
            and (
                breaks_layers(module, target)
                or any({source, destination} <= component for component in in_cycles)
            )
            for module, target in edges
        )
    ]
    assert not stale, "fixed: remove from KNOWN_VIOLATIONS: " + ", ".join(stale)


def test_the_graph_sees_every_kind_of_import() -> None:
    """Lazy, ``TYPE_CHECKING``, relative and ``import_module`` imports all become edges."""
    source = """
from typing import TYPE_CHECKING
import importlib
from . import sibling
from .._core import status
if TYPE_CHECKING:
    from .._memory.handle import TaskHandle
def lazy():
    import trio_workq._stores.sqlite
    importlib.import_module("trio_workq._stores.postgres")
"""
    names = set(_imported_names(ast.parse(source), "trio_workq._runtime.events", False))
    assert {
        "trio_workq._runtime.sibling",
        "trio_workq._core.status",
        "trio_workq._memory.handle.TaskHandle",
        "trio_workq._stores.sqlite",
        "trio_workq._stores.postgres",
    } <= names


def test_cycle_finder() -> None:
    """`cycles` reports each strongly connected component once, and nothing for a DAG."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert cycles({"a": {"b"}, "b": {"a", "c"}, "c": {"d"}, "d": {"c"}}) == [["a", "b"], ["c", "d"]]
