# SPDX-License-Identifier: MIT
"""Argument checks and task-id parsing shared by the three stores.

Every store checks its arguments before touching its data, so bad input is
refused with the same exception type everywhere and nothing is half-done.
Where the stores' limits differ (PostgreSQL keeps attempts and counts in
``int4`` columns), the limit is a parameter.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Final, cast

from .._core import errors
from .._core.info import MAX_PAGE_SIZE, NO_HEADERS
from .._core.status import TaskStatus
from .protocol import RECOVERY_STATUSES, NewTask, Recovery, StoreDataError

#: The largest SQL ``bigint`` (task ids, priorities; attempts outside PostgreSQL).
INT64_MAX: Final = 2**63 - 1
#: The largest SQL ``int4`` (attempts and counts in PostgreSQL).
INT32_MAX: Final = 2**31 - 1

_ADDABLE: Final = (TaskStatus.QUEUED, TaskStatus.SCHEDULED)


def parse_id(task_id: object) -> int | None:
    """The row id *task_id* names, or ``None`` if no store ever makes such an id.

    Ids are the decimal form of a positive ``bigint``: no sign, no leading zero.
    """
    if not isinstance(task_id, str):
        raise TypeError(f"task_id must be a str, not {type(task_id).__name__}")
    if not (task_id.isascii() and task_id.isdigit()) or task_id[0] == "0" or len(task_id) > 19:
        return None
    number = int(task_id)
    return number if number <= INT64_MAX else None


def check_str(what: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    return value


def check_text(what: str, value: object) -> str:
    """A str every store can hold: it must encode to UTF-8 (no lone surrogate)."""
    text = check_str(what, value)
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise StoreDataError(f"cannot store this {what}: {exc}") from exc
    return text


def check_owner(owner: object) -> str:
    text = check_text("owner", owner)
    if not text:
        raise ValueError("owner must not be empty")
    return text


def check_bytes(what: str, value: object) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError(f"{what} must be bytes, not {type(value).__name__}")
    return value


def check_int(what: str, value: object, *, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise ValueError(f"{what} must be between {minimum} and {maximum}, got {value}")
    return value


def check_time(what: str, value: object) -> float:
    """A point in time: a finite number (the store's clock)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, not {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return float(value)


def check_seconds(
    what: str, value: object, *, allow_zero: bool = False, allow_inf: bool = False
) -> float:
    """A duration: a non-negative number of seconds (> 0 unless *allow_zero*)."""
    if allow_inf and isinstance(value, float) and value == math.inf:
        return value
    return errors.check_seconds(what, value, allow_zero=allow_zero)


def check_new_task(task: object, *, max_attempts: int) -> NewTask:
    """*task* if it is a `NewTask` every field of which the store can hold.

    *max_attempts* is the store's largest ``max_attempts`` (its column's limit).
    """
    if not isinstance(task, NewTask):
        raise TypeError(f"expected a NewTask, not {type(task).__name__}")
    if not check_text("name", task.name):
        raise ValueError("name must not be empty")
    check_bytes("payload", task.payload)
    check_int("priority", task.priority, minimum=-INT64_MAX - 1, maximum=INT64_MAX)
    check_int("max_attempts", task.max_attempts, minimum=1, maximum=max_attempts)
    check_time("due_at", task.due_at)
    if task.timeout is not None:
        check_seconds("timeout", task.timeout)
    if task.status not in _ADDABLE:
        raise ValueError(f"a new task is queued or scheduled, not {task.status}")
    check_headers(task.headers)
    return task


def check_headers(headers: object) -> dict[str, str] | None:
    """*headers* as a new dict, or ``None`` if empty; checked as `check_new_task` does.

    Keys and values must be ``str`` (else `TypeError`) that every store can
    hold: no lone surrogate and no NUL character (else `StoreDataError`,
    as PostgreSQL's JSON holds no NUL).
    """
    if headers is NO_HEADERS:  # the common case: no submit hooks
        return None
    if not isinstance(headers, Mapping):
        raise TypeError(f"headers must be a mapping of str to str, not {type(headers).__name__}")
    if not headers:
        return None
    items = cast("Mapping[object, object]", headers)
    copy: dict[str, str] = {}
    for key, value in items.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                "headers must map str to str, not "
                f"{type(key).__name__} to {type(value).__name__} (key {key!r:.40})"
            )
        for text in (key, value):
            check_text("a header", text)
            if "\x00" in text:
                raise StoreDataError(f"cannot store this header: NUL character in {text!r:.40}")
        copy[key] = value
    return copy


def headers_json(headers: Mapping[str, str]) -> str | None:
    """The JSON text the SQL stores write for headers `check_headers` passed, or ``None``."""
    return json.dumps(dict(headers), ensure_ascii=False) if headers else None


def check_held(owner: object, task_id: object, attempt: object, *, max_attempts: int) -> int | None:
    """The row id of an attempt an owner holds (``None``: no row can match), checked."""
    check_owner(owner)
    check_int("attempt", attempt, minimum=1, maximum=max_attempts)
    return parse_id(task_id)


def check_recovery(item: object, *, max_attempts: int) -> tuple[Recovery, float | None]:
    """*item* if it is a well-formed `Recovery`, and its target's due time (retrying only)."""
    if not isinstance(item, Recovery):
        raise TypeError(f"expected a Recovery, not {type(item).__name__}")
    if item.status not in RECOVERY_STATUSES:
        raise ValueError(f"a recovered task becomes {RECOVERY_STATUSES}, not {item.status}")
    check_text("error", item.error)
    check_int("attempt", item.attempt, minimum=0, maximum=max_attempts)
    if item.status is not TaskStatus.RETRYING:
        return item, None
    if item.due_at is None:
        raise ValueError("a retrying target needs a due_at")
    return item, check_time("due_at", item.due_at)


def check_page(status: object, name: object, limit: object, cursor: object) -> int | None:
    """Check `Store.page`'s arguments; the id its *cursor* names (``None``: no cursor)."""
    check_int("limit", limit, minimum=1, maximum=MAX_PAGE_SIZE)
    if status is not None and not isinstance(status, TaskStatus):
        raise TypeError(f"status must be a TaskStatus or None, not {type(status).__name__}")
    if name is not None:
        check_str("name", name)
    if cursor is None:
        return None
    before = parse_id(cursor)
    if before is None:
        raise ValueError(f"not a page cursor of this store: {cursor!r}")
    return before
