# SPDX-License-Identifier: MIT
"""Tools for testing code that uses trio_workq (see the "Testing your tasks" guide).

- `MemoryStore`: a durable queue in memory on trio's clock, so that under
  `trio.testing.MockClock` (pytest-trio's ``autojump_clock``) delays,
  backoffs, leases and timeouts of hours take no real time.
- `drain`: run a queue until it is idle, and count what happened.
- `assert_submitted` and `assert_not_submitted`: what was submitted.
- A pytest plugin, ``trio_workq.testing.pytest_plugin`` (registered as
  ``trio_workq``), with fixtures that give a queue per backend.

Every helper takes any queue (`WorkQueue` or `DurableWorkQueue` on any store).
"""

from __future__ import annotations

from ._asserts import assert_not_submitted as assert_not_submitted
from ._asserts import assert_submitted as assert_submitted
from ._drain import DrainResult as DrainResult
from ._drain import drain as drain
from ._store import MemoryStore as MemoryStore

__all__ = ["DrainResult", "MemoryStore", "assert_not_submitted", "assert_submitted", "drain"]

# Show trio_workq.testing.X rather than trio_workq.testing._drain.X in reprs and docs.
DrainResult.__module__ = MemoryStore.__module__ = __name__
assert_submitted.__module__ = assert_not_submitted.__module__ = drain.__module__ = __name__
