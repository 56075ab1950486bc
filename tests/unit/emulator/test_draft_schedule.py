"""`loadgen emulate --draft-schedule`: K by the requests running, as vLLM's
num_speculative_tokens_per_batch_size; parsed strictly, priced by --cost, drawn per step."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from loadgen.analysis.step_model import StepModel
from loadgen.emulator import EmulatorConfig
from loadgen.emulator.counters import Counters
from loadgen.emulator.http import Request
from loadgen.emulator.schedule import draft_length_at, parse_draft_schedule
from loadgen.emulator.server import App


def test_a_schedule_reads_as_vllms_inclusive_ranges():
    schedule = parse_draft_schedule("1-7:3,8-:0", 3)
    assert schedule == ((1, 7, 3), (8, None, 0))
    assert [draft_length_at(schedule, r) for r in (1, 7, 8, 9, 500)] == [3, 3, 0, 0, 0]
    # a single number is a one-wide range; a gap keeps the previous K; past the last range its K holds
    gappy = parse_draft_schedule(" 1:2, 4-5:1 ,9-12:0", 2)
    assert gappy == ((1, 1, 2), (4, 5, 1), (9, 12, 0))
    assert [draft_length_at(gappy, r) for r in (1, 2, 3, 4, 5, 6, 8, 9, 12, 13)] == [2, 2, 2, 1, 1, 1, 1, 0, 0, 0]


@pytest.mark.parametrize(("text", "message"), [
    ("", "--draft-schedule is empty"),
    ("1-7", "'1-7' is not FIRST-LAST:K"),
    ("1-x:3", "'1-x:3' is not FIRST-LAST:K"),
    ("0-7:3", "'0-7:3' is not FIRST-LAST:K with 1 <= FIRST <= LAST"),
    ("1-7:-1", "K >= 0"),
    ("5-3:1", "1 <= FIRST <= LAST"),
    ("2-7:3", "the first range must start at 1"),
    ("1-7:3,7-:0", "'7-:0' overlaps the range before it"),
    ("1-:3,9-:0", "'9-:0' overlaps"),
    ("1-7:4", "K 4 in '1-7:4' is above the 3 draft positions"),
])
def test_a_bad_schedule_names_what_is_wrong(text, message):
    with pytest.raises(ValueError, match="--draft-schedule") as raised:
        parse_draft_schedule(text, 3)
    assert message in str(raised.value)


def test_cost_prices_each_steps_k():
    cost = StepModel.parse("base=10,token=0.05,knee=16,compute=1.0,draft=2")
    config = EmulatorConfig(cost=cost, accept=(0.8, 0.6, 0.4), draft_schedule=((1, 7, 3), (8, None, 0)))
    assert config.step_ns_at(7) == round(cost.step_ms(7 * 4, 3) * 1e6)
    assert config.step_ns_at(8) == round(cost.step_ms(8, 0) * 1e6)  # K 0: one token each, no draft cost
    assert config.nominal_step_ms == pytest.approx(cost.step_ms(4, 3))
    with pytest.raises(ValueError, match="above the 2 draft positions"):
        EmulatorConfig(accept=(0.8, 0.6), draft_schedule=((1, None, 3),))


def test_each_step_drafts_the_k_of_the_requests_running():
    """With every draft accepted, a decode step's tokens are 1 + the K of the requests running
    at that step, and the counters see that K drafted."""
    config = EmulatorConfig(accept=(1.0, 1.0, 1.0), draft_schedule=((1, 1, 3), (2, 2, 2), (3, None, 0)))

    class Conn:
        closed = False

        def begin_stream(self) -> None: ...

        def write_chunk(self, payload: bytes) -> None: ...

    async def scenario() -> tuple[list[int], int]:
        app = App(config, Counters(1, config.draft_len), 0)
        body = orjson.dumps({"model": "emulator", "prompt": [1, 2, 3], "max_tokens": 1000, "stream": True})
        app.handle(Conn(), Request("POST", "/v1/completions", {}, body, 0))  # type: ignore[arg-type]
        generation = app.stepper._heap[0][2].__self__  # type: ignore[attr-defined]
        generation.step(0)  # the prefill: one token
        tokens = []
        for running in (1, 2, 3, 9, 2, 1):
            app.running = running  # as if others had arrived or ended
            before = generation.emitted
            generation.step(0)
            tokens.append(generation.emitted - before)
        return tokens, app.counters.array[app.i_draft_tokens]

    tokens, drafted = asyncio.run(scenario())
    assert tokens == [4, 3, 1, 1, 3, 4]
    assert drafted == 3 + 2 + 2 + 3
