"""Trace replay: reading mooncake-style JSONL and CSV traces, the rows a run replays and their send
times, and prompts of exactly the trace's lengths whose shared hash ids are shared token prefixes."""

from pathlib import Path

import numpy as np
import pytest

from loadgen.errors import UsageError
from loadgen.workloads import BuildOptions, WorkloadSpec, load_tokenizer, load_workload, read_trace
from loadgen.workloads.build import template_frame
from loadgen.workloads.trace import BLOCK_TOKENS

EXAMPLES = Path(__file__).resolve().parents[3] / "workloads"
JSONL, CSV = EXAMPLES / "example_trace.jsonl", EXAMPLES / "example_trace.csv"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_mooncake_jsonl_timestamps_are_milliseconds():
    trace = read_trace(JSONL)
    assert trace.format == "mooncake" and len(trace.rows) == 20
    first, third = trace.rows[0], trace.rows[2]
    assert (first.at_s, first.input_tokens, first.output_tokens, first.hash_ids) == (0.0, 700, 32, (0, 1))
    assert third.at_s == pytest.approx(0.120) and third.hash_ids == (0, 3, 4)
    assert first.where == f"{JSONL}:1"


def test_csv_timestamps_are_seconds_columns_in_any_order(tmp_path):
    trace = read_trace(CSV)
    assert trace.format == "csv" and len(trace.rows) == 10
    assert [(r.at_s, r.input_tokens, r.output_tokens) for r in trace.rows[2:4]] == [(0.12, 1100, 24), (0.25, 60, 24)]
    shuffled = write(tmp_path, "t.csv", "output_tokens,id,timestamp,input_tokens\n5,a,1.5,40\n6,b,2,41\n")
    rows = read_trace(shuffled).rows
    assert [(r.at_s, r.input_tokens, r.output_tokens) for r in rows] == [(1.5, 40, 5), (2.0, 41, 6)]


def test_the_format_is_told_from_the_content_without_a_known_extension(tmp_path):
    assert read_trace(write(tmp_path, "a.trace", JSONL.read_text())).format == "mooncake"
    assert read_trace(write(tmp_path, "b.txt", CSV.read_text())).format == "csv"


@pytest.mark.parametrize("name, text, needles", [
    ("t.jsonl", '{"timestamp": 0, "input_length": 9, "output_length": 2}\n'
                '{"timestamp": 500, "input_length": 9, "output_length": 2}\n'
                '{"timestamp": 400, "input_length": 9, "output_length": 2}\n',
     ["t.jsonl:3", "timestamp 400 ms is before the previous row's 500 ms", "time order"]),
    ("t.csv", "timestamp,input_tokens,output_tokens\n1.0,9,2\n0.5,9,2\n", ["t.csv:3", "0.5 s is before", "1 s"]),
    ("t.jsonl", '{"timestamp": 0, "input_length": 9, "output_length": 2}\n{"timestamp": 1, "input_length": 9}\n',
     ["t.jsonl:2", "missing field 'output_length'"]),
    ("t.jsonl", '{"timestamp": 0, "input_length": 0, "output_length": 2}\n', ["t.jsonl:1", "'input_length'", ">= 1"]),
    ("t.jsonl", '{"timestamp": -1, "input_length": 3, "output_length": 2}\n', ["t.jsonl:1", "'timestamp'"]),
    ("t.jsonl", '{"timestamp": 0, "input_length": 3, "output_length": 2, "hash_ids": [1, "x"]}\n',
     ["t.jsonl:1", "'hash_ids'"]),
    ("t.jsonl", '{"timestamp": 0, "input_length": 3, "output_length": 2\n', ["t.jsonl:1", "not valid JSON"]),
    ("t.csv", "timestamp,input_tokens,output_tokens\n0,9,two\n", ["t.csv:2", "'output_tokens'", "'two'"]),
    ("t.csv", "timestamp,input_tokens\n0,9\n", ["t.csv:1", "lacks column 'output_tokens'"]),
    ("t.csv", "timestamp,input_tokens,output_tokens\n", ["holds no requests"]),
    ("t.jsonl", "\n\n", ["is empty"]),
    ("t.txt", "0 9 2\n", ["cannot tell the format"]),
])
def test_bad_traces_name_the_row_and_field(tmp_path, name, text, needles):
    with pytest.raises(UsageError) as err:
        read_trace(write(tmp_path, name, text))
    assert "\n" not in str(err.value)
    for needle in needles:
        assert needle in str(err.value)


def test_missing_trace_file(tmp_path):
    with pytest.raises(UsageError, match="trace file .* not found"):
        read_trace(tmp_path / "nope.jsonl")


def test_window_warmup_count_duration_and_speed():
    trace = read_trace(JSONL)
    window = trace.window(warmup=2, count=None, duration_s=None, speed=2.0)
    assert window.warmup == 2 and window.measured == 18 and len(window.rows) == 20
    assert window.warmup_offsets_ns == [0, 0]
    # measured offsets are relative to the first measured row (120 ms), halved by the speed
    assert window.measured_offsets_ns[:3] == [0, 65_000_000, 140_000_000]
    assert window.span_s == pytest.approx((2.5 - 0.12) / 2)
    assert window.rate == pytest.approx(17 / window.span_s)
    counted = trace.window(warmup=0, count=5, duration_s=None, speed=1.0)
    assert counted.measured == 5 and [r.input_tokens for r in counted.rows] == [700, 300, 1100, 60, 1300]
    cut = trace.window(warmup=0, count=None, duration_s=0.5, speed=1.0)  # rows before 500 ms of trace time
    assert cut.measured == 6 and max(cut.measured_offsets_ns) < 500_000_000
    both = trace.window(warmup=0, count=3, duration_s=0.5, speed=1.0)  # whichever comes first
    assert both.measured == 3
    with pytest.raises(UsageError, match="-n 19 is more than the trace .* holds after 2 warm-up rows \\(18\\)"):
        trace.window(warmup=2, count=19, duration_s=None, speed=1.0)
    with pytest.raises(UsageError, match="--warmup 20 takes every row"):
        trace.window(warmup=20, count=None, duration_s=None, speed=1.0)


def trace_workload(trace: Path, workload: str = "sample", **options) -> object:
    window = read_trace(trace).window(warmup=0, count=None, duration_s=None, speed=1.0)
    return load_workload(WorkloadSpec(workload, options=BuildOptions(**options), trace=window))


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(a.size, b.size)
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if differ.size else n


def test_prompts_have_the_exact_lengths_and_share_the_hash_id_prefixes():
    workload = trace_workload(JSONL)
    rows = read_trace(JSONL).rows
    tokenizer = load_tokenizer(None)
    head, tail = template_frame(tokenizer, BuildOptions())
    assert len(head) >= 1 and len(tail) >= 1  # Phi-3's template: the test covers the frame
    assert [p.token_ids.size for p in workload.prompts] == [r.input_tokens for r in rows]
    assert [p.max_tokens for p in workload.prompts] == [r.output_tokens for r in rows]
    prompts = [p.token_ids for p in workload.prompts]
    for i, a in enumerate(rows):
        assert prompts[i][:len(head)].tolist() == head and prompts[i][-len(tail):].tolist() == tail
        for j in range(i):
            b = rows[j]
            full_a, full_b = (min(len(r.hash_ids), (r.input_tokens - len(head) - len(tail)) // BLOCK_TOKENS)
                              for r in (a, b))
            shared = 0
            while shared < min(full_a, full_b) and a.hash_ids[shared] == b.hash_ids[shared]:
                shared += 1
            # exactly the shared blocks' ids are common, and the prompts part right after them
            assert common_prefix(prompts[i], prompts[j]) == len(head) + shared * BLOCK_TOKENS, (i, j)
    # rows 4 and 7 share full blocks 0 and 1 (1024 tokens after the template); row 0 (700 tokens) has
    # block 0 full and block 1 partial, its own text: it shares block 0 only
    assert common_prefix(prompts[4], prompts[7]) == len(head) + 2 * BLOCK_TOKENS
    assert common_prefix(prompts[0], prompts[4]) == len(head) + BLOCK_TOKENS
    info = workload.info["trace"]
    assert info["measured_rows"] == 20 and info["input_tokens"] == sum(r.input_tokens for r in rows)
    assert info["shared_prefix_tokens"] > 0 and workload.schedule is not None


def test_prompts_are_the_workloads_own_text_never_random_ids():
    from loadgen.workloads import SAMPLE_PATH
    from loadgen.workloads.sources import read_custom_jsonl

    tokenizer = load_tokenizer(None)
    text_ids = {t for row in read_custom_jsonl(SAMPLE_PATH) for turn in row.turns for t in tokenizer.encode(turn)}
    text_ids |= set(tokenizer.encode("\n\n"))
    head, tail = template_frame(tokenizer, BuildOptions())
    for prompt in trace_workload(JSONL).prompts:
        body = prompt.token_ids[len(head):-len(tail)].tolist()
        assert set(body) <= text_ids


def test_the_same_seed_builds_the_same_prompts_and_no_template_is_text_only():
    first, again = trace_workload(CSV), trace_workload(CSV)
    assert all(np.array_equal(a.token_ids, b.token_ids) for a, b in zip(first.prompts, again.prompts))
    raw = trace_workload(CSV, chat_template=False)
    assert [p.token_ids.size for p in raw.prompts] == [r.input_tokens for r in read_trace(CSV).rows]
    # CSV traces carry no hash ids: no two prompts share a prefix beyond chance
    prompts = [p.token_ids for p in raw.prompts]
    assert max(common_prefix(prompts[i], prompts[j]) for i in range(len(prompts)) for j in range(i)) < 8


def test_random_workload_gives_random_ids_of_the_exact_lengths_with_shared_blocks():
    workload = trace_workload(JSONL, "random")
    rows = read_trace(JSONL).rows
    assert [p.token_ids.size for p in workload.prompts] == [r.input_tokens for r in rows]
    assert common_prefix(workload.prompts[4].token_ids, workload.prompts[7].token_ids) == 2 * BLOCK_TOKENS
    assert workload.info["tokenizer"] is None


def test_lengths_the_workload_cannot_serve(tmp_path):
    short = write(tmp_path, "short.jsonl", '{"timestamp": 0, "input_length": 3, "output_length": 2}\n')
    with pytest.raises(UsageError, match="short.jsonl:1: input 3 tokens is not more than the chat template's own"):
        trace_workload(short)
    long = write(tmp_path, "long.jsonl", '{"timestamp": 0, "input_length": 5000000, "output_length": 2}\n')
    with pytest.raises(UsageError, match="long.jsonl:1: input 5000000 tokens needs .* but the text of --workload "
                                         "sample holds only"):
        trace_workload(long)


def test_a_pre_tokenized_workload_is_refused(tmp_path):
    ids = write(tmp_path, "ids.jsonl", '{"prompt_token_ids": [1, 2, 3]}\n')
    window = read_trace(CSV).window(warmup=0, count=None, duration_s=None, speed=1.0)
    with pytest.raises(UsageError, match="pre-tokenized"):
        load_workload(WorkloadSpec("jsonl", ids, trace=window))


def test_rows_beyond_the_servers_context_length_are_named():
    window = read_trace(JSONL).window(warmup=0, count=None, duration_s=None, speed=1.0)
    window.check_context(None)
    window.check_context(4096)
    with pytest.raises(UsageError, match="example_trace.jsonl:13: input 2100 \\+ output 16 tokens exceed the "
                                         "server's context length 2048"):
        window.check_context(2048)


def test_a_trace_needing_more_text_than_the_workload_holds_reuses_it_and_says_so(tmp_path):
    rows = "timestamp,input_tokens,output_tokens\n" + "".join(f"{i},5000,2\n" for i in range(3))
    workload = trace_workload(write(tmp_path, "t.csv", rows))
    assert [p.token_ids.size for p in workload.prompts] == [5000] * 3
    info = workload.info
    assert info["text_reread"] and info["text_needed"] > info["text_tokens"]
    assert not trace_workload(JSONL).info["text_reread"]
