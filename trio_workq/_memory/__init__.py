# SPDX-License-Identifier: MIT
"""The in-memory queue: `WorkQueue`, `TaskHandle`, the ready set, the timer heap, kept records."""
