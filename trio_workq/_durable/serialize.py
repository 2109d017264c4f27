# SPDX-License-Identifier: MIT
"""How a durable queue turns task arguments and results into bytes and back."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, cast, runtime_checkable


@runtime_checkable
class Serializer(Protocol):
    """Turns task arguments and results into bytes for a store, and back.

    Every process sharing a store must use the same serializer. `dumps`
    raises `TypeError` or `ValueError` for a value it cannot represent; the
    queue then stores nothing.
    """

    def dumps(self, value: Any) -> bytes:
        """Encode *value*; raise `TypeError` or `ValueError` if it cannot be encoded."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode what `dumps` produced."""
        ...


def load_arguments(
    serializer: Serializer, payload: bytes
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A stored task's positional and keyword arguments. Not a checkpoint.

    The intake stores ``{"args": [...]}``, with ``"kwargs": {...}`` when
    there are keyword arguments (from a `functools.partial`); the executor,
    the dashboard and the testing kit read it back here.

    Raises:
        ValueError: If *serializer* cannot decode *payload*, or it is not
            in that format (damaged or foreign bytes).
    """
    try:
        loaded: object = serializer.loads(payload)
    except Exception as exc:
        raise ValueError(
            f"the stored arguments cannot be decoded by {serializer!r}: {exc!r}"
        ) from exc
    if isinstance(loaded, dict):
        call = cast("dict[str, object]", loaded)
        args, kwargs = call.get("args"), call.get("kwargs", {})
        if isinstance(args, list) and isinstance(kwargs, dict):
            return tuple(cast("Sequence[Any]", args)), cast("dict[str, Any]", kwargs)
    raise ValueError("the stored arguments are not in trio_workq's format")


class JSONSerializer:
    """The default serializer: UTF-8 JSON.

    Accepts ``None``, booleans, ints, finite floats, strings, and lists,
    tuples and dicts of them. Tuples come back as lists. Anything else, a
    dict key that is not a string, and NaN or infinity raise instead of
    changing silently on the way through the store.
    """

    def dumps(self, value: Any) -> bytes:
        """Encode *value* as compact JSON.

        Raises:
            TypeError: For a value JSON cannot hold, or a non-string dict key.
            ValueError: For NaN or infinity, or a circular reference.
        """
        _check_keys(value)
        return _encoder.encode(value).encode()

    def loads(self, data: bytes) -> Any:
        """Decode JSON written by `dumps`."""
        return _decoder.decode(data.decode())

    def __repr__(self) -> str:
        return "JSONSerializer()"


# Built once: json.dumps() with any option builds a new encoder per call.
_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_decoder = json.JSONDecoder()


def _check_keys(value: object) -> None:
    """Reject dict keys that JSON would silently turn into strings (``{1: x}`` → ``{"1": x}``)."""
    stack: list[object] = [value]
    visited: set[int] = set()  # shared or circular containers are walked once
    while stack:
        item = stack.pop()
        item_id = id(item)
        if isinstance(item, dict):
            if item_id in visited:
                continue
            visited.add(item_id)
            mapping = cast("dict[object, object]", item)
            for key in mapping:
                if key.__class__ is not str:
                    raise TypeError(
                        f"JSON object keys must be strings, got {key!r} "
                        f"({type(key).__name__}); convert the key or use another serializer"
                    )
            stack.extend(mapping.values())
        elif isinstance(item, (list, tuple)):
            if item_id in visited:
                continue
            visited.add(item_id)
            stack.extend(cast("Iterable[object]", item))


class PickleSerializer:
    """Pickle: any picklable value, at a price. Opt in explicitly.

    Warning:
        Loading a pickle can run arbitrary code. Use this only when every
        process and person that can write to the store is trusted: anyone
        who can insert a row can take over every worker.
    """

    def __init__(self, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        if isinstance(protocol, bool) or not isinstance(protocol, int):
            raise TypeError(f"protocol must be an int, not {type(protocol).__name__}")
        if not 0 <= protocol <= pickle.HIGHEST_PROTOCOL:
            raise ValueError(
                f"protocol must be between 0 and {pickle.HIGHEST_PROTOCOL}, got {protocol}"
            )
        self.protocol = protocol

    def dumps(self, value: Any) -> bytes:
        """Pickle *value*.

        Raises:
            TypeError: If it cannot be pickled (e.g. a lambda, a lock).
        """
        try:
            return pickle.dumps(value, protocol=self.protocol)
        except (pickle.PicklingError, AttributeError) as exc:
            raise TypeError(f"cannot pickle {value!r}: {exc}") from exc

    def loads(self, data: bytes) -> Any:
        """Unpickle *data*. Runs whatever code the pickle asks for: trusted writers only."""
        return pickle.loads(data)  # the documented, opt-in risk

    def __repr__(self) -> str:
        return f"PickleSerializer(protocol={self.protocol})"
