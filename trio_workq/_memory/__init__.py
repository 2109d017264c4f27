# SPDX-License-Identifier: MIT
"""The in-memory queue: `WorkQueue`, `MemoryTaskHandle`, ready set, timer heap, kept records."""
