# SPDX-License-Identifier: MIT
"""What the web dashboard's tests share: the XSS payloads and a quiet log.

Import ``quiet_failures`` into a test module (``from _web_helpers import
quiet_failures as quiet_failures``) to make it apply to every test there.
"""

from __future__ import annotations

import logging

import pytest

# If any of these ran in a browser, the page would set window.__xss (and show an
# <img> or a <script>); the API must hand them back as plain strings.
XSS_NAME = '<img src=x onerror="window.__xss = 1">'
XSS_ERROR = "<script>window.__xss = 2</script>"


@pytest.fixture(autouse=True)
def quiet_failures(caplog: pytest.LogCaptureFixture) -> None:
    """Keep the tracebacks of tasks that fail on purpose out of the test report."""
    caplog.set_level(logging.CRITICAL, logger="trio_workq")
