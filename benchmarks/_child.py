# SPDX-License-Identifier: MIT
"""One measurement in a fresh process: ``python -m benchmarks._child COMPARISON VARIANT``.

Prints one JSON line: ``{"status": "ok", "metrics": {...}}`` or
``{"status": "n/a", "reason": "..."}``. A failed correctness check or a
crash prints a traceback and exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import resource

from ._core import NotAvailable
from ._registry import load


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._child")
    parser.add_argument("comparison")
    parser.add_argument("variant")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    args = parser.parse_args()
    variant = load(args.comparison).variant(args.variant)
    try:
        metrics = variant.run(args.quick)
    except NotAvailable as exc:
        print(json.dumps({"status": "n/a", "reason": str(exc)}))
        return
    # ru_maxrss is in KiB on Linux.
    metrics["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"status": "ok", "metrics": metrics}))


if __name__ == "__main__":
    main()
