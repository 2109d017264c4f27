# SPDX-License-Identifier: MIT
"""The one rule for tests that need something this machine may lack."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(message: str) -> NoReturn:
    """Skip the test, or fail it when ``CI`` is set (CI must not hide a missing service)."""
    if os.environ.get("CI"):
        pytest.fail(message + "; CI must provide them")
    pytest.skip(message)
