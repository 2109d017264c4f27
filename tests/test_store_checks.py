# SPDX-License-Identifier: MIT
"""The argument checks all three stores share (trio_workq/_stores/checks.py).

The contract suite (tests/test_store_contract.py) checks them through each
store; these pin the edges that suite does not reach: which ids parse, and
the store-specific limits passed as parameters.
"""

from __future__ import annotations

import math

import pytest

from trio_workq._core.status import TaskStatus
from trio_workq._stores.checks import (
    INT32_MAX,
    INT64_MAX,
    check_int,
    check_new_task,
    check_seconds,
    parse_id,
)
from trio_workq._stores.protocol import NewTask


@pytest.mark.parametrize(
    ("task_id", "number"),
    [
        ("1", 1),
        (str(INT64_MAX), INT64_MAX),
        (str(INT64_MAX + 1), None),
        ("0", None),
        ("01", None),
        ("-1", None),
        ("+1", None),
        (" 1", None),
        ("", None),
        ("\u0661", None),  # a digit, but not an ASCII one
        ("1" * 20, None),
    ],
)
def test_which_ids_parse(task_id: str, number: int | None) -> None:
    """Only the decimal form of a positive bigint names a row; anything else names none."""
    assert parse_id(task_id) == number


def test_an_id_must_be_a_str() -> None:
    with pytest.raises(TypeError, match="task_id must be a str, not int"):
        parse_id(1)


def test_the_int_limit_is_the_stores() -> None:
    """PostgreSQL's int4 columns pass a lower maximum; the message names the range."""
    assert check_int("attempt", INT32_MAX, minimum=1, maximum=INT32_MAX) == INT32_MAX
    with pytest.raises(ValueError, match=f"attempt must be between 1 and {INT32_MAX}, got"):
        check_int("attempt", INT32_MAX + 1, minimum=1, maximum=INT32_MAX)
    with pytest.raises(TypeError, match="attempt must be an int, not bool"):
        check_int("attempt", True, minimum=1, maximum=INT32_MAX)


def test_max_attempts_follows_the_store_limit() -> None:
    task = NewTask("job", b"[]", 0, 0.0, INT32_MAX + 1, None, TaskStatus.QUEUED)
    assert check_new_task(task, max_attempts=INT64_MAX) is task
    with pytest.raises(ValueError, match="max_attempts must be between"):
        check_new_task(task, max_attempts=INT32_MAX)


def test_priority_spans_bigint() -> None:
    for priority in (-INT64_MAX - 1, INT64_MAX):
        task = NewTask("job", b"[]", priority, 0.0, 1, None, TaskStatus.QUEUED)
        assert check_new_task(task, max_attempts=INT32_MAX) is task


def test_seconds_allow_infinity_only_when_asked() -> None:
    """A wait may be endless; a lease or timeout may not."""
    assert check_seconds("timeout", math.inf, allow_zero=True, allow_inf=True) == math.inf
    assert check_seconds("timeout", 0, allow_zero=True, allow_inf=True) == 0.0
    with pytest.raises(ValueError, match="must be finite"):
        check_seconds("lease_seconds", math.inf)
    with pytest.raises(ValueError, match="must be > 0"):
        check_seconds("lease_seconds", 0)
    with pytest.raises(ValueError):
        check_seconds("timeout", math.nan, allow_zero=True, allow_inf=True)
    with pytest.raises(TypeError, match="timeout must be a number of seconds, not str"):
        check_seconds("timeout", "1", allow_inf=True)
