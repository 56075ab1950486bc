"""The emulator's vllm personality against what vLLM 0.32.0 itself sent (fixtures/vllm-real/):
the same keys in the same order per chunk type, the same stream ending, the same /metrics names,
types, labels and `_created` gauges, and the same token and counter accounting for the same
request (prompt of 48 token ids, max_tokens 64, 3 draft tokens, every draft accepted)."""

import json
import re
import urllib.request
from pathlib import Path

import pytest

REAL = Path(__file__).parent / "fixtures" / "vllm-real"
REQUEST = {"model": "tiny-llama", "prompt": list(range(1, 49)), "max_tokens": 64, "temperature": 0.0,
           "ignore_eos": True, "stream": True,
           "stream_options": {"include_usage": True, "continuous_usage_stats": True}}
#: both captured servers accepted every draft token (tiny-llama drafting for itself, and n-gram on a
#: repetitive text), so the emulator is run with acceptance 1 at each of the 3 positions
ALWAYS_ACCEPT = ("--model", "tiny-llama", "--accept", "1,1,1", "--ttft-ms", "1", "--step-ms", "1")
#: decode steps vLLM's n-gram drafter drafted nothing for at the start of the captured request
NGRAM_UNDRAFTED_STEPS = 4
SPEC_COUNTERS = ("vllm:spec_decode_num_drafts_total", "vllm:spec_decode_num_draft_tokens_total",
                 "vllm:spec_decode_num_accepted_tokens_total")


def sse_events(raw: str) -> list:
    return [json.loads(block[len("data: "):]) if block != "data: [DONE]" else "[DONE]"
            for block in raw.split("\n\n") if block]


def tokens_per_chunk(events: list) -> list[int]:
    counts = [e["usage"]["completion_tokens"] for e in events if isinstance(e, dict) and e["choices"]]
    return [b - a for a, b in zip([0, *counts], counts)]


def families(text: str) -> dict[str, dict]:
    """Prometheus text -> {family: {"type", "help", "labels": {label-name tuple, ...}, "samples": {line key: text}}}."""
    out: dict[str, dict] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_ = line[len("# HELP "):].partition(" ")
            out.setdefault(name, {"labels": set(), "samples": {}})["help"] = help_
        elif line.startswith("# TYPE "):
            name, kind = line[len("# TYPE "):].split(" ")
            out.setdefault(name, {"labels": set(), "samples": {}})["type"] = kind
        elif line:
            key, value = line.rsplit(" ", 1)
            name = key.partition("{")[0]
            family = out[name if name in out else re.sub(r"_(sum|count|bucket)$", "", name)]
            family["labels"].add(tuple(re.findall(r'(\w+)="', key)))
            family["samples"][key] = value
    return out


def real_stream(name: str) -> list:
    return sse_events((REAL / name).read_text())


def real_metrics(name: str) -> dict[str, dict]:
    return families((REAL / name).read_text())


def post_stream(url: str) -> list:
    request = urllib.request.Request(url + "/v1/completions", data=json.dumps(REQUEST).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=20) as resp:
        return sse_events(resp.read().decode())


def get(url: str, path: str) -> bytes:
    with urllib.request.urlopen(url + path, timeout=10) as resp:
        return resp.read()


def shape(events: list) -> dict:
    """Key order per chunk type: token chunks, the usage-only chunk, and how the stream ends."""
    token_chunks = [e for e in events if isinstance(e, dict) and e["choices"]]
    usage_only = [e for e in events if isinstance(e, dict) and not e["choices"]]
    return {"chunk": {tuple(e) for e in token_chunks},
            "choice": {tuple(e["choices"][0]) for e in token_chunks},
            "usage": {tuple(e["usage"]) for e in token_chunks + usage_only},
            "usage_chunk": [tuple(e) for e in usage_only],
            "finish": [e["choices"][0]["finish_reason"] for e in token_chunks][-2:],
            "ending": ["usage only" if isinstance(e, dict) and not e["choices"] else e for e in events[-2:]],
            "token_ids": {e["choices"][0]["token_ids"] for e in token_chunks}}


@pytest.mark.parametrize("capture", ["ngram-stream.sse", "draft-stream.sse"])
def test_stream_has_the_real_keys_order_and_ending(emulator, capture):
    emu = emulator("--engine", "vllm", *ALWAYS_ACCEPT)
    real, emulated = real_stream(capture), post_stream(emu.url)
    assert shape(emulated) == shape(real)
    assert shape(real)["ending"] == ["usage only", "[DONE]"]
    real_id, emulated_id = real[0]["id"], emulated[0]["id"]
    assert re.fullmatch(r"cmpl-[0-9a-f]{16}", real_id) and re.fullmatch(r"cmpl-[0-9a-f]{16}", emulated_id)
    fingerprint = r"vllm-0\.32\.0-[0-9a-f]{8}"
    assert re.fullmatch(fingerprint, real[-2]["system_fingerprint"])
    assert re.fullmatch(fingerprint, emulated[-2]["system_fingerprint"])


def test_draft_model_tokens_and_counters_equal_the_real(emulator):
    """vLLM drafts 3 tokens on every decode step and counts all 3 accepted on the last one, though
    max_tokens lets only 2 of them out: 16 drafts, 48 accepted, while 63 tokens follow the first."""
    emu = emulator("--engine", "vllm", *ALWAYS_ACCEPT)
    real = real_stream("draft-stream.sse")
    assert tokens_per_chunk(post_stream(emu.url)) == tokens_per_chunk(real) == [1, *[4] * 15, 3]
    post_stream(emu.url)  # the captured /metrics followed two such requests
    emulated_metrics = families(get(emu.url, "/metrics").decode())
    real_metrics_after = real_metrics("draft-metrics-after.prom")
    for name in (*SPEC_COUNTERS, "vllm:spec_decode_num_accepted_tokens_per_pos_total",
                 "vllm:generation_tokens_total", "vllm:prompt_tokens_total"):
        assert emulated_metrics[name]["samples"] == real_metrics_after[name]["samples"], name


def test_request_spec_decode_metrics_are_the_real(emulator):
    """--per-request-spec-decode-metrics summary: the final usage chunk's `metrics` as vLLM sent it,
    key for key and figure for figure (16 verify steps, each accepting all 3 drafts)."""
    emu = emulator("--engine", "vllm", *ALWAYS_ACCEPT, "--per-request-spec-decode-metrics", "summary")
    real, emulated = real_stream("draft-stream-request-metrics.sse"), post_stream(emu.url)
    assert shape(emulated) == shape(real)
    assert emulated[-2]["metrics"] == real[-2]["metrics"]
    assert list(emulated[-2]["metrics"]["speculative_decoding"]) == list(real[-2]["metrics"]["speculative_decoding"])
    assert "metrics" not in post_stream(emulator("--engine", "vllm", *ALWAYS_ACCEPT).url)[-2]  # vLLM's default: none


def test_ngram_undrafted_start_drafts_nothing_for_the_first_steps(emulator):
    """vLLM's n-gram drafter has nothing to match for the first steps of a request: they deliver one
    token each and are no drafts on /metrics; --undrafted-start models them."""
    emu = emulator("--engine", "vllm", *ALWAYS_ACCEPT, "--undrafted-start", str(NGRAM_UNDRAFTED_STEPS))
    first_chunks = 1 + NGRAM_UNDRAFTED_STEPS  # the prefill's and the undrafted steps'
    real_tokens, emulated_tokens = tokens_per_chunk(real_stream("ngram-stream.sse")), tokens_per_chunk(
        post_stream(emu.url))
    assert real_tokens[:first_chunks] == emulated_tokens[:first_chunks] == [1] * first_chunks
    assert min(emulated_tokens[first_chunks:]) > 1 < real_tokens[first_chunks]
    real_drafts = float(real_metrics("ngram-metrics-after.prom")["vllm:spec_decode_num_drafts_total"]
                        ["samples"]['vllm:spec_decode_num_drafts_total{engine="0",model_name="tiny-llama"}'])
    emulated_drafts = float(families(get(emu.url, "/metrics").decode())["vllm:spec_decode_num_drafts_total"]
                            ["samples"]['vllm:spec_decode_num_drafts_total{engine="0",model_name="tiny-llama"}'])
    assert real_drafts == len(real_tokens) - first_chunks
    assert emulated_drafts == len(emulated_tokens) - first_chunks


def test_metrics_names_types_labels_and_created_gauges_are_the_real(emulator):
    emu = emulator("--engine", "vllm", *ALWAYS_ACCEPT)
    post_stream(emu.url)
    emulated = {name: f for name, f in families(get(emu.url, "/metrics").decode()).items()
                if name.startswith("vllm:")}
    real = real_metrics("ngram-metrics-after.prom")
    for name, family in emulated.items():
        assert name in real, name
        assert (family["type"], family["help"], family["labels"]) == (
            real[name]["type"], real[name]["help"], real[name]["labels"]), name
        if family["type"] == "counter":
            created = name.removesuffix("_total") + "_created"
            assert created in emulated and emulated[created]["labels"] == family["labels"], created
            assert all(re.fullmatch(r"\d\.\d+e\+09", v) for v in emulated[created]["samples"].values()), created
    assert {"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
            "vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:request_success_total",
            "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total", "vllm:prompt_tokens_cached_total",
            *SPEC_COUNTERS, "vllm:spec_decode_num_accepted_tokens_per_pos_total"} <= set(emulated)
    assert emulated["vllm:request_success_total"]["samples"].keys() == real["vllm:request_success_total"][
        "samples"].keys()


def test_models_and_version_as_vllm_writes_them(emulator):
    """Not in the captures: read from vLLM's source (ModelCard, ModelPermission, /version)."""
    emu = emulator("--engine", "vllm", "--model", "tiny-llama")
    models = json.loads(get(emu.url, "/v1/models"))
    [card] = models["data"]
    assert list(models) == ["object", "data"]
    assert list(card) == ["id", "object", "created", "owned_by", "root", "parent", "max_model_len", "permission"]
    assert (card["id"], card["owned_by"], card["root"], card["max_model_len"]) == ("tiny-llama", "vllm",
                                                                                   "tiny-llama", 131072)
    [permission] = card["permission"]
    assert permission["object"] == "model_permission" and permission["id"].startswith("modelperm-")
    assert json.loads(get(emu.url, "/version")) == {"version": "0.32.0"}
