# SPDX-License-Identifier: MIT
"""``python -m trio_workq``: the ``trio-workq`` command line."""

from __future__ import annotations

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
