"""Dataclasses <-> JSON values, and the JSON Schema of a dataclass, from the type hints alone.

One walk over the hints serves all three, so report.json, what reads it back and its schema
cannot disagree about a field. Supported hints: dataclasses, int, float, str, bool, None,
`X | None`, unions of dataclasses (told apart by their keys), list[X], dict[str, X], and bare
dict/list for the few free-form engine figures. A field whose metadata has OMIT_DEFAULT is left
out of the JSON while it holds its default (and is then optional in the schema).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import cache

__all__ = ["OMIT_DEFAULT", "to_json", "from_json", "json_schema"]

#: field metadata: leave the key out while the field holds its default
OMIT_DEFAULT = {"omit_default": True}

_PRIMITIVES = {int: {"type": "integer"}, float: {"type": "number"}, str: {"type": "string"},
               bool: {"type": "boolean"}, type(None): {"type": "null"}}


@cache
def _hints(cls: type) -> dict[str, object]:
    return typing.get_type_hints(cls)


def _omitted(f: dataclasses.Field, value: object) -> bool:
    return bool(f.metadata.get("omit_default")) and value == f.default


def to_json(value: object) -> object:
    """A dataclass tree as plain JSON values; fields in declaration order, as the file shows them."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not _omitted(f, getattr(value, f.name))}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def from_json(hint: object, data: object, where: str = "$") -> object:
    """`data` (parsed JSON) as `hint`; ValueError naming the path of the first value that does not fit.

    Numbers are kept as they were read (an int stays an int in a float field), so a report read
    back and written again is the same bytes.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
        hints = _hints(hint)
        names = {f.name for f in dataclasses.fields(hint)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{where}: unexpected key {unknown[0]!r}")
        kwargs = {}
        for f in dataclasses.fields(hint):
            if f.name in data:
                kwargs[f.name] = from_json(hints[f.name], data[f.name], f"{where}.{f.name}")
            elif not f.metadata.get("omit_default"):
                raise ValueError(f"{where}: missing key {f.name!r}")
        return hint(**kwargs)
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return from_json(options[0], data, where)
        fitting = [a for a in options if isinstance(data, dict) and _fits_keys(a, data)]
        if len(fitting) != 1:
            raise ValueError(f"{where}: fits none of {', '.join(a.__name__ for a in options)}")
        return from_json(fitting[0], data, where)
    if hint is list or origin is list:
        if not isinstance(data, list):
            raise ValueError(f"{where}: expected an array, got {type(data).__name__}")
        return [from_json(args[0], v, f"{where}[{i}]") for i, v in enumerate(data)] if args else data
    if hint is dict or origin is dict:
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
        return {k: from_json(args[1], v, f"{where}.{k}") for k, v in data.items()} if args else data
    if hint in _PRIMITIVES:
        # bool is an int to Python, JSON keeps them apart; 16.0 is an integer to JSON Schema (a
        # sweep's concurrency arrives as a float), so here too
        if hint is float or hint is int:
            fits = (isinstance(data, (int, float)) and not isinstance(data, bool)
                    and (hint is float or float(data).is_integer()))
        else:
            fits = isinstance(data, hint)
        if not fits:
            raise ValueError(f"{where}: expected {_PRIMITIVES[hint]['type']}, got {type(data).__name__}")
        return data
    raise TypeError(f"{where}: no JSON form for {hint!r}")


def _fits_keys(cls: type, data: dict) -> bool:
    fields = dataclasses.fields(cls)
    required = {f.name for f in fields if not f.metadata.get("omit_default")}
    return required <= set(data) <= {f.name for f in fields}


def json_schema(root: type, *, title: str, schema_id: str) -> dict:
    """The JSON Schema (draft 2020-12) of dataclass `root`: every dataclass a $defs entry whose
    keys are all required (OMIT_DEFAULT ones excepted) and no others allowed."""
    defs: dict[str, dict] = {}

    def of(hint: object) -> dict:
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            name = hint.__name__
            if name not in defs:
                defs[name] = {}  # a placeholder first: a type may refer to itself
                hints = _hints(hint)
                fields = dataclasses.fields(hint)
                body: dict[str, object] = {"type": "object"}
                if hint.__doc__ and not hint.__doc__.startswith(f"{name}("):  # not dataclass's generated one
                    body["description"] = " ".join(hint.__doc__.split())
                body |= {"properties": {f.name: of(hints[f.name]) for f in fields},
                         "required": [f.name for f in fields if not f.metadata.get("omit_default")],
                         "additionalProperties": False}
                defs[name] = body
            return {"$ref": f"#/$defs/{name}"}
        if origin in (typing.Union, types.UnionType):
            if all(a in _PRIMITIVES for a in args):  # float | None -> {"type": ["number", "null"]}
                return {"type": [_PRIMITIVES[a]["type"] for a in args]}
            return {"anyOf": [of(a) for a in args]}
        if hint is list or origin is list:
            return {"type": "array", **({"items": of(args[0])} if args else {})}
        if hint is dict or origin is dict:
            return {"type": "object", **({"additionalProperties": of(args[1])} if args else {})}
        if hint in _PRIMITIVES:
            return dict(_PRIMITIVES[hint])
        raise TypeError(f"no JSON Schema for {hint!r}")

    top = of(root)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": schema_id, "title": title, **top,
            "$defs": dict(sorted(defs.items()))}
