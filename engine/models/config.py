"""One parser for the typed model configs: a JSON-like mapping (ModelSpec.config) -> a frozen dataclass, and back.

Every architecture's config is a frozen dataclass whose field names are the keys stored in `spec.config`
(existing checkpoints keep loading) and whose defaults are the architecture's defaults. `parse_config`
checks it field by field from the type hints:

    bool / int / float / str        exact JSON type (an int is accepted for a float)
    Literal["a", "b"]               one of the listed values (the switches)
    tuple[int, ...], tuple[X, Y]    a JSON list (or tuple) of any / that exact length, items checked
    X | None                        null or an X
    a nested config dataclass       a JSON object, parsed recursively (e.g. C2FNet's coarse/fine SubModel)
    Any, Mapping[str, Any]          taken as is (a sub-model's own config, checked by its own parser)

Every failure is a ValueError of one line naming the config, the key and what is valid. `to_dict` gives the
plain JSON-able dict (tuples -> lists) that goes back into a ModelSpec.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any, Literal, TypeVar, Union

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class SubModel:
    """A model nested in another (C2FNet's coarse and fine models): an architecture name and its config dict."""

    architecture: str = "semantic_fpn"
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def parse_config(cls: type[T], mapping: Mapping[str, Any] | None = None, where: str | None = None) -> T:
    """`mapping` (missing keys take the defaults) -> a `cls` instance; ValueError on an unknown key or a bad value.

    `where` names the config in messages (default: the class name), e.g. the architecture "mask_rcnn".
    """
    where = where or cls.__name__
    if isinstance(mapping, cls):
        return mapping
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{where} config: expected a JSON object of settings, got {mapping!r}")
    hints = _hints(cls)
    unknown = [key for key in mapping if key not in hints]
    if unknown:
        raise ValueError(f"unknown {where} config key(s) {', '.join(repr(k) for k in unknown)}; "
                         f"valid keys: {', '.join(hints)}")
    values = {key: _convert(value, hints[key], where, key) for key, value in mapping.items()}
    return cls(**values)


def to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass -> a plain JSON-able dict (nested dataclasses -> dicts, tuples -> lists)."""
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def choices(alias: Any) -> tuple[Any, ...]:
    """The values of a Literal type alias, e.g. choices(Literal["gn", "none"]) == ("gn", "none")."""
    return typing.get_args(alias)


@cache
def _hints(cls: type) -> dict[str, Any]:
    """Field name -> resolved type hint, in field order."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a config dataclass")
    resolved = typing.get_type_hints(cls)
    return {f.name: resolved[f.name] for f in dataclasses.fields(cls)}


def _convert(value: Any, hint: Any, where: str, key: str) -> Any:
    """`value` of `key` checked against `hint` (lists made tuples); ValueError naming config `where` otherwise."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    label = f"{where} config '{key}'"
    if hint is Any:
        return value
    if origin is Literal:
        if isinstance(value, str) and value in args:
            return value
        raise ValueError(f"{label}: {value!r} is not one of {', '.join(str(a) for a in args)}")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) != 1:
            raise TypeError(f"{label}: only 'X | None' unions are supported in configs, not {hint}")
        return _convert(value, options[0], where, key)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ValueError(f"{label}: expected {_describe(hint)}, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], where, key) for v in value)
        if len(value) != len(args):
            raise ValueError(f"{label}: expected {_describe(hint)}, got {len(value)}: {list(value)!r}")
        return tuple(_convert(v, a, where, key) for v, a in zip(value, args))
    if origin in (Mapping, dict) or hint in (Mapping, dict):
        if not isinstance(value, Mapping):
            raise ValueError(f"{label}: expected a JSON object, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(hint):
        return parse_config(hint, value, f"{where}.{key}")
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"{label}: unsupported config type {hint}")
    raise ValueError(f"{label}: expected {_describe(hint)}, got {value!r}")


def _describe(hint: Any) -> str:
    """A readable name of a type hint for messages: 'int', 'a list of 5 int', 'one of gn, none', ..."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        inner = {_describe(a) for a in args}
        return f"a list of {len(args)} {inner.pop()}" if len(inner) == 1 else f"a list of {len(args)} values"
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in args)
    return getattr(hint, "__name__", str(hint))


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value
