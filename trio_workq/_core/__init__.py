# SPDX-License-Identifier: MIT
"""The lifecycle core: statuses, task snapshots, retry policies, errors and argument checks.

It runs no trio tasks and imports nothing else of trio_workq."""
