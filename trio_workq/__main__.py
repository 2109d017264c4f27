# SPDX-License-Identifier: MIT
"""``python -m trio_workq``: the ``trio-workq`` command line."""

from __future__ import annotations

import sys

from trio_workq._cli import main  # absolute: runnable by path as well

if __name__ == "__main__":
    sys.exit(main())
