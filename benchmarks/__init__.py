# SPDX-License-Identifier: MIT
"""trio_workq's benchmark suite: ``nox -s bench`` or ``python -m benchmarks [--quick]``.

Each comparison is a module defining ``COMPARISON``, registered in
`benchmarks._registry`; see docs/benchmarks.md for the method and the latest results.
"""
