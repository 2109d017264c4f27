# SPDX-License-Identifier: MIT
"""The durable queue: `DurableWorkQueue` on a `Store`, the task registry, serializers."""
