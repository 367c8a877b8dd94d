"""Device state records (the dataclasses in pyrite.devices' persist.py files) to and from the
plain values of a state file, checked field by field against the record's type hints."""
from __future__ import annotations

import dataclasses
import functools
import types
import typing

from .format import SnapshotFormatError


def to_tree(record) -> dict:
    """A dataclass record as a dict of plain values (nested records and lists included)."""
    return {f.name: _plain(getattr(record, f.name)) for f in dataclasses.fields(record)}


def _plain(value):
    if dataclasses.is_dataclass(value):
        return to_tree(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def from_tree(cls: type, tree, where: str):
    """`cls` rebuilt from `to_tree`'s output; SnapshotFormatError names the field that does not fit."""
    if not isinstance(tree, dict):
        raise SnapshotFormatError(f"{where}: expected a record, found {type(tree).__name__}")
    hints = _hints(cls)
    names = hints.keys()
    unknown = set(tree) - names
    if unknown:
        raise SnapshotFormatError(f"{where}: unknown fields {sorted(unknown)}")
    missing = names - set(tree)
    if missing:
        raise SnapshotFormatError(f"{where}: missing fields {sorted(missing)}")
    return cls(**{name: _typed(hints[name], tree[name], f"{where}.{name}") for name in names})


@functools.cache
def _hints(cls: type) -> dict:
    """Each field's type (resolving the string annotations costs more than the whole restore)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _typed(hint, value, where: str):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _typed(options[0], value, where)
    elif dataclasses.is_dataclass(hint):
        return from_tree(hint, value, where)
    elif origin in (list, tuple) and isinstance(value, list):
        if origin is list:
            return [_typed(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
        if len(args) == len(value):
            return tuple(_typed(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    elif hint is int and type(value) is int or hint is bool and type(value) is bool:
        return value
    elif hint in (bytes, str) and type(value) is hint:
        return value
    raise SnapshotFormatError(f"{where}: {type(value).__name__} {value!r:.40} does not fit {hint}")
