"""Each reader on a small fixture in its dataset's real format."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loadgen.errors import UsageError
from loadgen.workloads.sources import SPEED_PLACEHOLDER, read_custom_jsonl, read_sharegpt, read_specbench, read_speed


def test_specbench_and_mtbench_format(tmp_path):
    path = tmp_path / "question.jsonl"
    path.write_text('{"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Now shorter."]}\n'
                    '{"question_id": 161, "category": "translation", "turns": ["Translate: bonjour"], '
                    '"reference": ["hello"]}\n')
    rows = read_specbench(path)
    assert [(r.row_id, r.category, r.turns) for r in rows] == [
        ("81", "writing", ("Write a poem.", "Now shorter.")), ("161", "translation", ("Translate: bonjour",))]


def test_sharegpt_first_turn_or_whole_conversations(tmp_path):
    path = tmp_path / "sg.json"
    path.write_text(json.dumps([
        {"id": "a", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"},
                                      {"from": "human", "value": "more"}]},
        {"id": "b", "conversations": [{"from": "gpt", "value": "only the model"}]},
    ]))
    assert [r.turns for r in read_sharegpt(path)] == [("hi",)]
    assert [r.turns for r in read_sharegpt(path, whole_conversations=True)] == [("hi", "more")]


def test_custom_jsonl_forms(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(
        '{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "q"}], "category": "a"}\n'
        '{"prompt": "tell me", "max_tokens": 5, "sub_category": "s"}\n'
        '{"prompt_token_ids": [1, 2, 3], "id": "t"}\n'
        '{"turns": ["one", "two"]}\n')
    m, p, t, turns = read_custom_jsonl(path)
    assert m.history == ({"role": "system", "content": "S"},) and m.turns == ("q",) and m.category == "a"
    assert p.turns == ("tell me",) and p.max_tokens == 5 and p.sub_category == "s"
    assert t.prompt_token_ids == (1, 2, 3) and t.row_id == "t"
    assert turns.turns == ("one", "two")


@pytest.mark.parametrize("line, needle", [
    ('{"prompt_token_ids": "abc"}', "prompt_token_ids"),
    ('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}', "last message"),
    ('{"prompt": "x", "max_tokens": 0}', "max_tokens"),
    ('{"nothing": 1}', "needs one of"),
    ("not json", "not valid JSON"),
])
def test_malformed_rows_name_file_and_line(tmp_path, line, needle):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "fine"}\n' + line + "\n")
    with pytest.raises(UsageError, match=needle) as info:
        read_custom_jsonl(path)
    assert "bad.jsonl:2" in str(info.value)


def test_empty_dataset(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(UsageError, match="holds no prompts"):
        read_custom_jsonl(path)


def speed_parquet(path, turns_per_row):
    n = len(turns_per_row)
    table = pa.table({"question_id": [f"q{i}" for i in range(n)],
                      "category": ["coding", "math"] * (n // 2) + ["qa"] * (n % 2),
                      "sub_category": ["py"] * n, "turns": turns_per_row, "source": ["x"] * n, "src_id": ["1"] * n,
                      "difficulty": ["easy"] * n, "multiturn": [len(t) > 1 for t in turns_per_row]})
    pq.write_table(table, path)
    return path


def test_speed_parquet_rows(tmp_path):
    path = speed_parquet(tmp_path / "test.parquet", [["write code"], ["add 2 and 2", "now times 3"]])
    rows = read_speed([path], "qualitative")
    assert [(r.row_id, r.category, r.sub_category, r.turns) for r in rows] == [
        ("q0", "coding", "py", ("write code",)), ("q1", "math", "py", ("add 2 and 2", "now times 3"))]


def test_speed_placeholder_rows_are_refused_naming_the_prepare_command(tmp_path):
    path = speed_parquet(tmp_path / "test.parquet", [["fine"], [SPEED_PLACEHOLDER + "\n\n{role_name}"]])
    with pytest.raises(UsageError, match=r"loadgen workloads prepare speed --config throughput_8k"):
        read_speed([path], "throughput_8k")
