"""RunConfig is the one source of `loadgen run`'s defaults, and the one way options become a run:
the command line, a sweep and a plan's `run:` mapping all go through RunConfig.from_options."""

import dataclasses
from pathlib import Path

import click
import pytest

from loadgen.analysis.slo import SLO_METRICS
from loadgen.cli import emulate, run, sweep
from loadgen.config import (
    DEFAULT_METRICS_ADDR,
    DEFAULT_NUM_REQUESTS,
    RUN_OPTIONS,
    SLO_METRIC_NAMES,
    EmulatorSettings,
    RunConfig,
    default_of,
)
from loadgen.emulator import EmulatorConfig
from loadgen.errors import RunOptionError, UsageError

OUT = Path("out")


def _from_flags(*flags: str) -> RunConfig:
    """The RunConfig `loadgen run FLAGS` builds."""
    return RunConfig.from_options(run.make_context("run", ["--output-dir", str(OUT), *flags]).params)


@pytest.fixture(autouse=True)
def _no_api_key_from_the_environment(monkeypatch):
    monkeypatch.delenv("LOADGEN_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def test_every_run_flag_is_a_run_option_and_defaults_to_it():
    # the regression: a default changed on the dataclass but not on the flag (or back) drifts apart
    assert {p.name for p in run.params} == set(RUN_OPTIONS)
    no_flags = run.make_context("run", []).params
    for option in RUN_OPTIONS:
        assert no_flags[option] == default_of(option), option


def test_the_defaults_are_the_fields_defaults():
    # no flag given: the dataclass's own defaults, but for what only the command line decides
    assert RunConfig.from_options({"output_dir": OUT}) == RunConfig(
        url=None, output_dir=OUT, num_requests=None, metrics_addr=DEFAULT_METRICS_ADDR)  # a dataset: one pass
    assert RunConfig.from_options({"output_dir": OUT, "workload": "random"}).num_requests == DEFAULT_NUM_REQUESTS
    assert _from_flags() == RunConfig.from_options({"output_dir": OUT})
    assert _from_flags().emulator == EmulatorSettings()


def test_a_plans_run_options_make_the_run_its_flags_make():
    flags = ["--url", "http://h:8000", "-c", "4", "-n", "64", "--max-tokens", "32", "--no-ignore-eos",
             "--no-chat-template", "--no-progress", "--no-metrics", "--no-plots", "--insecure", "--timeout", "90",
             "--emulator-accept", "0.9,0.5", "--emulator-ttft-ms", "7", "--workload", "random", "--input-len", "64",
             "--slo", "ttft_p95=0.5", "--ray", "local", "--on-worker-loss", "continue", "--seed", "3"]
    plan = {"url": "http://h:8000", "concurrency": 4, "num_requests": "64", "max_tokens": 32, "ignore_eos": False,
            "chat_template": False, "no_progress": True, "no_metrics": True, "no_plots": True, "insecure": True,
            "timeout": 90, "emulator_accept": [0.9, 0.5], "emulator_ttft_ms": 7, "workload": "random",
            "input-len": 64, "slo": "ttft_p95=0.5", "ray": "local", "on_worker_loss": "continue", "seed": 3,
            "duration": None, "output_dir": str(OUT)}
    config = RunConfig.from_options(plan)
    assert config == _from_flags(*flags)
    assert (config.max_tokens, config.timeout_s, config.verify_tls, config.metrics_addr, config.progress) == \
        (32, 90.0, False, None, False)
    assert config.emulator == EmulatorSettings(ttft_ms=7.0, accept=(0.9, 0.5))
    assert RunConfig.from_options({"duration": 30, "output_dir": OUT}).num_requests is None


def test_a_sweep_takes_every_other_run_option():
    # a sweep is one run per load: stepping levels within a run, or a trace's own load, is loadgen run's alone
    own = {"concurrency", "request_rate", "output_dir", "concurrency_levels", "level_duration", "trace", "trace_speed"}
    assert {p.name for p in sweep.params} == {"concurrencies", "rates", "temperatures", "find_max", "output_dir"} | \
        (set(RUN_OPTIONS) - own)


@pytest.mark.parametrize("options, line", [
    ({"num_requestz": 8}, "no such option: --num-requestz (num_requestz); did you mean num_requests?"),
    ({"max_tokens": "many"}, "--max-tokens takes an integer, got 'many'"),
    ({"max_tokens": 64.5}, "--max-tokens takes an integer, got 64.5"),
    ({"temperature": "hot"}, "--temperature takes a number, got 'hot'"),
    ({"emulator_accept": "0.8,x"}, "--emulator-accept takes comma-separated numbers, got '0.8,x'"),
    ({"ignore_eos": "no"}, "--ignore-eos is a switch: true or false, got 'no'"),
    ({"model": True}, "--model takes a value, not True"),
])
def test_an_unknown_or_mistyped_option_is_one_line(options, line):
    with pytest.raises(RunOptionError) as caught:
        RunConfig.from_options({"output_dir": OUT, **options})
    assert str(caught.value) == line


def test_a_bad_setting_is_the_line_loadgen_run_gives():
    with pytest.raises(UsageError, match="^--max-tokens must be at least 1, got 0$") as caught:
        RunConfig.from_options({"output_dir": OUT, "max_tokens": 0})
    assert not isinstance(caught.value, RunOptionError)  # a plan does not put its name before it
    with pytest.raises(click.BadParameter):
        _from_flags("--max-tokens", "many")  # on the command line click reads the flags first


def test_slo_metrics_are_the_ones_slo_accepts():
    assert tuple(SLO_METRICS) == SLO_METRIC_NAMES


def test_loadgen_emulate_defaults_to_the_emulators_own():
    # `loadgen emulate` serves EmulatorConfig, which imports nothing from loadgen: its flags repeat
    # its defaults, and this keeps them equal
    defaults = {f.name: f.default for f in dataclasses.fields(EmulatorConfig)}
    no_flags = emulate.make_context("emulate", []).params
    for name in ("engine", "host", "port", "model", "ttft_ms", "step_ms", "load_step_ms", "cost", "accept",
                 "stream_interval", "seed", "workers", "send_timestamps"):
        expected = defaults[name]
        assert no_flags[name] == (",".join(map(str, expected)) if isinstance(expected, tuple) else expected), name


def test_concurrency_levels_set_the_run_by_level():
    config = _from_flags("--concurrency-levels", "1,16,4", "--level-duration", "30")
    assert config.levels == (1, 16, 4) and config.level_duration_s == 30.0
    assert (config.num_requests, config.duration_s, config.measured_s) == (None, None, 90.0)
    assert config.concurrency == 16  # the highest level: workers and the emulator are sized for it
    assert config.public()["concurrency_levels"] == [1, 16, 4]
    assert _from_flags().public()["concurrency_levels"] is None and _from_flags().levels == ()


@pytest.mark.parametrize("flags, line", [
    (["--concurrency-levels", "1,4", "--level-duration", "5", "--duration", "60"],
     "--concurrency-levels runs each level for --level-duration seconds: it excludes --request-rate, "
     "--num-requests and --duration"),
    (["--concurrency-levels", "1,4", "--level-duration", "5", "-n", "100"], "it excludes --request-rate"),
    (["--concurrency-levels", "1,4", "--level-duration", "5", "--request-rate", "3"], "it excludes --request-rate"),
    (["--concurrency-levels", "1,4"], "--concurrency-levels needs --level-duration"),
    (["--concurrency-levels", "1,4", "--level-duration", "0"], "--concurrency-levels needs --level-duration"),
    (["--concurrency-levels", "1,x", "--level-duration", "5"],
     "--concurrency-levels takes comma-separated whole numbers >= 1, e.g. 1,4,16,64; got '1,x'"),
    (["--concurrency-levels", "0,4", "--level-duration", "5"], "takes comma-separated whole numbers >= 1"),
    (["--concurrency-levels", "", "--level-duration", "5"], "takes comma-separated whole numbers >= 1"),
    (["--level-duration", "5"], "--level-duration is the time per level of --concurrency-levels: give both"),
])
def test_concurrency_levels_refuse_what_does_not_fit_in_one_line(flags, line):
    with pytest.raises(UsageError) as caught:
        _from_flags(*flags)
    assert line in str(caught.value) and "\n" not in str(caught.value)


def test_a_bad_level_flag_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    import sys

    from loadgen.cli import main
    monkeypatch.setattr(sys, "argv", ["loadgen", "run", "--output-dir", str(tmp_path / "r"), "--concurrency-levels",
                                      "1,4", "--level-duration", "5", "--duration", "9"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --concurrency-levels runs each level for --level-duration seconds: it excludes "
                   "--request-rate, --num-requests and --duration"]


def test_a_trace_sets_its_own_load_and_length():
    config = RunConfig.from_options({"trace": "t.jsonl", "trace_speed": "2", "output_dir": OUT})
    assert config.trace == Path("t.jsonl") and config.trace_speed == 2.0
    assert config.num_requests is None and config.duration_s is None  # the whole trace, not 200 requests
    assert config.public()["concurrency"] is None
    for options, line in [({"request_rate": 4}, "leave out --request-rate"), ({"isl": 64}, "leave out --isl"),
                          ({"trace_speed": 0}, "--trace-speed must be positive")]:
        with pytest.raises(UsageError, match=line):
            RunConfig.from_options({"trace": "t.jsonl", "output_dir": OUT, **options})
