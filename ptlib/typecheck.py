"""Type checks for config values, with errors that name the key.

A config value read from YAML or ``--set`` may be any YAML type; a dataclass
field's annotation says what it must be. :func:`check_fields` compares every
value with its field's type before the dataclass is built, so ``train.epochs=abc``
or ``train.epochs=2.5`` fails with ``train.epochs='abc': must be an integer``
instead of a ``TypeError`` deep in the training loop.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Union


def _args(hint: Any) -> tuple[Any, ...]:
    return typing.get_args(hint)


def matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` (plain YAML data) fits the type annotation ``hint``.

    Integers are integers (``2.5`` and ``True`` are not), a float accepts an
    integer, a tuple or list accepts either a YAML list or a tuple.
    """
    if hint is Any or hint is object:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    if origin is Union or origin is types.UnionType:
        return any(matches(value, arg) for arg in _args(hint))
    if origin is typing.Literal:
        return value in _args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (tuple, list) or hint in (tuple, list):
        if not isinstance(value, list | tuple):
            return False
        args = _args(hint)
        if not args:
            return True
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return len(value) == len(args) and all(
                matches(v, a) for v, a in zip(value, args, strict=True))
        return all(matches(v, args[0]) for v in value)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, Mapping):
            return False
        args = _args(hint)
        return not args or all(matches(v, args[1]) for v in value.values())
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # an annotation this checker does not know: let the dataclass decide


def describe(hint: Any) -> str:
    """``hint`` in words: "an integer", "a number or null", "a list of 2 numbers"."""
    if hint is Any:
        return "any value"
    if hint is None or hint is type(None):
        return "null"
    origin = typing.get_origin(hint)
    if origin is Union or origin is types.UnionType:
        return " or ".join(describe(arg) for arg in _args(hint))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in _args(hint))
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if hint in words:
        return words[hint]
    if origin in (tuple, list):
        args = _args(hint)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return f"a list of {len(args)} values ({', '.join(describe(a) for a in args)})"
        item = describe(args[0]) if args else "values"
        return f"a list (each {item})"
    if origin is dict or hint is dict:
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def check_value(value: Any, hint: Any, where: str) -> None:
    """Raise ``ValueError("where=value: must be ...")`` unless ``value`` fits ``hint``."""
    if not matches(value, hint):
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        raise ValueError(f"{where}={shown}: must be {describe(hint)}")


def field_types(cls: type) -> dict[str, Any]:
    """Field name -> resolved type annotation of a dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def check_fields(
    cls: type, values: Mapping[str, Any], section: str, *, ignore: tuple[str, ...] = ()
) -> None:
    """Refuse unknown keys and values of the wrong type for dataclass ``cls``.

    Args:
        cls: The dataclass the values are for.
        values: Key -> value (e.g. a YAML section).
        section: How the user names the section, e.g. ``"train"``; errors read
            ``train.epochs='abc': must be an integer``.
        ignore: Keys that are allowed but not fields (checked elsewhere).

    Raises:
        ValueError: Naming the first unknown key (and the known ones) or the first
            value of the wrong type.
    """
    hints = field_types(cls)
    unknown = sorted(str(k) for k in values if k not in hints and k not in ignore)
    if unknown:
        raise ValueError(
            f"{section}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"known keys: {', '.join(sorted(hints))}"
        )
    for key, value in values.items():
        if key in hints:
            check_value(value, hints[key], f"{section}.{key}")
