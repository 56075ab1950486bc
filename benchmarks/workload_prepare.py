"""Prepare a SPEED-Bench throughput_32k-sized workload (1,536 prompts x 32,768 tokens) from text,
then load it again from the cache, and print both times.

The text: SPEED-Bench itself is not redistributable, so a parquet in its schema is written from
local prompt text (default: ../shared/data, else loadgen's own sample workload), each row a
different ~40k-token run of that text. Preparation then does what it does for the real dataset:
read the parquet, apply the chat template, tokenize with the target tokenizer, cut every prompt
to exactly 32,768 tokens, and cache the ids.

    python benchmarks/workload_prepare.py [--tokenizer DIR] [--rows 1536] [--config throughput_32k]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from loadgen.workloads import SAMPLE_PATH, WorkloadSpec, load_workload
from loadgen.workloads.registry import SPEED_CONFIGS

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def source_texts() -> list[str]:
    texts = []
    if SHARED_DATA.is_dir():
        for line in (SHARED_DATA / "spec_bench_question.jsonl").read_text().splitlines():
            texts += json.loads(line)["turns"]
        texts += [c["conversations"][0]["value"] for c in json.loads((SHARED_DATA / "sharegpt_v3_first_turn_500.json")
                                                                        .read_text())]
    else:
        texts += [t for line in SAMPLE_PATH.read_text().splitlines() for t in json.loads(line)["turns"]]
    return texts


def write_parquet(path: Path, rows: int, chars: int) -> None:
    texts = source_texts()
    corpus = "\n\n".join(texts)
    while len(corpus) < 2 * chars:
        corpus += "\n\n" + corpus
    step = max(1, (len(corpus) - chars) // rows)
    turns = [[corpus[i * step:i * step + chars]] for i in range(rows)]
    tiers = ["low_entropy", "mixed", "high_entropy"]
    pq.write_table(pa.table({"question_id": [f"t{i}" for i in range(rows)],
                             "category": [tiers[i % 3] for i in range(rows)],
                             "sub_category": [""] * rows, "turns": turns}), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", help="tokenizer folder [default: the built-in Phi-3]")
    parser.add_argument("--rows", type=int, default=1536)
    parser.add_argument("--config", default="throughput_32k", choices=[c for c in SPEED_CONFIGS if c != "qualitative"])
    args = parser.parse_args()
    isl = SPEED_CONFIGS[args.config]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LOADGEN_CACHE_DIR"] = str(Path(tmp) / "cache")
        parquet = Path(tmp) / "test.parquet"
        t = time.perf_counter()
        write_parquet(parquet, args.rows, chars=isl * 5)
        print(f"wrote {args.rows} rows of ~{isl * 5} characters in {time.perf_counter() - t:.1f} s "
              f"({parquet.stat().st_size / 2**20:.0f} MiB parquet)")
        spec = WorkloadSpec(f"speed:{args.config}", parquet, args.tokenizer)
        t = time.perf_counter()
        prepared = load_workload(spec)
        prepare_s = time.perf_counter() - t
        t = time.perf_counter()
        cached = load_workload(spec)
        load_s = time.perf_counter() - t
        assert cached.info["cached"] and {p.token_ids.size for p in cached.prompts} == {isl}
        tokens = sum(p.token_ids.size for p in prepared.prompts)
        print(f"prepare: {len(prepared.prompts)} prompts x {isl} tokens = {tokens / 1e6:.1f} M tokens in "
              f"{prepare_s:.1f} s ({tokens / prepare_s / 1e6:.2f} M tokens/s), tokenizer {prepared.info['tokenizer']}")
        print(f"load from cache: {load_s:.2f} s")
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")


if __name__ == "__main__":
    main()
