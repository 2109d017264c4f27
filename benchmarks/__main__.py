# SPDX-License-Identifier: MIT
"""``python -m benchmarks``: run the suite (``--help`` for the options)."""

from __future__ import annotations

from ._runner import main

raise SystemExit(main())
