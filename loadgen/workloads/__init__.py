"""Workloads: datasets turned into token-id prompts before the run starts."""

from pathlib import Path

from loadgen.errors import UsageError

from .jsonl import load_token_jsonl
from .prompt import Prompt
from .synthetic import synthetic_prompts

__all__ = ["Prompt", "load_workload", "load_token_jsonl", "synthetic_prompts"]

#: distinct synthetic prompts generated for a duration-bound run (then reused in order)
SYNTHETIC_POOL = 1024


def load_workload(spec: str, *, input_len: int, num_requests: int | None, seed: int) -> list[Prompt]:
    """`synthetic` or a path to a .jsonl file of pre-tokenized prompts."""
    if spec == "synthetic":
        if input_len < 1:
            raise UsageError(f"--input-len must be at least 1, got {input_len}")
        return synthetic_prompts(min(num_requests or SYNTHETIC_POOL, SYNTHETIC_POOL * 64), input_len, seed)
    path = Path(spec)
    if path.suffix == ".jsonl" or path.exists():
        return load_token_jsonl(path)
    raise UsageError(f"unknown workload {spec!r}: use 'synthetic' or a path to a .jsonl file")
