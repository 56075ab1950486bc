"""A workload whose prefix-cache hits are known: prompts of token ids sharing their first ids."""

from pathlib import Path

import orjson


def shared_prefix_workload(folder: Path, *, shared: int, own: int, prompts: int = 4) -> Path:
    """A jsonl workload (`prompt_token_ids` rows) of PROMPTS prompts: the same SHARED ids, then OWN
    ids of each prompt's own."""
    path = folder / "shared.jsonl"
    rows = [[1000 + i for i in range(shared)] + [20000 + 1000 * p + i for i in range(own)] for p in range(prompts)]
    path.write_bytes(b"".join(orjson.dumps({"id": f"p{i}", "prompt_token_ids": ids}) + b"\n"
                              for i, ids in enumerate(rows)))
    return path
