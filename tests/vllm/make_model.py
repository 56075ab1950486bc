"""Make the tiny random-weight Llama models that the real-vLLM tests serve (no hub, ~15 s).

Run with the vLLM venv's python (it has torch and transformers; loadgen's venv has no torch):

    VENV/bin/python tests/vllm/make_model.py OUT_DIR --tokenizer ../shared/tokenizers/llama3

OUT_DIR gets four Hugging Face model folders, each with the real Llama-3 tokenizer files, so token
ids mean the same thing to loadgen (`--tokenizer OUT_DIR/target`) and to the server:

- target/           4 layers, hidden 256 (35 M parameters, bf16)
- draft-small/      1 layer, hidden 64, its own random weights: a random model's greedy output soon
                    repeats one token, so even an unrelated draft is accepted almost always
- draft-perturbed/  the target with noise added to every weight: it agrees with the target on most
                    steps but not all, so acceptance is partial and the per-position rates differ
- eagle3-head/      an EAGLE-3 head for the target, random weights, named as vLLM's loader expects
                    (vllm/model_executor/models/llama_eagle3.py: "midlayer." -> layers.0, d2t -> its draft-to-
                    target map, t2d skipped): one "midlayer" whose q/k/v take the token's embedding and the fused
                    target hidden state side by side (2 x 256), "fc" fusing three of the target's hidden states
                    (3 x 256 -> 256), its own lm_head over a reduced draft vocabulary, no embed_tokens (vLLM
                    shares the target's). Being random it almost never agrees with the target: it drafts on
                    every step and nearly nothing is accepted

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
#: the head's draft vocabulary, smaller than the target's 128256 so that vLLM maps its logits back through d2t
#: (vllm/model_executor/models/llama_eagle3.py, Eagle3LlamaForCausalLM.compute_logits)
EAGLE3_DRAFT_VOCAB = 32000
#: which of the target's hidden states the head fuses: vLLM's default, (2, L // 2, L - 3), is (2, 2, 1) for
#: 4 layers, which it deduplicates to two (interfaces.py, _set_aux_hidden_state_layers) while the head's fc
#: expects three; so the config names three distinct ones (index i = the input of layer i, 4 = the last output)
EAGLE3_AUX_LAYERS = (1, 2, 3)


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


def _save_eagle3_head(tokenizer_dir: Path, out: Path, *, seed: int) -> None:
    """An EAGLE-3 head for the target (hidden 256, 4 heads, 2 KV heads, intermediate 512) with random
    weights: std 0.02 matrices (the Llama initializer_range), unit norms, a seeded random draft vocabulary."""
    import torch
    from safetensors.torch import save_file

    cfg = _config(hidden=256, layers=1, heads=4, kv_heads=2, intermediate=512)
    cfg.architectures = ["LlamaForCausalLMEagle3"]  # vllm/model_executor/models/registry.py -> llama_eagle3
    cfg.tie_word_embeddings = False
    cfg.draft_vocab_size = EAGLE3_DRAFT_VOCAB
    cfg.target_hidden_size = 256
    cfg.eagle_config = {"eagle_aux_hidden_state_layer_ids": list(EAGLE3_AUX_LAYERS), "use_aux_hidden_state": True}
    cfg.dtype = "bfloat16"
    hidden, head_dim, kv_dim, inter = 256, 64, 2 * 64, 512
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return (torch.randn(shape, generator=generator) * cfg.initializer_range).to(torch.bfloat16)

    def ones(n: int) -> torch.Tensor:
        return torch.ones(n, dtype=torch.bfloat16)

    draft_ids = torch.randperm(cfg.vocab_size, generator=generator)[:EAGLE3_DRAFT_VOCAB].sort().values
    t2d = torch.zeros(cfg.vocab_size, dtype=torch.bool)
    t2d[draft_ids] = True
    tensors = {
        "midlayer.input_layernorm.weight": ones(hidden),
        "midlayer.hidden_norm.weight": ones(hidden),
        "midlayer.post_attention_layernorm.weight": ones(hidden),
        "midlayer.self_attn.q_proj.weight": rand(4 * head_dim, 2 * hidden),
        "midlayer.self_attn.k_proj.weight": rand(kv_dim, 2 * hidden),
        "midlayer.self_attn.v_proj.weight": rand(kv_dim, 2 * hidden),
        "midlayer.self_attn.o_proj.weight": rand(hidden, 4 * head_dim),
        "midlayer.mlp.gate_proj.weight": rand(inter, hidden),
        "midlayer.mlp.up_proj.weight": rand(inter, hidden),
        "midlayer.mlp.down_proj.weight": rand(hidden, inter),
        "norm.weight": ones(hidden),
        "fc.weight": rand(hidden, len(EAGLE3_AUX_LAYERS) * cfg.target_hidden_size),
        "lm_head.weight": rand(EAGLE3_DRAFT_VOCAB, hidden),
        "d2t": draft_ids - torch.arange(EAGLE3_DRAFT_VOCAB),  # offsets: target id = draft id + d2t[draft id]
        "t2d": t2d,
    }
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    cfg.to_json_file(tmp / "config.json")
    save_file(tensors, tmp / "model.safetensors", metadata={"format": "pt"})
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

    _save_eagle3_head(tokenizer_dir, out_dir / "eagle3-head", seed=3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path,
                    help="folder to write target/, draft-small/, draft-perturbed/ and eagle3-head/ into")
    ap.add_argument("--tokenizer", type=Path, required=True,
                    help="a folder with the Llama-3 tokenizer.json and tokenizer_config.json")
    a = ap.parse_args(argv)
    make_models(a.out, a.tokenizer)
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
