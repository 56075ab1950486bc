"""Each engine's own per-request figures, read off its emulated stream, journaled and cross-checked
per request against the stream: every request agrees at stream interval 1, every one is flagged
where chunks merge two steps, and an engine that gives none is reported as giving none."""

import json

import pytest

REQUESTS, MAX_TOKENS = 6, 40


def one_line(console: str) -> str:
    """The console text with its wrapping undone."""
    return " ".join(console.split())


def journal(out_dir):
    return [json.loads(line) for line in (out_dir / "requests.jsonl").read_text().splitlines()]


# llamacpp: 10 ms steps, well above the 2 ms gap that marks a step's start on its one-token chunks
@pytest.mark.parametrize("engine, flags", [
    ("vllm", ("--step-ms", "3", "--per-request-spec-decode-metrics", "summary")),
    ("trtllm", ("--step-ms", "3")),
    ("llamacpp", ("--step-ms", "10")),
])
def test_engine_figures_agree_with_the_stream_on_every_request(engine, flags, emulator, run_loadgen, tmp_path):
    emu = emulator("--engine", engine, "--ttft-ms", "2", "--seed", "5", *flags)
    report, console = run_loadgen(url=emu.url, num_requests=REQUESTS, concurrency=REQUESTS, max_tokens=MAX_TOKENS)
    records = journal(tmp_path / "out")
    spec = report["speculative"]
    check = spec["per_request_check"]
    per_category = spec["server_per_request"]["random"]
    assert check["given"] and check["requests_checked"] == per_category["requests_checked"] == REQUESTS
    steps = [r.get("server_steps") for r in records]
    if engine == "llamacpp":
        # The engine's count: N - 1 - accepted decode steps (its timings); the stream's, its bursts.
        # The two differ only where one read caught two steps (the emulator sends a late step at once
        # after the one before, on a busy machine): the grouped steps then start <= 2 ms apart, and
        # the check counts exactly those
        assert all(s is None for s in steps)
        for r in records:
            engine_steps = MAX_TOKENS - 1 - r["server_accepted_tokens"]
            merged = sum(1 for a, b in zip(r["chunk_ns"], r["chunk_ns"][1:]) if b - a <= 2_000_000)
            assert r["stream_steps"] - 1 == engine_steps - merged, r["request_id"]
        agreeing = sum(1 for r in records if r["stream_steps"] - 1 == MAX_TOKENS - 1 - r["server_accepted_tokens"])
        assert check["requests_agreeing"] == per_category["requests_agreeing"] == agreeing
        return
    assert check["requests_agreeing"] == per_category["requests_agreeing"] == REQUESTS, check
    assert not check["largest_disagreements"] and not check["likely_causes"]
    assert f"{REQUESTS} of {REQUESTS} requests' decode steps agree" in one_line(console)
    assert all(s == len(r["chunk_tokens"]) - 1 for s, r in zip(steps, records))  # the engine's own count
    assert sum(steps) == spec["server"]["drafts"]  # the emulator's server counters are the truth
    if engine == "vllm":  # its figures per request sum to its counters
        for r in records:  # each step streams 1 + its accepted drafts; the last may be cut by max_tokens
            cut = r["server_steps"] + r["server_accepted_tokens"] - sum(r["chunk_tokens"][1:])
            assert 0 <= cut <= 3 and r["server_draft_tokens"] == 3 * r["server_steps"], r["request_id"]
        assert sum(r["server_accepted_tokens"] for r in records) == spec["server"]["accepted_tokens"]
        assert sum(r["server_draft_tokens"] for r in records) == spec["server"]["draft_tokens"]
        assert per_category["acceptance_rate"] == spec["server"]["accepted_tokens"] / spec["server"]["draft_tokens"]
    else:  # trtllm: no draft counts on its stream: none reported, never zeros
        assert per_category["draft_tokens"] is None and per_category["acceptance_rate"] is None


@pytest.mark.parametrize("engine", ["vllm", "trtllm"])
def test_chunks_that_merge_steps_are_flagged_per_request(engine, emulator, run_loadgen):
    flags = ("--per-request-spec-decode-metrics", "summary") if engine == "vllm" else ()
    emu = emulator("--engine", engine, "--ttft-ms", "2", "--step-ms", "3", "--seed", "5", "--stream-interval", "2",
                   *flags)
    report, console = run_loadgen(url=emu.url, num_requests=REQUESTS, concurrency=REQUESTS, max_tokens=MAX_TOKENS)
    check = report["speculative"]["per_request_check"]
    assert check["requests_checked"] == REQUESTS and check["requests_agreeing"] == 0
    worst = check["largest_disagreements"][0]
    assert worst["client_decode_steps"] < worst["engine_decode_steps"]  # two steps per chunk: about half
    assert worst["client_decode_steps"] == pytest.approx(worst["engine_decode_steps"] / 2, abs=1)
    assert check["likely_causes"][0].startswith(f"{REQUESTS} request(s) with fewer steps on the stream: chunks merged")
    assert f"0 of {REQUESTS} requests' decode steps agree" in one_line(console)


def test_engines_without_per_request_figures_say_so(emulator, run_loadgen, tmp_path):
    """SGLang's /v1/completions stream carries none; vLLM without its server flag sends none."""
    sglang = emulator("--engine", "sglang", "--ttft-ms", "2", "--step-ms", "3")
    report, console = run_loadgen(url=sglang.url, num_requests=2, concurrency=2, max_tokens=8)
    check = report["speculative"]["per_request_check"]
    assert not check["given"] and check["source"].startswith("not given by sglang 0.5.9")
    assert report["speculative"]["server_per_request"] is None
    assert "Per-request engine figures: not given by sglang 0.5.9" in one_line(console)
    vllm = emulator("--engine", "vllm", "--ttft-ms", "2", "--step-ms", "3")
    report, console = run_loadgen(url=vllm.url, num_requests=2, concurrency=2, max_tokens=8,
                                  output_dir=tmp_path / "vllm")
    check = report["speculative"]["per_request_check"]
    assert check["given"] and check["requests_checked"] == 0 and report["speculative"]["server_per_request"] is None
    assert all("server_steps" not in r for r in journal(tmp_path / "vllm"))
    assert "Per-request engine figures: none received" in one_line(console)
