"""Payloads as PostgreSQL's jsonb keeps them: checked and encoded at enqueue, so that what a handler gets
back is exactly what was enqueued, or the enqueue is refused. Pure code: no I/O.

jsonb stores numbers as ``numeric``, which has no ``-0.0`` and prints ``1e20`` as ``100000000000000000000``
(read back as an int); it refuses NUL characters and lone surrogates. So before a payload is written:

- objects and arrays may nest at most ``MAX_PAYLOAD_DEPTH`` levels;
- keys are strings; strings and keys hold no NUL character and no lone surrogate;
- floats are finite and not ``-0.0``; a float whose JSON text would lose its decimal point (``1e+20``) is
  written out in full with ``.0``, so it comes back as the same float.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from finejobs.errors import PayloadError
from finejobs.limits import MAX_PAYLOAD_DEPTH, is_utf8, storable_text

_MARK = "\x00f"  # a NUL never reaches the JSON text of a valid payload: a safe placeholder prefix


_DUMPS = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode  # made once, not once a payload


def encode(kind: str, payload: Mapping[str, Any], *, max_bytes: int) -> str:
    """The payload's JSON text as stored, or PayloadError naming the field that cannot be kept (any JSON value
    at the root is encoded the same way: see encode_value)."""
    value: Any = payload
    try:
        has_wide = _quick_check(payload, 0)
    except _Doubt:  # something to refuse, or a type the quick walk leaves to the full one: it names the path
        has_wide = _check(kind, payload, "", 0)
    if has_wide:
        wide: list[float] = []
        value = _widen(payload, wide)
    else:
        wide = []
    try:
        text = _DUMPS(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise PayloadError(kind, ["<root>"], f"the payload is not JSON-serializable: {exc}") from None
    for i, number in enumerate(wide):
        text = text.replace(json.dumps(f"{_MARK}{i}"), f"{number:.1f}", 1)
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise PayloadError(kind, ["<root>"], f"the payload is {size} bytes, over the limit of {max_bytes}")
    return text


def encode_value(value: Any, *, max_bytes: int) -> str | None:
    """Any JSON value (a handler's return value) as jsonb keeps it, by the rules of payloads; None if it
    cannot be kept that way or its JSON text is over ``max_bytes``."""
    try:
        return encode("", value, max_bytes=max_bytes)
    except PayloadError:
        return None


def _check(kind: str, value: Any, path: str, depth: int) -> bool:
    """Walk the payload once, refusing what jsonb cannot keep; True if it holds a wide float."""
    if isinstance(value, str):
        if "\x00" in value:
            raise _bad(kind, path, "NUL characters (\\x00) cannot be stored in PostgreSQL")
        if not is_utf8(value):
            raise _bad(kind, path, "a lone surrogate (not valid Unicode text) cannot be stored")
        return False
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return False
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _bad(kind, path, f"{value} cannot be stored in JSON")
        if value == 0.0 and math.copysign(1.0, value) < 0:
            raise _bad(kind, path, "-0.0 cannot be stored (PostgreSQL's jsonb has no negative zero): pass 0.0")
        return _is_wide(value)
    if depth >= MAX_PAYLOAD_DEPTH:
        raise _bad(kind, path, f"nested deeper than {MAX_PAYLOAD_DEPTH} levels")
    found = False
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _bad(kind, _join(path, repr(key)), f"keys must be strings, got {type(key).__name__}")
            here = _join(path, key)
            if "\x00" in key or not is_utf8(key):
                raise _bad(kind, here, "a key with a NUL character or a lone surrogate cannot be stored")
            found = _check(kind, item, here, depth + 1) or found
        return found
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = _check(kind, item, _join(path, str(i)), depth + 1) or found
        return found
    raise _bad(kind, path, f"not JSON-serializable: {type(value).__name__}")


class _Doubt(Exception):
    """The quick walk met something it does not decide."""


def _quick_check(value: Any, depth: int) -> bool:
    """``_check`` for the common payload (exact dicts, lists, str, int, bool, None, float), without building
    a path per key: True if it holds a wide float; raises _Doubt on anything ``_check`` might refuse (or any
    other type), and ``_check`` then decides and names the field."""
    kind = type(value)
    if kind is str:
        if "\x00" in value or not (value.isascii() or is_utf8(value)):
            raise _Doubt
        return False
    if kind is int or kind is bool or value is None:
        return False
    if kind is float:
        if not math.isfinite(value) or (value == 0.0 and math.copysign(1.0, value) < 0):
            raise _Doubt
        return _is_wide(value)
    if kind is not dict and kind is not list:
        raise _Doubt
    if depth >= MAX_PAYLOAD_DEPTH:
        raise _Doubt
    found = False
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or "\x00" in key or not (key.isascii() or is_utf8(key)):
                raise _Doubt
            found = _quick_check(item, depth + 1) or found
    else:
        for item in value:
            found = _quick_check(item, depth + 1) or found
    return found


def _is_wide(value: float) -> bool:
    return "e+" in repr(value)  # 1e+20: jsonb would print it as 100000000000000000000, an integer


def _widen(value: Any, wide: list[float]) -> Any:
    """A copy of a checked payload with each wide float replaced by a placeholder string."""
    if isinstance(value, float) and _is_wide(value):
        wide.append(value)
        return f"{_MARK}{len(wide) - 1}"
    if isinstance(value, Mapping):
        return {key: _widen(item, wide) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_widen(item, wide) for item in value]
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _bad(kind: str, path: str, why: str) -> PayloadError:
    field = storable_text(path) or "<root>"
    return PayloadError(kind, [field], f"{field}: {why}")
