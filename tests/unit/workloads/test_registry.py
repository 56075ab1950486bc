import shutil

import numpy as np
import pytest

from loadgen.errors import UsageError
from loadgen.workloads import BuildOptions, WorkloadSpec, load_workload
from loadgen.workloads.cache import list_cached


@pytest.fixture
def dataset(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question_id": 1, "category": "a", "turns": ["hello world the cat"]}\n'
                    '{"question_id": 2, "category": "b", "turns": ["why is the sky blue", "tell me more"]}\n')
    return path


def spec(dataset, tokenizer, **options):
    return WorkloadSpec("specbench", dataset, str(tokenizer), BuildOptions(**options))


def test_second_load_comes_from_the_cache_with_the_same_ids(dataset, tokenizers_dir):
    first = load_workload(spec(dataset, tokenizers_dir["llama3"]))
    second = load_workload(spec(dataset, tokenizers_dir["llama3"]))
    assert first.info["cached"] is False and second.info["cached"] is True
    assert [p.token_ids.tolist() for p in first.prompts] == [p.token_ids.tolist() for p in second.prompts]
    assert second.prompts[1].followups == ("tell me more",) and second.multi_turn
    assert second.prompts[1].messages == ({"role": "user", "content": "why is the sky blue"},)
    assert any(info["name"] == "specbench" for info in list_cached())


def test_cache_invalidates_on_tokenizer_options_and_source_changes(dataset, tokenizers_dir, tmp_path):
    base = load_workload(spec(dataset, tokenizers_dir["llama3"]))
    assert load_workload(spec(dataset, tokenizers_dir["chatml"])).info["cached"] is False
    with_system = spec(dataset, tokenizers_dir["llama3"], system_prompt="you are helpful")
    assert load_workload(with_system).info["cached"] is False
    # The same tokenizer files in another folder are the same tokenizer: the cache still serves.
    copy = shutil.copytree(tokenizers_dir["llama3"], tmp_path / "llama3-copy")
    assert load_workload(spec(dataset, copy)).info["cached"] is True
    # One changed byte in the template makes it another tokenizer.
    config = copy / "tokenizer_config.json"
    config.write_text(config.read_text().replace("assistant<|end_header_id|>", "assistant<|end_header_id|> x"))
    changed = load_workload(spec(dataset, copy))
    assert changed.info["cached"] is False
    assert not np.array_equal(changed.prompts[0].token_ids, base.prompts[0].token_ids)
    dataset.write_text(dataset.read_text().replace("cat", "mat"))
    assert load_workload(spec(dataset, tokenizers_dir["llama3"])).info["cached"] is False


def test_random_workload_is_seeded():
    a = load_workload(WorkloadSpec("random", input_len=7, seed=1))
    b = load_workload(WorkloadSpec("random", input_len=7, seed=1))
    c = load_workload(WorkloadSpec("random", input_len=7, seed=2))
    assert a.prompts[0].token_ids.size == 7
    assert np.array_equal(a.prompts[5].token_ids, b.prompts[5].token_ids)
    assert not np.array_equal(a.prompts[5].token_ids, c.prompts[5].token_ids)


@pytest.mark.parametrize("name, path, needle", [
    ("specbench", None, "--workload-path"),
    ("nope", None, "unknown workload"),
    ("speed:throughput_3k", None, "unknown SPEED-Bench config"),
    ("jsonl", "missing.jsonl", "not found"),
])
def test_bad_workload_names(name, path, needle, tmp_path):
    with pytest.raises(UsageError, match=needle):
        load_workload(WorkloadSpec(name, tmp_path / path if path else None))


def test_speed_throughput_config_implies_its_exact_isl(tmp_path, tokenizers_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = " ".join(["the cat sat on the mat and then tell me more about it"] * 200)
    pq.write_table(pa.table({"question_id": ["q0", "q1"], "category": ["low_entropy", "high_entropy"],
                             "sub_category": ["", ""], "turns": [[text], [text[:400]]]}), tmp_path / "t.parquet")
    loaded = load_workload(WorkloadSpec("speed:throughput_1k", tmp_path / "t.parquet", str(tokenizers_dir["llama3"])))
    assert [p.token_ids.size for p in loaded.prompts] == [1024, 1024]
