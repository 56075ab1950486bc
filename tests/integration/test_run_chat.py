"""`loadgen run --endpoint chat` (and --prompt-format text) against the emulator's personalities on
their chat routes: the counts each engine gives (exact: equal to the emulator's usage), the plain
OpenAI adapter's estimated ones, reasoning against answer, and the servers that cannot serve it."""

import json

import pytest

from loadgen.config import EmulatorSettings
from loadgen.records import read_journal

from .test_bad_input import assert_one_line_error, loadgen
from .test_engines_emulated import truth

MAX_TOKENS = 40
REASONING = 12
ENGINES = ("vllm", "sglang", "trtllm", "llamacpp")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("reasoning", [0, REASONING])
def test_chat_counts_equal_the_emulators_usage(engine, reasoning, emulator, run_loadgen, tmp_path):
    emu = emulator("--engine", engine, "--ttft-ms", "20", "--step-ms", "2", "--accept", "0.8,0.6,0.4", "--seed", "1",
                   "--reasoning-tokens", str(reasoning))
    report, console = run_loadgen(url=emu.url, workload="sample", endpoint="chat", num_requests=24, concurrency=8,
                                  max_tokens=MAX_TOKENS)
    assert report["config"]["engine"] == engine and report["config"]["endpoint"] == "chat"
    summary = report["summary"]
    sent = summary["requests_sent"]  # the sample workload's two-turn conversations add requests
    assert summary["requests_completed"] == sent and not report["errors"]
    assert summary["output_tokens"] == sent * MAX_TOKENS
    records = list(read_journal(tmp_path / "out" / "requests.jsonl"))
    for r in records:  # every chunk's tokens add up to the usage: none lost on role or finish chunks
        assert sum(r.chunk_tokens) == r.output_tokens == MAX_TOKENS, (engine, r.chunk_tokens)
        assert r.server_prompt_tokens is not None and not r.estimated_counts
        if engine == "trtllm":  # no reasoning count: the step where reasoning ends is split by characters
            assert abs(r.reasoning_tokens - reasoning) <= 2
        else:
            assert r.reasoning_tokens == reasoning
        assert (r.first_answer_ns > r.first_ns) == bool(reasoning)
    chat = report["chat"]
    assert chat["token_counts"] == "usage" and chat["estimated_figures"] == []
    assert chat["reasoning_tokens"] + chat["answer_tokens"] == sent * MAX_TOKENS
    assert chat["reasoning_tokens"] == pytest.approx(sent * reasoning, abs=2 * sent if engine == "trtllm" else 0)
    # reasoning tokens are output tokens: the client AL is the emulator's over all of them
    assert report["speculative"]["client"]["acceptance_length"] == pytest.approx(truth((0.8, 0.6, 0.4)), rel=0.1)
    ttft, answer = report["latency"]["ttft_s"]["p50"], chat["ttft_answer_s"]["p50"]
    if reasoning:
        assert answer > ttft and "reasoning" in console
        assert all(c["reasoning_tokens_mean"] == pytest.approx(reasoning, abs=2) for c in report["categories"].values())
    else:
        assert answer == pytest.approx(ttft)
    assert "token counts: usage" in console


def test_plain_openai_counts_are_estimated_and_marked(emulator, run_loadgen, tmp_path):
    emu = emulator("--engine", "vllm", "--ttft-ms", "20", "--step-ms", "2", "--seed", "1", "--reasoning-tokens", "6")
    report, console = run_loadgen(url=emu.url, workload="sample", engine="openai", endpoint="chat", num_requests=16,
                                  concurrency=4, max_tokens=MAX_TOKENS)
    chat = report["chat"]
    assert chat["token_counts"] == "estimated" and report["speculative"]["client"]["token_counts"] == "estimated"
    assert "speculative.client" in chat["estimated_figures"]
    assert "ESTIMATED" in console
    sent = report["summary"]["requests_sent"]
    assert report["summary"]["output_tokens"] == sent * MAX_TOKENS  # the final usage chunk is still exact
    records = list(read_journal(tmp_path / "out" / "requests.jsonl"))
    estimated = sum(sum(r.chunk_tokens) for r in records)
    assert all(r.estimated_counts for r in records)
    # the emulator's text re-tokenized with the built-in tokenizer: close to its count, not equal by construction
    assert estimated == pytest.approx(sent * MAX_TOKENS, rel=0.25)
    assert 0 < chat["reasoning_tokens"] < estimated


def test_text_prompts_where_token_ids_are_refused(emulator, run_loadgen):
    emu = emulator("--engine", "vllm", "--ttft-ms", "5", "--step-ms", "1", "--text-prompts-only")
    report, _ = run_loadgen(url=emu.url, workload="sample", prompt_format="text", num_requests=8, concurrency=4,
                            max_tokens=16)
    assert report["summary"]["requests_completed"] == report["summary"]["requests_sent"]
    assert report["chat"]["prompt_format"] == "text" and report["chat"]["parity"]["requests"] > 0


def test_token_ids_refused_suggests_text_prompts(emulator):
    emu = emulator("--engine", "vllm", "--text-prompts-only")
    proc = loadgen("run", "--url", emu.url, "-n", "2", "--workload", "sample", "--no-metrics")
    assert_one_line_error(proc, "--prompt-format text")


def test_chat_against_a_server_without_it(emulator):
    emu = emulator("--engine", "sglang", "--endpoints", "completions")
    proc = loadgen("run", "--url", emu.url, "-n", "2", "--endpoint", "chat", "--workload", "sample", "--no-metrics")
    assert_one_line_error(proc, "/v1/chat/completions", "--endpoint completions")


@pytest.mark.parametrize("args, needle", [
    (("--endpoint", "chat", "--workload", "random"), "token ids"),
    (("--prompt-format", "text", "--workload", "random"), "token ids"),
    (("--endpoint", "chat", "--prompt-format", "text"), "--prompt-format"),
])
def test_chat_or_text_of_a_workload_of_ids(args, needle):
    assert_one_line_error(loadgen("run", "-n", "2", "--no-metrics", *args), needle)


def test_pre_tokenized_rows_cannot_go_as_chat(tmp_path):
    rows = tmp_path / "ids.jsonl"
    rows.write_text(json.dumps({"prompt_token_ids": [1, 2, 3]}) + "\n")
    proc = loadgen("run", "-n", "2", "--no-metrics", "--endpoint", "chat", "--workload", str(rows))
    assert_one_line_error(proc, "prompt_token_ids", "--endpoint completions")



def test_the_built_in_emulator_streams_the_reasoning_asked_for(run_loadgen):
    settings = EmulatorSettings(ttft_ms=5, step_ms=1, reasoning_tokens=8)
    report, _ = run_loadgen(url=None, workload="sample", endpoint="chat", num_requests=8, concurrency=4,
                            max_tokens=20, emulator=settings)
    args = report["config"]["emulator"]
    assert args[args.index("--reasoning-tokens") + 1] == "8"
    assert report["chat"]["reasoning_tokens"] == 8 * report["summary"]["requests_sent"]


def test_the_built_in_emulator_says_why_parity_differs(run_loadgen):
    """The built-in emulator counts a chat prompt's words (it has no tokenizer): the parity warning
    is shown, and so is why, rather than sending the user after a wrong tokenizer."""
    report, text = run_loadgen(url=None, endpoint="chat", workload="sample", num_requests=4, concurrency=2,
                               max_tokens=8)
    assert report["chat"]["parity"]["flagged"]
    assert "Tokenization parity" in text and "the built-in emulator has no tokenizer" in text
