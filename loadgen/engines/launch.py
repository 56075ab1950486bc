"""What an engine's launch function takes and gives: a Recipe in, a Launch out.

These live with the engines, not with servers/, so that engines/ never imports servers/:
servers/recipe.py reads, overrides and validates recipe YAML into these dataclasses and hands
them to the engine's launch function (EngineSpec.launch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Speculative", "Recipe", "Launch", "option_flags", "sizing_flags"]


@dataclass(frozen=True)
class Speculative:
    method: str = "none"
    draft_model: str | None = None
    num_speculative_tokens: int | None = None
    #: engine-specific settings the engine's adapter puts into its speculative config or flags
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    name: str
    engine: str
    engine_version: str
    model: str
    description: str = ""
    tensor_parallel_size: int = 1
    gpu_memory_fraction: float | None = None
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    speculative: Speculative = Speculative()
    extra_args: tuple[str, ...] = ()
    #: TensorRT-LLM only: merged over the LLM-API options YAML the adapter writes
    extra_config: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    startup_timeout_s: float = 1800.0
    #: the program to start instead of the engine's usual one (e.g. another virtualenv's python)
    executable: str | None = None
    path: Path | None = None


@dataclass(frozen=True)
class Launch:
    """A rendered recipe: the command, the environment it adds, and files to write before starting
    (path -> text; TensorRT-LLM's options YAML)."""

    argv: tuple[str, ...]
    env: dict[str, str]
    files: dict[Path, str]


def option_flags(options: dict) -> list[str]:
    """A recipe's engine-specific options as command-line flags: {"eagle_topk": 1} -> --eagle-topk 1;
    true -> the bare flag, false or null -> left out; a key may start with dashes to keep it as written."""
    argv: list[str] = []
    for key, value in options.items():
        flag = key if key.startswith("-") else "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not False and value is not None:
            argv += [flag, ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    return argv


def sizing_flags(recipe: Recipe, **flags: str) -> list[str]:
    """The recipe's sizing fields that are set, as this engine's flags:
    sizing_flags(recipe, max_model_len="--max-model-len") -> ["--max-model-len", "40960"]."""
    argv: list[str] = []
    for name, flag in flags.items():
        value = getattr(recipe, name)
        if value is not None:
            argv += [flag, str(value)]
    return argv
