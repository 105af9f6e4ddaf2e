"""Turn command-line strings (and preset values) into values of a dataclass field's type.

The field's annotation is the single source of truth: adding a field to a config dataclass
makes it settable from the command line with the right parsing and validation, no parser
table to keep in step.

Supported annotations: ``bool``, ``int``, ``float``, ``str``, ``Literal[...]``,
``list[T]`` (T any of the above), ``X | None`` and unions of those (tried in order).
"""

from __future__ import annotations

import json
import math
import types
import typing
from typing import Any, Literal, Union

from gpart.configs.errors import ConfigError, did_you_mean

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
_NONE = frozenset({"none", "null"})


def describe(tp: Any) -> str:
    """A human description of what a value of annotation `tp` looks like, for messages."""
    origin = typing.get_origin(tp)
    if tp is bool:
        return "a boolean (true/false/1/0/yes/no)"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number (e.g. 0.001 or 1e-3)"
    if tp is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(str(c) for c in typing.get_args(tp))
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return f"a list of {_plural(item)} ('a,b' or JSON '[...]')"
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        parts = [describe(a) for a in args if a is not type(None)]
        if type(None) in args:
            parts.append("none")
        return " or ".join(parts)
    return getattr(tp, "__name__", str(tp))


def _plural(tp: Any) -> str:
    return {bool: "booleans", int: "integers", float: "numbers", str: "strings"}.get(
        tp, describe(tp)
    )


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert `value` to annotation `tp`.

    Strings are parsed (they come from the command line); other values are validated (they
    come from presets or Python code), with ``int -> float`` widening as the only
    conversion, so a preset typo such as ``"adapter.d": "23040"`` still fails loudly.

    Args:
        value: a command-line string, or a value from a preset or Python code.
        tp: the field's resolved annotation (see the module docstring for what is supported).
        key: the dotted key the value is for, named in the error message.

    Returns:
        The value as a `tp`.

    Raises:
        ConfigError: `value` is not a valid `tp`; the message names `key` and what was
            expected.
        TypeError: `tp` is an annotation the coercer does not support (a schema bug).
    """
    try:
        return _coerce(value, tp)
    except _Mismatch as exc:
        detail = f" ({exc.detail})" if exc.detail else ""
        raise ConfigError(f"{key}: expected {describe(tp)}, got {value!r}{detail}") from None


class _Mismatch(Exception):
    def __init__(self, detail: str = "") -> None:
        super().__init__(detail)
        self.detail = detail


def _coerce(value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        return _coerce_union(value, typing.get_args(tp))
    if origin is Literal:
        return _coerce_literal(value, typing.get_args(tp))
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return _coerce_list(value, item)
    if tp is bool:
        return _coerce_bool(value)
    if tp is int:
        return _coerce_int(value)
    if tp is float:
        return _coerce_float(value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch()
    raise TypeError(f"unsupported annotation for a config field: {tp!r}")


def _coerce_union(value: Any, args: tuple[Any, ...]) -> Any:
    if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
        if type(None) in args:
            return None
        if value is None:
            raise _Mismatch()
    last = _Mismatch()
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _coerce(value, arg)
        except _Mismatch as exc:
            last = exc
    raise last


def _coerce_literal(value: Any, choices: tuple[Any, ...]) -> Any:
    for choice in choices:
        # Compare as the choice's own type: "3" matches Literal[3] from the command line.
        if value == choice or (isinstance(value, str) and str(choice) == value.strip()):
            return choice
    hint = did_you_mean(str(value), [str(c) for c in choices])
    raise _Mismatch(hint.lstrip("; ") if hint else "")


def _coerce_list(value: Any, item: Any) -> list[Any]:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as exc:
                raise _Mismatch(f"invalid JSON: {exc.msg}") from None
            if not isinstance(parsed, list):
                raise _Mismatch()
            if not parsed:
                raise _Mismatch("empty; write `none` to unset the field")
            # JSON gives typed items; strings inside still get parsed (e.g. ["1", "2"]).
            return [_coerce(v, item) for v in parsed]
        if not text:
            # An empty list reaches no module and fails late; "none" is the way to unset.
            raise _Mismatch("empty; write `none` to unset the field")
        return [_coerce(part.strip(), item) for part in text.split(",")]
    if isinstance(value, (list, tuple)):
        return [_coerce(v, item) for v in value]
    raise _Mismatch()


def _coerce_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise _Mismatch()


def _coerce_int(value: Any) -> int:
    if isinstance(value, bool):  # bool is an int subclass; True for an int is a mistake.
        raise _Mismatch()
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise _Mismatch() from None
    raise _Mismatch()


def _coerce_float(value: Any) -> float:
    if isinstance(value, bool):
        raise _Mismatch()
    if isinstance(value, (int, float)):
        out = float(value)
    elif isinstance(value, str):
        try:
            out = float(value.strip())
        except ValueError:
            raise _Mismatch() from None
    else:
        raise _Mismatch()
    # inf/nan parse as floats but no hyperparameter means them; they would only surface
    # later as a NaN loss or a Trainer error.
    if not math.isfinite(out):
        raise _Mismatch("must be a finite number")
    return out
