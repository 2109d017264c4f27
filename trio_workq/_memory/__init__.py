# SPDX-License-Identifier: MIT
"""The in-memory queue: `WorkQueue`, `MemoryTaskHandle`, the ready set, the timer heap, kept records."""
