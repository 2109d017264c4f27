# SPDX-License-Identifier: MIT
"""``python -m trio_workq``: a short demo of the queue at work."""

from __future__ import annotations

from ._demo import main

if __name__ == "__main__":
    main()
