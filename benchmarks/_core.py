# SPDX-License-Identifier: MIT
"""What a comparison module declares, and the helpers its variants share."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter, process_time
from typing import Literal

#: What one run of a variant measured: metric name -> value.
Metrics = dict[str, float]


class CheckFailed(Exception):
    """A correctness check inside a benchmark failed: its numbers mean nothing."""


class NotAvailable(Exception):
    """The variant cannot run against this code base yet (reported as "n/a")."""


def check(condition: bool, message: str) -> None:
    """Raise `CheckFailed` unless *condition* holds (unlike ``assert``, never optimised out)."""
    if not condition:
        raise CheckFailed(message)


@dataclass(frozen=True)
class Variant:
    """One contender in a comparison.

    ``run(quick)`` runs in a fresh process, does the work (small when *quick*),
    checks that it was done right and returns its metrics.
    """

    key: str
    label: str
    run: Callable[[bool], Metrics]


@dataclass(frozen=True)
class Column:
    """A metric shown in the comparison's table (median, then min-max over repetitions)."""

    metric: str
    header: str
    digits: int = 3


@dataclass(frozen=True)
class Target:
    """A number the issue asks for, or (with *limit* None) a ratio worth reporting.

    With a *reference*, the value is the paired ratio: for every repetition
    ``variant's metric / reference's metric`` from that same repetition, then
    the median of those. Without one, the value is the variant's median.
    """

    label: str
    variant: str
    metric: str
    reference: str | None = None
    op: Literal["<=", ">="] = "<="
    limit: float | None = None
    unit: str = ""

    def met(self, value: float) -> bool:
        assert self.limit is not None
        return value <= self.limit if self.op == "<=" else value >= self.limit

    def describe_limit(self) -> str:
        if self.limit is None:
            return f"no target; {self.unit}" if self.unit else "no target"
        unit = f" {self.unit}" if self.unit else ""
        return f"target {'≤' if self.op == '<=' else '≥'} {self.limit:,}{unit}"


@dataclass(frozen=True)
class Comparison:
    """Variants measured side by side: alternated within each repetition.

    *reference* names the variant every other one is divided by (paired, per
    repetition) on *ratio_metric* in the table's ratio column. *max_reps* caps
    the repetitions of a comparison whose numbers do not vary between runs.
    """

    title: str
    about: str
    variants: tuple[Variant, ...]
    columns: tuple[Column, ...]
    reference: str | None = None
    ratio_metric: str | None = None
    targets: tuple[Target, ...] = ()
    max_reps: int | None = None
    key: str = field(default="", compare=False)  # set by the registry: the module's name

    def variant(self, key: str) -> Variant:
        for variant in self.variants:
            if variant.key == key:
                return variant
        raise KeyError(f"{self.key} has no variant {key!r}")


# ------------------------------------------------------------ in-process helpers


@dataclass(frozen=True)
class Elapsed:
    """Seconds of wall time and of this process's CPU time over one interval."""

    wall: float
    cpu: float


class Stopwatch:
    """Starts at creation; `elapsed` reads wall time (`time.perf_counter`) and CPU time.

    CPU time (`time.process_time`) leaves out the moments other processes held
    the CPU, so on a shared machine it is the steadier number for work that
    never waits; the ratios use wall time, as the method says.
    """

    def __init__(self) -> None:
        self._wall = perf_counter()
        self._cpu = process_time()

    def elapsed(self) -> Elapsed:
        return Elapsed(perf_counter() - self._wall, process_time() - self._cpu)


def check_tally(tally: itertools.count[int], expected: int, what: str) -> None:
    """Check that jobs ticked *tally* (``tally.__next__``) exactly *expected* times.

    Every job in every variant ticks once (a C-level counter, ~30 ns), so each
    benchmark checks that every task really ran. Read a tally only once.
    """
    ran = next(tally)
    check(ran == expected, f"{what}: {ran} of {expected} jobs ran")


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The value below which *fraction* of *sorted_values* lie (nearest rank)."""
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)
