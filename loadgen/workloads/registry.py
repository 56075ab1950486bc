"""Workload names -> prompts: find the dataset, tokenize it once (cached), sample the run's order."""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from loadgen.errors import UsageError

from . import cache
from .build import BuildOptions, build_prompts, natural_text, template_frame, text_prompt
from .prompt import Conversation, Prompt
from .sources import distinct_row_ids, read_custom_jsonl, read_sharegpt, read_specbench, read_speed
from .synthetic import random_ids, random_prompts
from .tokenizer import load_tokenizer, tokenizer_dir, tokenizer_fingerprint
from .trace import TraceWindow, text_needed, trace_prompts

__all__ = ["WorkloadSpec", "Workload", "load_workload", "prepare_speed", "SAMPLE_PATH", "SPEED_CONFIGS",
           "WORKLOAD_NAMES"]

SAMPLE_PATH = Path(__file__).parent / "assets" / "sample.jsonl"
#: SPEED-Bench configs and the exact input length each throughput bucket is built to
SPEED_CONFIGS = {"qualitative": None, "throughput_1k": 1024, "throughput_2k": 2048, "throughput_8k": 8192,
                 "throughput_16k": 16384, "throughput_32k": 32768}
SPEED_REPO = "nvidia/SPEED-Bench"
#: distinct random prompts made for a duration-bound run (then reused in order)
RANDOM_POOL = 1024
WORKLOAD_NAMES = ("sample", "random", *(f"speed:{c}" for c in SPEED_CONFIGS), "specbench", "mtbench", "sharegpt",
                  "sharegpt:conversations", "jsonl")


@dataclass(frozen=True)
class WorkloadSpec:
    name: str = "sample"
    path: Path | None = None  # --workload-path
    tokenizer: str | None = None  # None: the built-in tokenizer for text workloads
    options: BuildOptions = field(default_factory=BuildOptions)
    input_len: int = 128  # random ids only, unless options.isl is set
    seed: int = 0
    #: --trace: the rows replayed, whose lengths the prompts take (the workload gives their text)
    trace: TraceWindow | None = None


@dataclass
class Workload:
    name: str
    prompts: list[Prompt]
    info: dict
    tokenizer: str | None  # what multi-turn rows need again during the run
    #: --trace: the send times of the prompts, which are the window's rows in order
    schedule: TraceWindow | None = None

    @property
    def multi_turn(self) -> bool:
        return any(p.followups for p in self.prompts)


def _reader(spec: WorkloadSpec) -> tuple[Callable[[], list[Conversation]], list[Path], dict]:
    """The dataset reader for a spec, the files it reads, and build-option defaults it implies."""
    name, path = spec.name, spec.path
    if name == "sample":
        return lambda: read_custom_jsonl(SAMPLE_PATH), [SAMPLE_PATH], {}
    if name.startswith("speed:"):
        config = name.split(":", 1)[1]
        if config not in SPEED_CONFIGS:
            raise UsageError(f"unknown SPEED-Bench config {config!r}; choose one of {', '.join(SPEED_CONFIGS)}")
        files = _speed_files(config, path)
        return lambda: read_speed(files, config), files, {"isl": SPEED_CONFIGS[config]}
    if name.endswith(".jsonl") and path is None:
        name, path = "jsonl", Path(name)
    readers = {"specbench": read_specbench, "mtbench": read_specbench, "jsonl": read_custom_jsonl,
               "sharegpt": read_sharegpt, "sharegpt:conversations": lambda p: read_sharegpt(p, True)}
    if name not in readers:
        raise UsageError(f"unknown workload {spec.name!r}; choose one of {', '.join(WORKLOAD_NAMES)} "
                         "or give a .jsonl file")
    if path is None:
        raise UsageError(f"--workload {name} reads a local file: pass --workload-path FILE")
    if not path.is_file():
        raise UsageError(f"workload file {path} not found")
    return lambda: readers[name](path), [path], {}


def _speed_files(config: str, path: Path | None) -> list[Path]:
    """--workload-path, else a copy resolved by `loadgen workloads prepare speed`, else the hub."""
    if path is not None:
        files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
        if not files or not files[0].exists():
            raise UsageError(f"no SPEED-Bench parquet at {path}")
        return files
    prepared = sorted((cache.cache_root() / "speed" / config).rglob("*.parquet"))
    if prepared:
        return prepared
    try:
        from huggingface_hub import snapshot_download
        folder = Path(snapshot_download(SPEED_REPO, repo_type="dataset", allow_patterns=[f"{config}/*"]))
    except Exception as exc:
        raise UsageError(f"cannot get {SPEED_REPO} ({config}) from the Hugging Face hub ({type(exc).__name__}); "
                         "pass --workload-path with a local copy") from None
    files = sorted(folder.rglob("*.parquet"))
    if not files:
        raise UsageError(f"{SPEED_REPO} has no parquet files for {config}")
    return files


def load_workload(spec: WorkloadSpec, *, prepare_only: bool = False) -> Workload:
    """All prompts of the workload, tokenized (from the cache when it was prepared before)."""
    if spec.name in ("random", "synthetic") and spec.options.keep_messages:
        raise UsageError("the random workload is token ids, which cannot be sent as chat messages or text: use "
                         "a text workload (sample, sharegpt, ...; --isl sets exact lengths) with --endpoint chat "
                         "or --prompt-format text")
    if spec.trace is not None:
        return _trace_workload(spec, spec.trace)
    if spec.name in ("random", "synthetic"):
        length = spec.options.isl or spec.input_len
        if length < 1:
            raise UsageError(f"--input-len must be at least 1, got {length}")
        return Workload("random", random_prompts(RANDOM_POOL, length, spec.seed),
                        {"source": "random", "input_len": length, "seed": spec.seed}, None)
    read, files, defaults = _reader(spec)
    options = spec.options if spec.options.isl is not None or "isl" not in defaults else \
        dataclasses.replace(spec.options, isl=defaults["isl"])
    folder = tokenizer_dir(spec.tokenizer)
    # "ids": the rule that makes a dataset's repeated ids distinct (sources.distinct_row_ids); a
    # workload cached before the rule may hold repeated ids, so it is prepared again
    parts = {"workload": spec.name, "source": cache.file_digest(files),
             "tokenizer": tokenizer_fingerprint(folder), "options": options.key(), "ids": "distinct"}
    key = cache.workload_key(parts)
    cached = cache.load_prompts(spec.name, key)
    if cached is not None:
        prompts, info = cached
        return Workload(spec.name, prompts, info | {"cached": True}, spec.tokenizer)
    started = time.perf_counter()
    rows = distinct_row_ids(read())
    needs_tokenizer = any(r.prompt_token_ids is None for r in rows)
    tokenizer = load_tokenizer(spec.tokenizer) if needs_tokenizer else None
    prompts = build_prompts(rows, tokenizer, options)
    info = {"source": [str(f) for f in files], "tokenizer": tokenizer.name if tokenizer else None,
            "tokenizer_fingerprint": parts["tokenizer"], "options": options.key(),
            "prepare_s": round(time.perf_counter() - started, 3)}
    cache.save_prompts(spec.name, key, prompts, info)
    return Workload(spec.name, prompts, info | {"cached": False}, spec.tokenizer)


def _trace_workload(spec: WorkloadSpec, window: TraceWindow) -> Workload:
    """The trace's rows as prompts of their exact lengths, from the workload's text (its rows' turns
    in an order shuffled with the seed) or, for --workload random, from seeded random ids. Built
    at each run, not cached: they depend on the trace's window as well as on the workload."""
    started = time.perf_counter()
    if spec.name in ("random", "synthetic"):
        head: list[int] = []
        tail: list[int] = []
        need = text_needed(window, 0)
        text, source, tokenizer_name = random_ids(need, spec.seed), "random ids", None
    else:
        read, files, _ = _reader(spec)
        rows = read()
        if any(r.prompt_token_ids is not None for r in rows):
            raise UsageError("--trace draws each prompt's text from the workload, but this one is pre-tokenized "
                             "(prompt_token_ids); choose a text workload")
        tokenizer = load_tokenizer(spec.tokenizer)
        head, tail = template_frame(tokenizer, spec.options)
        contents = [turn for row in rows for turn in row.turns]
        random.Random(spec.seed).shuffle(contents)
        need = text_needed(window, len(head) + len(tail))
        text = natural_text(tokenizer, contents, need)
        source, tokenizer_name = f"the text of --workload {spec.name}", tokenizer.name
    prompts = trace_prompts(window, text, head, tail, source)
    if spec.options.keep_messages:  # chat or text requests: each prompt's text, decoded from its ids
        prompts = [text_prompt(Conversation(p.prompt_id, p.category, max_tokens=p.max_tokens), tokenizer,
                               spec.options, p.token_ids[len(head):p.token_ids.size - len(tail)]) for p in prompts]
    info = {"source": "trace", "workload": spec.name, "tokenizer": tokenizer_name,
            "options": spec.options.key() if tokenizer_name else None, "text_needed": need,
            "text_tokens": int(text.size), "text_reread": bool(need > text.size),
            "template_tokens": len(head) + len(tail), "prepare_s": round(time.perf_counter() - started, 3),
            "cached": False, "trace": window.info()}
    return Workload(spec.name, prompts, info, spec.tokenizer, window)


def prepare_speed(config: str) -> Path:
    """Resolve SPEED-Bench's placeholder rows from their source datasets with NVIDIA's own
    preparation (Model-Optimizer examples/specdec_bench), into the cache where `speed:CONFIG` finds it."""
    if config not in SPEED_CONFIGS:
        raise UsageError(f"unknown SPEED-Bench config {config!r}; choose one of {', '.join(SPEED_CONFIGS)}")
    try:
        from specdec_bench.datasets.speed import SPEEDBench
    except ImportError:
        raise UsageError("preparing SPEED-Bench needs NVIDIA Model-Optimizer's examples/specdec_bench on PYTHONPATH "
                         "with its requirements_speed.txt installed (it downloads the source datasets)") from None
    out = cache.cache_root() / "speed" / config
    try:
        return Path(SPEEDBench.prepare_data(output_dir=out, config_name=config))
    except Exception as exc:  # network, hub and dataset errors from the preparation itself
        raise UsageError(f"SPEED-Bench preparation of {config} failed: {str(exc).splitlines()[0][:200]}") from None
