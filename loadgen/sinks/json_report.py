"""report.json, written atomically: a reader never sees half a report."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

__all__ = ["write_json_atomic"]


def write_json_atomic(path: Path, obj: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    os.replace(tmp, path)
