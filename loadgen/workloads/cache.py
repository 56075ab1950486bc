"""Prepared workloads on disk: all prompts' ids in one int32 array, so a second run loads at once.

A folder per workload key: tokens.npy (every prompt's ids, end to end), offsets.npy (where each
starts), prompts.json (ids, categories, max tokens, multi-turn text) and info.json (what was
prepared from what). The key hashes the dataset's bytes, the tokenizer's files and the build
options, so any change prepares afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

from .prompt import Prompt

__all__ = ["cache_root", "workload_key", "save_prompts", "load_prompts", "list_cached", "file_digest"]

FORMAT = 1


def cache_root() -> Path:
    """$LOADGEN_CACHE_DIR, else $XDG_CACHE_HOME/loadgen, else ~/.cache/loadgen."""
    if os.environ.get("LOADGEN_CACHE_DIR"):
        return Path(os.environ["LOADGEN_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "loadgen"


def file_digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()[:16]


def workload_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps({"format": FORMAT, **parts}, sort_keys=True).encode()).hexdigest()[:16]


def _folder(name: str, key: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return cache_root() / "workloads" / f"{safe}-{key}"


def save_prompts(name: str, key: str, prompts: list[Prompt], info: dict) -> Path:
    """Write atomically (a temporary folder renamed into place): a killed prepare leaves no half cache."""
    folder = _folder(name, key)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))
    lengths = np.fromiter((p.token_ids.size for p in prompts), dtype=np.int64, count=len(prompts))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    tokens = np.concatenate([p.token_ids for p in prompts]).astype(np.int32, copy=False) if prompts else \
        np.empty(0, np.int32)
    np.save(tmp / "tokens.npy", tokens)
    np.save(tmp / "offsets.npy", offsets)
    meta = [{"id": p.prompt_id, "category": p.category, "sub_category": p.sub_category, "max_tokens": p.max_tokens,
             "messages": list(p.messages), "followups": list(p.followups)} for p in prompts]
    (tmp / "prompts.json").write_bytes(orjson.dumps(meta))
    info = {**info, "name": name, "key": key, "prompts": len(prompts), "tokens": int(tokens.size),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (tmp / "info.json").write_bytes(orjson.dumps(info, option=orjson.OPT_INDENT_2))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def load_prompts(name: str, key: str) -> tuple[list[Prompt], dict] | None:
    folder = _folder(name, key)
    try:
        tokens = np.load(folder / "tokens.npy")
        offsets = np.load(folder / "offsets.npy")
        meta = orjson.loads((folder / "prompts.json").read_bytes())
        info = orjson.loads((folder / "info.json").read_bytes())
    except (OSError, ValueError):
        return None
    prompts = [Prompt(m["id"], tokens[offsets[i]:offsets[i + 1]], m["category"], m["sub_category"], m["max_tokens"],
                      tuple(m["messages"]), tuple(m["followups"])) for i, m in enumerate(meta)]
    return prompts, info


def list_cached() -> list[dict]:
    root = cache_root() / "workloads"
    out = []
    for info_file in sorted(root.glob("*/info.json")) if root.exists() else []:
        try:
            info = orjson.loads(info_file.read_bytes())
        except (OSError, ValueError):
            continue
        info["path"] = str(info_file.parent)
        info["bytes"] = sum(f.stat().st_size for f in info_file.parent.iterdir())
        out.append(info)
    return out
