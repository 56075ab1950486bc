"""Tiny random-weight llama models carrying a REAL vocabulary, for tests against llama-server.

`make_model` writes a llama-architecture GGUF whose weights are seeded random numbers (its text is
gibberish, but its token ids are real) and whose tokenizer is copied verbatim from one of llama.cpp's
vocab-only GGUFs (`ggml-vocab-llama-bpe.gguf` = Llama 3), with a chat template. The same arguments
always give the same bytes. A one-layer model with another seed serves as the draft.

`make_tokenizer` writes the Hugging Face tokenizer folder (tokenizer.json + tokenizer_config.json
with the chat template) for the same vocabulary, so loadgen can template and tokenize prompts
exactly as the server would; it is built from the GGUF's own tokens and merges, without torch.

    python tests/llamacpp/make_model.py VOCAB_GGUF OUT.gguf [--layers 2] [--embd 64] [--seed 0]
        [--untied 3.0] [--template FILE.jinja] [--tokenizer-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
from pathlib import Path

import numpy as np

__all__ = ["make_model", "make_tokenizer", "read_gguf_metadata"]

# GGUF value types (gguf.GGUFValueType); kept here so reading needs no `gguf` import.
_UINT8, _INT8, _UINT16, _INT16, _UINT32, _INT32, _FLOAT32, _BOOL, _STRING, _ARRAY, _UINT64, _INT64, _FLOAT64 = range(13)
_SCALAR = {_UINT8: "<B", _INT8: "<b", _UINT16: "<H", _INT16: "<h", _UINT32: "<I", _INT32: "<i",
           _FLOAT32: "<f", _BOOL: "<?", _UINT64: "<Q", _INT64: "<q", _FLOAT64: "<d"}


def read_gguf_metadata(path: Path) -> dict[str, tuple[object, int, int | None]]:
    """A GGUF file's key/value header as {key: (value, type, array element type or None)}.

    Ours rather than gguf.GGUFReader, which takes ~15 s on a Llama-3 vocabulary (it maps each of the
    ~400k strings separately); this reads the same header in well under a second.
    """
    data = Path(path).read_bytes()
    if data[:4] != b"GGUF":
        raise ValueError(f"{path} is not a GGUF file")
    version, _n_tensors, n_kv = struct.unpack_from("<IQQ", data, 4)
    if version < 2:
        raise ValueError(f"{path}: GGUF version {version} is not supported")
    pos = 24

    def string() -> str:
        nonlocal pos
        (n,) = struct.unpack_from("<Q", data, pos)
        pos += 8 + n
        return data[pos - n:pos].decode("utf-8")

    def scalar(vtype: int) -> object:
        nonlocal pos
        if vtype == _STRING:
            return string()
        fmt = _SCALAR[vtype]
        (value,) = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return value

    out: dict[str, tuple[object, int, int | None]] = {}
    for _ in range(n_kv):
        key = string()
        (vtype,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if vtype != _ARRAY:
            out[key] = (scalar(vtype), vtype, None)
            continue
        sub, count = struct.unpack_from("<IQ", data, pos)
        pos += 12
        if sub in _SCALAR:  # numbers: one numpy view instead of `count` unpacks
            dtype = np.dtype(_SCALAR[sub])
            values = np.frombuffer(data, dtype, count, pos).tolist()
            pos += dtype.itemsize * count
        elif sub == _STRING:
            values = [string() for _ in range(count)]
        else:
            raise ValueError(f"{path}: nested arrays in {key!r} are not supported")
        out[key] = (values, vtype, sub)
    return out


def make_model(vocab_gguf: Path, out: Path, *, layers: int = 2, embd: int = 64, seed: int = 0,
               untied: float = 3.0, template: Path | None = None, heads: int = 4, kv_heads: int = 2,
               ff: int = 128, ctx: int = 32768, std: float = 0.5) -> Path:
    """Write a random-weight llama GGUF with the vocabulary (every `tokenizer.*` key) of `vocab_gguf`.

    `untied` > 0 adds a separate output matrix whose logits have that standard deviation, so the
    random model's next token varies more than with the tied embedding (`untied=0`). `template`
    replaces the vocab's chat template (the vocab GGUFs carry none). Written to a temporary name
    and renamed, so an interrupted run never leaves a truncated model behind.
    """
    import gguf  # the writer; only this function needs the package

    vocab_gguf, out = Path(vocab_gguf), Path(out)
    if embd % heads or heads % kv_heads:
        raise ValueError(f"embd={embd} must divide by heads={heads}, and heads by kv_heads={kv_heads}")
    meta = read_gguf_metadata(vocab_gguf)
    if "tokenizer.ggml.tokens" not in meta:
        raise ValueError(f"{vocab_gguf} holds no tokenizer")
    n_vocab = len(meta["tokenizer.ggml.tokens"][0])

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    w = gguf.GGUFWriter(str(tmp), "llama")
    w.add_name(f"tiny-random-llama-{layers}L-{embd}d-seed{seed}" + (f"-untied{untied:g}" if untied > 0 else ""))
    w.add_context_length(ctx)
    w.add_embedding_length(embd)
    w.add_block_count(layers)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(embd // heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(500000.0)
    w.add_vocab_size(n_vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    for key, (value, vtype, sub) in meta.items():
        if key.startswith("tokenizer.") and not (key == "tokenizer.chat_template" and template is not None):
            w.add_key_value(key, value, gguf.GGUFValueType(vtype), None if sub is None else gguf.GGUFValueType(sub))
    if template is not None:
        w.add_chat_template(Path(template).read_text(encoding="utf-8"))

    rng = np.random.default_rng(seed)
    head_dim = embd // heads

    def mat(rows: int, cols: int) -> np.ndarray:  # numpy (rows, cols) is ggml's ne = [cols, rows]
        return (rng.standard_normal((rows, cols)) * std / np.sqrt(cols)).astype(np.float16)

    w.add_tensor("token_embd.weight", (rng.standard_normal((n_vocab, embd)) * std).astype(np.float16))
    w.add_tensor("output_norm.weight", np.ones(embd, dtype=np.float32))
    if untied > 0:
        output = rng.standard_normal((n_vocab, embd)) * untied / np.sqrt(embd)
        w.add_tensor("output.weight", output.astype(np.float16))
    for i in range(layers):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(embd, dtype=np.float32))
        w.add_tensor(p + "attn_q.weight", mat(heads * head_dim, embd))
        w.add_tensor(p + "attn_k.weight", mat(kv_heads * head_dim, embd))
        w.add_tensor(p + "attn_v.weight", mat(kv_heads * head_dim, embd))
        w.add_tensor(p + "attn_output.weight", mat(embd, heads * head_dim))
        w.add_tensor(p + "ffn_norm.weight", np.ones(embd, dtype=np.float32))
        w.add_tensor(p + "ffn_gate.weight", mat(ff, embd))
        w.add_tensor(p + "ffn_up.weight", mat(ff, embd))
        w.add_tensor(p + "ffn_down.weight", mat(embd, ff))
    try:
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


# llama.cpp's LLAMA_VOCAB_PRE_TYPE_LLAMA3 split, as written in Meta's Llama-3 tokenizer.json
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_LLAMA3_PRE = ("llama-bpe", "llama3", "llama-v3")
_CONTROL, _USER_DEFINED = 3, 4  # llama.cpp token types that are matched as whole special tokens


def make_tokenizer(vocab_gguf: Path, out_dir: Path, *, template: Path | None = None) -> Path:
    """Write a Hugging Face tokenizer folder for a Llama-3 (`gpt2` model, `llama-bpe` pre) vocab GGUF.

    The same byte-level BPE as Meta's own tokenizer.json: the Llama-3 split regex, `ignore_merges`
    (a word that is itself a token is not merged piecewise, as llama.cpp does for this vocab),
    control tokens as special added tokens, and BOS prepended on `encode(add_special_tokens=True)`.
    `template` (or the GGUF's own chat template) goes into tokenizer_config.json.
    """
    meta = read_gguf_metadata(vocab_gguf)
    model = meta.get("tokenizer.ggml.model", (None,))[0]
    pre = meta.get("tokenizer.ggml.pre", (None,))[0]
    if model != "gpt2" or pre not in _LLAMA3_PRE:
        raise ValueError(f"{vocab_gguf}: only Llama-3 vocabularies (model gpt2, pre llama-bpe) are supported, "
                         f"not model={model!r} pre={pre!r}")
    tokens: list[str] = meta["tokenizer.ggml.tokens"][0]
    types: list[int] = meta["tokenizer.ggml.token_type"][0]
    merges = [m.split(" ", 1) for m in meta["tokenizer.ggml.merges"][0]]
    bos_id = meta["tokenizer.ggml.bos_token_id"][0]
    eos_id = meta["tokenizer.ggml.eos_token_id"][0]
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", (True,))[0])  # llama.cpp's default for llama-bpe
    bos, eos = tokens[bos_id], tokens[eos_id]

    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": types[i] == _CONTROL}
             for i, t in enumerate(tokens) if types[i] in (_CONTROL, _USER_DEFINED)]
    spec = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": _LLAMA3_SPLIT}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": {t: i for i, t in enumerate(tokens)}, "merges": merges},
    }
    if add_bos:
        single = [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]
        pair = single + [{"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}]
        spec["post_processor"] = {"type": "TemplateProcessing", "single": single, "pair": pair,
                                  "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}}}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": bos, "eos_token": eos,
              "add_bos_token": add_bos, "add_eos_token": False, "model_max_length": 131072,
              "clean_up_tokenization_spaces": False}
    chat_template = (Path(template).read_text(encoding="utf-8") if template is not None
                     else meta.get("tokenizer.chat_template", (None,))[0])
    if chat_template:
        config["chat_template"] = chat_template

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, content in (("tokenizer.json", spec), ("tokenizer_config.json", config)):
        tmp = out_dir / f".{name}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(content, ensure_ascii=False, indent=None if name == "tokenizer.json" else 2),
                       encoding="utf-8")
        os.replace(tmp, out_dir / name)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("vocab", type=Path, help="a vocab-only GGUF, e.g. ggml-vocab-llama-bpe.gguf")
    ap.add_argument("out", type=Path, help="the model GGUF to write")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--embd", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--untied", type=float, default=3.0, help="std of a separate output matrix's logits; 0 = tied")
    ap.add_argument("--template", type=Path, default=None, help="chat template (.jinja) to embed")
    ap.add_argument("--tokenizer-dir", type=Path, default=None,
                    help="also write the Hugging Face tokenizer folder for the vocab here")
    a = ap.parse_args(argv)
    make_model(a.vocab, a.out, layers=a.layers, embd=a.embd, seed=a.seed, untied=a.untied, template=a.template)
    print(f"wrote {a.out} ({a.out.stat().st_size / 1e6:.1f} MB)")
    if a.tokenizer_dir is not None:
        make_tokenizer(a.vocab, a.tokenizer_dir, template=a.template)
        print(f"wrote {a.tokenizer_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
