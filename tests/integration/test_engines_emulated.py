"""Every adapter against its emulator personality: the client's parsing, the server metrics and
the cross-check, with the emulator's per-category acceptance as the truth."""

import json
import urllib.request

import pytest

PROFILE = {"easy": [0.9, 0.8, 0.7], "hard": [0.5, 0.3, 0.2]}
MAX_TOKENS = 1000


def truth(conditional):
    total, reach = 1.0, 1.0
    for p in conditional:
        reach *= p
        total += reach
    return total


@pytest.fixture
def two_category_workload(tmp_path):
    path = tmp_path / "w.jsonl"
    path.write_text("".join(json.dumps({"prompt_token_ids": [100 + i, 200, 300], "category": c}) + "\n"
                            for i in range(4) for c in PROFILE))
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps(PROFILE))
    return path, profile


# trtllm: iterations of a few ms, as on a GPU; at 1 ms its 1000-entry iteration queue would overflow
# between two reads (TRT-LLM drops the oldest, as the emulator does). llamacpp: 1 ms steps, shorter
# than the 2 ms gap that once grouped one-token chunks into steps (its timings count them now).
@pytest.mark.parametrize("engine, step_ms", [("vllm", "1"), ("sglang", "1"), ("trtllm", "4"), ("llamacpp", "1")])
def test_adapter_against_its_personality(engine, step_ms, emulator, run_loadgen, two_category_workload):
    workload, profile = two_category_workload
    emu = emulator("--engine", engine, "--ttft-ms", "2", "--step-ms", step_ms, "--accept-profile", str(profile),
                   "--seed", "3")
    report, _ = run_loadgen(url=emu.url, workload=str(workload), num_requests=120, concurrency=60,
                            max_tokens=MAX_TOKENS)
    assert report["config"]["engine"] == engine  # auto-detected from /v1/models
    s = report["summary"]
    assert s["requests_completed"] == 120 and s["requests_failed"] == 0 and not report["errors"]
    assert s["output_tokens"] == 120 * MAX_TOKENS  # trtllm would have answered 400 to any unknown field
    client = report["speculative"]["client"]
    for category, conditional in PROFILE.items():
        assert client["by_category"][category] == pytest.approx(truth(conditional), rel=0.02), category
    server = report["speculative"]["server"]
    check = report["speculative"]["cross_check"]
    if engine == "sglang":
        # windowed gauges: an average over both categories' steps, not an exact count
        assert server["exact"] is False and 1 + 0.5 < server["acceptance_length"] < truth(PROFILE["easy"])
    else:
        if engine == "llamacpp":
            # Each request's step count comes from its timings; llama-server drafts only while 2+ tokens
            # are still allowed, so a request's last step may draft nothing: the client counts that
            # step, the server's drafts do not (at most one such step per request).
            assert 0 <= client["steps"] - server["drafts"] <= 120
        else:
            assert server["drafts"] == client["steps"]  # every decode step drafted, and each was seen as one
        assert server["acceptance_length"] == 1 + server["accepted_tokens"] / server["drafts"]
        assert not check["flagged"] and abs(check["relative_difference"]) < 0.02
    if engine in ("vllm", "llamacpp"):
        # Draft coverage: the server's drafts over the client's decode steps (all drafted but
        # llama.cpp's undrafted last ones). Accepted tokens max_tokens cut off: the emulated vLLM
        # counts them, as vLLM does (at most one draft's 3 per request); llama.cpp shortens its
        # last drafts instead, so none.
        coverage = report["speculative"]["coverage"]
        assert coverage["decode_steps"] == client["steps"] and coverage["drafted_steps"] == server["drafts"]
        assert coverage["undrafted_steps"] == client["steps"] - server["drafts"]
        assert coverage["coverage"] == server["drafts"] / client["steps"]
        discarded = coverage["discarded_accepted_tokens"]
        assert (discarded == 0) if engine == "llamacpp" else (0 <= discarded <= 120 * 3)
        tokens = coverage["undrafted_steps"] + server["drafts"] * server["acceptance_length"] - discarded
        assert client["acceptance_length"] == pytest.approx(tokens / client["steps"])
    else:
        assert "coverage" not in report["speculative"]  # drafts that are not decode steps, or no exact count
    if engine in ("vllm", "llamacpp"):
        text = urllib.request.urlopen(emu.url + "/metrics", timeout=5).read().decode()
        prefix = "vllm:" if engine == "vllm" else "llamacpp:"
        drafts = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                     if line.startswith(prefix + "spec_decode_num_drafts_total"))
        assert server["raw"]["after"]["drafts"] == drafts


def test_merged_steps_raise_the_cross_check_flag(emulator, run_loadgen):
    emu = emulator("--ttft-ms", "2", "--step-ms", "1", "--accept", "0.8,0.6,0.4", "--stream-interval", "3")
    report, text = run_loadgen(url=emu.url, num_requests=40, concurrency=20, max_tokens=300)
    check = report["speculative"]["cross_check"]
    assert check["flagged"] and check["relative_difference"] > 1.0  # ~3 steps per chunk
    assert "stream interval" in check["likely_causes"][0]
    assert report["speculative"]["server"]["acceptance_length"] == pytest.approx(truth([0.8, 0.6, 0.4]), rel=0.03)
    assert "disagree" in text
