"""Tune's schedule in each engine's own terms (EngineSpec.schedule_support, engines/deploy.py): the
snippets, checked against the engines' own rules as read at their source (servers/SOURCES.md §7) and
through loadgen's recipe rendering, and the one K for engines that take nothing."""

from __future__ import annotations

import json

import pytest
import yaml

from loadgen.engines import ENGINES, SERVABLE_ENGINES
from loadgen.engines.deploy import engine_schedules
from loadgen.engines.trtllm import schedule_snippet as trtllm_snippet
from loadgen.engines.vllm import OPEN_END
from loadgen.engines.vllm import schedule_snippet as vllm_snippet
from loadgen.servers import load_recipe, render
from loadgen.servers.recipe import SHIPPED_RECIPES


def schedule(*ranges: tuple[int, int], off_from: int | None = None) -> dict:
    """(from, K) per range, as tune's _schedule writes them: each up to the next one's start."""
    out = [{"from": start, "to": None, "draft_length": k} for start, k in ranges]
    for before, after in zip(out, out[1:]):
        before["to"] = after["from"] - 1
    return {"ranges": out, "off_from": off_from, "note": "measured points only"}


#: the integration test's answer (tests/integration/test_tune.py): K 3 at 1, 2 at 4, off from 16
TYPICAL = schedule((1, 3), (4, 2), (16, 0), off_from=16)
NEVER_OFF = schedule((1, 4), (8, 2), off_from=None)
ALL_OFF = schedule((1, 0), (4, 0), off_from=1)
SINGLE = schedule((1, 3))
FROM_FOUR = schedule((4, 3), (16, 1), (64, 0), off_from=64)
OFF_IN_THE_MIDDLE = schedule((1, 3), (4, 0), (8, 2), (16, 0), off_from=16)


def recommended(sched: dict, concurrency: int) -> int:
    """Tune's K at a concurrency: its range's (below the first measured one, the first range's)."""
    return max((r for r in sched["ranges"] if r["from"] <= concurrency), key=lambda r: r["from"],
               default=sched["ranges"][0])["draft_length"]


def vllm_lookup(config: dict, batch_size: int) -> int:
    """vLLM's rules for num_speculative_tokens_per_batch_size (vllm/v1/spec_decode/dynamic/utils.py,
    validate_and_normalize_dynamic_sd_schedule and build_dynamic_sd_schedule_lookup): 3-item
    entries, positive inclusive ranges, sorted and non-overlapping, the first from 1, K >= 0; a
    batch size takes its entry's K (in a gap, the previous one's), clamped to num_speculative_tokens."""
    table, top = config["num_speculative_tokens_per_batch_size"], config["num_speculative_tokens"]
    assert top > 0 and all(len(entry) == 3 for entry in table)
    end = 0
    for lo, hi, k in table:
        assert 1 <= lo <= hi and lo > end and k >= 0 and k <= top, table
        end = hi
    assert table[0][0] == 1, "vLLM: the first batch-size range must start at 1"
    return min(top, [k for lo, _, k in table if lo <= batch_size][-1])


def trtllm_speculates(config: dict, active: int, max_batch_size: int = 256, max_num_tokens: int = 8192) -> bool:
    """TensorRT-LLM's Drafter.should_use_spec_decode (tensorrt_llm/_torch/speculative/drafter.py)."""
    if config.get("max_concurrency") is None:
        return True
    cap = max_num_tokens // (1 + config["max_draft_len"])
    return min(active, max_batch_size, cap) <= config["max_concurrency"]


# vLLM ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sched", [TYPICAL, NEVER_OFF, FROM_FOUR, OFF_IN_THE_MIDDLE], ids=str)
def test_vllm_table_gives_tunes_k_at_every_batch_size(sched):
    config = json.loads(vllm_snippet(sched))
    assert config["num_speculative_tokens"] == max(r["draft_length"] for r in sched["ranges"])
    for batch_size in range(1, 300):
        assert vllm_lookup(config, batch_size) == recommended(sched, batch_size), batch_size


def test_vllm_typical_table_exactly():
    assert json.loads(vllm_snippet(TYPICAL)) == {
        "num_speculative_tokens": 3,
        "num_speculative_tokens_per_batch_size": [[1, 3, 3], [4, 15, 2], [16, OPEN_END, 0]]}
    # measured from 4: the table still starts at 1, as vLLM requires
    assert json.loads(vllm_snippet(FROM_FOUR))["num_speculative_tokens_per_batch_size"][0] == [1, 15, 3]


def test_vllm_one_k_needs_no_table_and_all_off_needs_no_speculation():
    assert json.loads(vllm_snippet(SINGLE)) == {"num_speculative_tokens": 3}
    assert json.loads(vllm_snippet(schedule((1, 2), (4, 2)))) == {"num_speculative_tokens": 2}
    assert vllm_snippet(ALL_OFF) is None
    assert vllm_snippet(schedule((1, 0))) is None


def test_vllm_snippet_renders_through_a_shipped_recipe(tmp_path):
    snippet = json.loads(vllm_snippet(TYPICAL))
    overrides = [f"speculative.options.{key}={json.dumps(value)}" for key, value in snippet.items()]
    recipe = load_recipe(SHIPPED_RECIPES / "vllm" / "llama3.1-8b-eagle3.yaml", overrides)
    argv = list(render(recipe, host="127.0.0.1", port=8000, workdir=tmp_path).argv)
    config = json.loads(argv[argv.index("--speculative-config") + 1])
    assert config["method"] == "eagle3" and config["model"] == "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B"
    assert {k: config[k] for k in snippet} == snippet
    assert [vllm_lookup(config, b) for b in (1, 3, 4, 15, 16, 256)] == [3, 3, 2, 2, 0, 0]


# TensorRT-LLM ----------------------------------------------------------------------------------


def test_trtllm_threshold_is_one_below_off_from():
    config = yaml.safe_load(trtllm_snippet(TYPICAL))["speculative_config"]
    assert config == {"max_draft_len": 3, "max_concurrency": 15}
    for active in range(1, 64):
        assert trtllm_speculates(config, active) == (active < TYPICAL["off_from"]), active


@pytest.mark.parametrize(("sched", "expected"), [
    (NEVER_OFF, {"max_draft_len": 4}),
    (SINGLE, {"max_draft_len": 3}),
    (FROM_FOUR, {"max_draft_len": 3, "max_concurrency": 63}),
    (OFF_IN_THE_MIDDLE, {"max_draft_len": 3, "max_concurrency": 15}),
    (schedule((1, 0), (4, 2), (8, 0), off_from=8), {"max_draft_len": 2, "max_concurrency": 7}),
], ids=str)
def test_trtllm_snippets(sched, expected):
    assert yaml.safe_load(trtllm_snippet(sched)) == {"speculative_config": expected}


def test_trtllm_all_off_needs_no_speculation():
    assert trtllm_snippet(ALL_OFF) is None


def test_trtllm_snippet_merges_into_a_shipped_recipes_options_yaml(tmp_path):
    snippet = yaml.safe_load(trtllm_snippet(TYPICAL))
    overrides = [f"extra_config.speculative_config.{key}={value}"
                 for key, value in snippet["speculative_config"].items()]
    recipe = load_recipe(SHIPPED_RECIPES / "trtllm" / "llama3.1-8b-eagle3.yaml", overrides)
    [text] = render(recipe, host="127.0.0.1", port=8000, workdir=tmp_path).files.values()
    options = yaml.safe_load(text)
    assert options["speculative_config"] == {"decoding_type": "Eagle", "max_draft_len": 3,
                                             "speculative_model_dir": "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B",
                                             "max_concurrency": 15}
    assert options["max_num_tokens"] == 40960  # the recipe's own extra_config is kept


# every engine ----------------------------------------------------------------------------------


def by_engine(sched: dict, load=None) -> dict[str, dict]:
    return {e["engine"]: e for e in engine_schedules(sched, load)}


def test_every_servable_engine_says_what_it_takes_with_its_pinned_version_in_the_source():
    pins: dict[str, set[str]] = {}
    for path in SHIPPED_RECIPES.glob("*/*.yaml"):
        data = yaml.safe_load(path.read_text())
        pins.setdefault(data["engine"], set()).add(str(data["engine_version"]).split()[0].split("+")[-1])
    assert set(pins) == set(SERVABLE_ENGINES)
    for name in SERVABLE_ENGINES:
        support = ENGINES[name].schedule_support
        assert support is not None, name
        assert (support.snippet is None) == (support.accepts == "none"), name
        for pin in pins[name]:
            assert pin in support.source, f"{name}: {support.source!r} does not name the pinned {pin}"
    assert set(by_engine(TYPICAL)) == set(SERVABLE_ENGINES)


def test_entries_for_the_typical_schedule():
    entries = by_engine(TYPICAL)
    vllm, trtllm, sglang, llamacpp = (entries[n] for n in ("vllm", "trtllm", "sglang", "llamacpp"))
    assert vllm["supported"] and vllm["single_draft_length"] is None and vllm["range"] == {"from": 1, "to": None}
    assert vllm["snippet"] == vllm_snippet(TYPICAL)
    assert trtllm["supported"] and trtllm["single_draft_length"] == 3 and trtllm["range"] == {"from": 1, "to": 15}
    assert "cannot express tune's K 2 at concurrency 4-15" in trtllm["note"]
    for entry in (sglang, llamacpp):
        assert not entry["supported"] and entry["snippet"] is None
        assert entry["single_draft_length"] == 3 and entry["range"] == {"from": 1, "to": 3}
        assert entry["note"].startswith("K 3, the K of the lowest range where speculation pays")
        assert "above it tune recommends K 2 at concurrency 4-15, off at concurrency 16+" in entry["note"]
    assert json.loads(json.dumps(entries))  # tune.json takes it as it is


def test_one_k_for_a_stated_load_is_tunes_k_at_its_top():
    entries = by_engine(TYPICAL, load=(1, 8))
    assert entries["sglang"]["single_draft_length"] == 2 and entries["sglang"]["range"] == {"from": 1, "to": 8}
    assert "within that load tune recommends K 3 at concurrency 1-3" in entries["sglang"]["note"]
    assert by_engine(TYPICAL, load=(1, 3))["llamacpp"]["single_draft_length"] == 3
    assert by_engine(TYPICAL, load=(4, None))["llamacpp"]["single_draft_length"] == 0
    # the engines that take a schedule deploy it whatever the load
    assert by_engine(TYPICAL, load=(1, 8))["vllm"]["snippet"] == vllm_snippet(TYPICAL)


def test_the_lowest_paying_range_skips_an_unpaid_start():
    entries = by_engine(schedule((1, 0), (4, 2), (8, 0), off_from=8))
    assert entries["llamacpp"]["single_draft_length"] == 2 and entries["llamacpp"]["range"] == {"from": 4, "to": 7}
    assert "cannot express tune's off at concurrency 1-3" in entries["trtllm"]["note"]


@pytest.mark.parametrize("sched", [ALL_OFF, schedule((2, 0))], ids=str)
def test_all_off_is_no_speculation_everywhere(sched):
    for entry in engine_schedules(sched):
        assert entry["snippet"] is None and entry["single_draft_length"] == 0
        assert entry["note"].startswith("Speculation pays at no measured concurrency")


def test_never_off_and_single_range():
    entries = by_engine(NEVER_OFF)
    assert entries["trtllm"]["range"] == {"from": 1, "to": None} and "never stops paying" in entries["trtllm"]["note"]
    single = by_engine(SINGLE)
    assert single["vllm"]["single_draft_length"] == 3 and single["trtllm"]["single_draft_length"] == 3
    assert single["sglang"]["range"] == {"from": 1, "to": None}
    assert "above it" not in single["sglang"]["note"]


@pytest.mark.parametrize(("sched", "load"), [
    ({"ranges": [], "off_from": None}, None),
    ({"ranges": [{"from": 1, "to": 3, "draft_length": 3}, {"from": 5, "to": None, "draft_length": 0}],
      "off_from": 5}, None),
    ({"ranges": [{"from": 1, "to": 3, "draft_length": 3}], "off_from": None}, None),
    (TYPICAL, (0, 4)),
    (TYPICAL, (8, 4)),
])
def test_malformed_input_is_refused(sched, load):
    with pytest.raises(ValueError):
        engine_schedules(sched, load)
