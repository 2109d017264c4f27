# SPDX-License-Identifier: MIT
"""The one place comparisons are registered.

To add a comparison, write a module in this package that defines
``COMPARISON`` (a `Comparison`) and add its name to `MODULES`. The runner
imports every module for its description; a measurement's subprocess imports
only its own.
"""

from __future__ import annotations

import dataclasses
import importlib

from ._core import Comparison

#: Every comparison, in the order the suite runs them.
MODULES: tuple[str, ...] = (
    "noop_submit",
    "noop_nowait",
    "checkpoint_tasks",
    "delayed",
    "memory",
    "retry",
    "priorities",
    "cancellation",
    "shutdown",
    "prometheus_overhead",
    "listing",
    "fair_workers",
)


def load(name: str) -> Comparison:
    """The comparison defined by module *name*, keyed by that name."""
    if name not in MODULES:
        raise KeyError(f"unknown comparison {name!r}; known: {', '.join(MODULES)}")
    module = importlib.import_module(f"{__package__}.{name}")
    comparison: Comparison = module.COMPARISON
    return dataclasses.replace(comparison, key=name)
