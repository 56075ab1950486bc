"""Make the tiny random-weight Llama models that the real-vLLM tests serve (no hub, ~15 s).

Run with the vLLM venv's python (it has torch and transformers; loadgen's venv has no torch):

    VENV/bin/python tests/vllm/make_model.py OUT_DIR --tokenizer ../shared/tokenizers/llama3

OUT_DIR gets three Hugging Face model folders, each with the real Llama-3 tokenizer files, so token
ids mean the same thing to loadgen (`--tokenizer OUT_DIR/target`) and to the server:

- target/           4 layers, hidden 256 (35 M parameters, bf16)
- draft-small/      1 layer, hidden 64, its own random weights: a random model's greedy output soon
                    repeats one token, so even an unrelated draft is accepted almost always
- draft-perturbed/  the target with noise added to every weight: it agrees with the target on most
                    steps but not all, so acceptance is partial and the per-position rates differ

Each folder is written under a temporary name and renamed, so an interrupted run leaves none half-made.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
#: noise std relative to each weight matrix's own: 0.2 still agreed with the target's greedy token on 97 % of
#: steps, 0.3 on 30 %, 0.4 on 6 % (measured on the target's own greedy continuations)
PERTURBATION = 0.3


def _config(*, hidden: int, layers: int, heads: int, kv_heads: int, intermediate: int):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=128256, hidden_size=hidden, num_hidden_layers=layers,
                       num_attention_heads=heads, num_key_value_heads=kv_heads, intermediate_size=intermediate,
                       max_position_embeddings=4096, tie_word_embeddings=True, bos_token_id=128000,
                       eos_token_id=128001)


def _save(model, tokenizer_dir: Path, out: Path) -> None:
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    for name in TOKENIZER_FILES:
        shutil.copy(tokenizer_dir / name, tmp / name)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def make_models(out_dir: Path, tokenizer_dir: Path) -> None:
    import torch
    from transformers import LlamaForCausalLM

    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    target = LlamaForCausalLM(_config(hidden=256, layers=4, heads=4, kv_heads=2, intermediate=512))
    _save(target.to(torch.bfloat16), tokenizer_dir, out_dir / "target")

    torch.manual_seed(1)
    small = LlamaForCausalLM(_config(hidden=64, layers=1, heads=2, kv_heads=1, intermediate=128))
    _save(small.to(torch.bfloat16), tokenizer_dir, out_dir / "draft-small")

    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for param in target.parameters():  # in place: the target is saved already
            if param.dim() > 1:  # the matrices; norms stay ones
                noise = torch.randn(param.shape, generator=generator, dtype=param.dtype)
                param.add_(noise * param.float().std().to(param.dtype) * PERTURBATION)
    _save(target, tokenizer_dir, out_dir / "draft-perturbed")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="folder to write target/, draft-small/ and draft-perturbed/ into")
    ap.add_argument("--tokenizer", type=Path, required=True,
                    help="a folder with the Llama-3 tokenizer.json and tokenizer_config.json")
    a = ap.parse_args(argv)
    make_models(a.out, a.tokenizer)
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
