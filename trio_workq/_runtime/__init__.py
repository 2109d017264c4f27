# SPDX-License-Identifier: MIT
"""Trio machinery both queues share: events and listeners, waiter lines, running and shutting down.

It imports only `trio_workq._core`."""
