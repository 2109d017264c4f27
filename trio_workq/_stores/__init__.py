# SPDX-License-Identifier: MIT
"""Stores: the `Store` protocol and its row types, store URLs, SQLite, PostgreSQL, and memory."""
