"""`loadgen emulate --cost`: every step's time is the StepModel's for the batch running
(loadgen/analysis/step_model.py), and a bad --cost is one error line."""

from __future__ import annotations

import asyncio
import sys

import orjson
import pytest

from loadgen.analysis.step_model import StepModel
from loadgen.cli import main
from loadgen.emulator import EmulatorConfig
from loadgen.emulator.counters import Counters
from loadgen.emulator.http import Request
from loadgen.emulator.server import App

COST = StepModel.parse("base=10,token=0.05,knee=16,compute=1.0,draft=2")


def test_the_step_is_the_cost_models_for_the_requests_running():
    speculative = EmulatorConfig(cost=COST, accept=(0.8, 0.6, 0.4))  # K = 3: 4 tokens verified per request
    assert [speculative.step_ns_at(r) for r in (1, 4, 5, 8)] == [16_200_000, 16_800_000, 20_800_000, 32_800_000]
    plain = EmulatorConfig(cost=COST, accept=())  # K = 0: 1 token per request, no draft cost
    assert [plain.step_ns_at(r) for r in (1, 16, 17, 32)] == [10_050_000, 10_800_000, 11_800_000, 26_800_000]
    profile = EmulatorConfig(cost=COST, accept_profile=(("coding", (0.9, 0.8)), ("default", (0.5, 0.5))))
    assert profile.step_ns_at(2) == round(COST.step_ms(2 * 3, 2) * 1e6)  # K from the profile's length
    assert speculative.nominal_step_ms == pytest.approx(16.2)  # what SGLang's window and TRT-LLM's stats scale by
    # without --cost: --step-ms plus --load-step-ms per other request, as before
    loaded = EmulatorConfig(step_ms=2.0, load_step_ms=1.0)
    assert [loaded.step_ns_at(r) for r in (1, 2, 10)] == [2_000_000, 3_000_000, 11_000_000]
    assert loaded.nominal_step_ms == 2.0


def test_the_emulator_times_each_step_by_the_requests_running_in_it():
    config = EmulatorConfig(cost=COST, accept=(0.8, 0.6, 0.4))

    class Conn:
        closed = False

    async def arrive(n: int) -> list[int]:
        app = App(config, Counters(1, config.draft_len), 0)
        body = orjson.dumps({"model": "emulator", "prompt": [1, 2, 3], "max_tokens": 8})
        seen = []
        for _ in range(n):  # more than the step table holds at first: it grows
            app.handle(Conn(), Request("POST", "/v1/completions", {}, body, 0))  # type: ignore[arg-type]
            seen.append(app.step_time_ns())
        return seen

    seen = asyncio.run(arrive(150))
    assert seen == [config.step_ns_at(r) for r in range(1, 151)]
    assert seen[-1] == round(COST.step_ms(150 * 4, 3) * 1e6)


@pytest.mark.parametrize(("flags", "line"), [
    (["--cost", "base=0"], "error: --cost 'base=0': a step model needs base > 0 ms"),
    (["--cost", "token=0.1"], "error: --cost 'token=0.1': base=N (ms per iteration) is required"),
    (["--cost", "base=8,knee=many"], "error: --cost 'base=8,knee=many': 'knee=many': 'many' is not a number"),
    (["--cost", "base=8,batch=2"], "error: --cost 'base=8,batch=2': 'batch=2' is not one of base=N, token=N"),
    (["--cost", "base=nan"], "error: --cost: every cost must be a finite number (only knee may be inf)"),
    (["--cost", "base=8", "--load-step-ms", "1"], "error: --cost replaces --load-step-ms"),
    (["--draft-schedule", "2-:1"], "error: --draft-schedule: the first range must start at 1"),
    (["--draft-schedule", "1-:5"], "error: --draft-schedule: K 5 in '1-:5' is above the 3 draft positions"),
    (["--endpoints", "chat,embeddings"], "error: --endpoints: give one or more of completions, chat (not embeddings)"),
    (["--endpoints", ","], "error: --endpoints: give one or more of completions, chat"),
    (["--reasoning-tokens", "-1"], "error: reasoning tokens must be at least 0"),
])
def test_a_bad_emulate_option_is_one_error_line_and_exit_2(flags, line, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["loadgen", "emulate", "--port", "0", *flags])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(line), err
