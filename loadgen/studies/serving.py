"""A recipe served for a study (matrix, tune): the engine started with its log beside the study's
runs, waited for until it serves, recorded (server.json: the recipe, the command it ran, the model
it serves, the start-up time), and stopped with every process it started on leaving the block, also
on Ctrl-C or an error (servers/process.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from ..engines import ENGINES
from ..servers import Recipe, ServerProcess
from ..sinks import write_json_atomic

__all__ = ["ServeSettings", "Served", "recipe_tokenizer", "serving"]


@dataclass(frozen=True)
class ServeSettings:
    """Where and how a study serves its recipes (a plan's `serve:`, tune's --port and --startup-timeout)."""

    host: str = "127.0.0.1"
    port: int | None = None  # None: the engine's own port; 0: a free one
    gpus: str | None = None  # CUDA_VISIBLE_DEVICES; None: all visible
    startup_timeout_s: float | None = None  # None: the recipe's
    grace_s: float = 30.0  # SIGTERM to SIGKILL when stopping


@dataclass(frozen=True)
class Served:
    url: str
    model: str
    info: dict  # what server.json holds


@contextlib.contextmanager
def serving(recipe: Recipe, settings: ServeSettings, *, log_path: Path, info_path: Path, label: str,
            console: Console) -> Iterator[Served]:
    """Serve RECIPE for the block: its log at LOG_PATH, server.json at INFO_PATH once it serves."""
    server = ServerProcess(recipe, log_path=log_path, host=settings.host, port=settings.port, gpus=settings.gpus,
                           startup_timeout_s=settings.startup_timeout_s, grace_s=settings.grace_s,
                           on_wait=lambda phase: console.print(f"[dim]waiting for {phase}[/]"))
    with server:
        ready, launch = server.ready, server.launch
        assert ready is not None and launch is not None, "the with block waited until it served"
        info = {"recipe": recipe.name, "engine": recipe.engine, "engine_version": recipe.engine_version,
                "model": ready.model, "command": list(launch.argv), "startup_s": round(ready.startup_s, 3)}
        write_json_atomic(info_path, info)
        console.print(f"[green]{label} ready[/] at {ready.url} after {ready.startup_s:.1f} s")
        yield Served(ready.url, ready.model, info)


def recipe_tokenizer(recipe: Recipe) -> str | None:
    """The served model's own tokenizer (its Hugging Face id or folder), where the engine's model is
    one (EngineSpec.model_is_hf_tokenizer; not llama.cpp's GGUF: a study of those must name one)."""
    return recipe.model if ENGINES[recipe.engine].model_is_hf_tokenizer else None
