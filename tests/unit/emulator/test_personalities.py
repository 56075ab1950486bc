"""The emulator's engine personalities in-process: chunk bytes equal the engines' JSON, request
validation, the accept-profile file, SGLang's windowed gauges and TRT-LLM's draining iteration queue."""

import asyncio
import io
import json

import orjson
import pytest
from rich.console import Console

from loadgen.config import RunConfig
from loadgen.emulator import llamacpp, sglang, trtllm
from loadgen.emulator.counters import Counters
from loadgen.emulator.engine import BatchStats, GenerationParams, RequestRejected
from loadgen.emulator.profile import (
    DEFAULT_TEMPERATURE_SLOPE,
    AcceptSettings,
    expected_acceptance_length,
    load_accept_profile,
    step_probabilities,
    validate_accept_profile,
)
from loadgen.emulator.server import PERSONALITIES, EmulatorConfig
from loadgen.emulator.stepper import PositionalSampler, Stepper
from loadgen.errors import UsageError
from loadgen.run import run
from loadgen.run.lifecycle import emulator_args


def params(**kw) -> GenerationParams:
    base = dict(model='m"odel', prompt_tokens=7, max_tokens=9, stream=True, include_usage=True,
                continuous_usage=False, return_token_ids=False, ignore_eos=True)
    return GenerationParams(**{**base, **kw})


def personality(engine: str, workers: int = 1, **config):
    cfg = EmulatorConfig(engine=engine, workers=workers, **config)
    counters = Counters(workers, cfg.draft_len, gauges=PERSONALITIES[engine].gauges)
    return PERSONALITIES[engine](cfg, counters, 0), counters


class FakeGen:
    def __init__(self, p, emitted=9, index=4, drafts=3, accepted=5, draft_tokens=None):
        self.params, self.emitted, self.index, self.drafts, self.accepted = p, emitted, index, drafts, accepted
        self.draft_tokens = 3 * drafts if draft_tokens is None else draft_tokens
        self.rid, self.created, self.start_ns, self.first_ns = "cmpl-3", 1700000000, 1_000_000_000, 1_050_000_000


def events(raw: bytes) -> list[dict | str]:
    out = []
    for block in raw.decode().split("\n\n"):
        if block:
            assert block.startswith("data: ")
            body = block[len("data: "):]
            out.append(body if body == "[DONE]" else json.loads(body))
    return out


# -- chunk shapes ----------------------------------------------------------------------------------

@pytest.mark.parametrize("continuous", [False, True])
def test_sglang_chunk_is_its_model_dump(continuous):
    p = params(continuous_usage=continuous)
    enc = sglang.StreamEncoder("cmpl-3", 1700000000, p)
    [chunk] = events(enc.events(' a "quoted" é', [], "length", 4, 2, b',"emulator_sent_ns":12'))
    expected = {"id": "cmpl-3", "object": "text_completion", "created": 1700000000, "model": 'm"odel',
                "choices": [{"index": 0, "text": ' a "quoted" é', "logprobs": None, "finish_reason": "length",
                             "matched_stop": None}],
                "usage": None, "emulator_sent_ns": 12}
    if continuous:
        expected["usage"] = {"prompt_tokens": 7, "total_tokens": 11, "completion_tokens": 4,
                             "prompt_tokens_details": None, "reasoning_tokens": 0}
    assert chunk == expected
    assert list(chunk) == list(expected)  # field order as pydantic writes it
    usage, done = events(enc.tail(FakeGen(p), 0))
    assert usage == {"id": "cmpl-3", "object": "text_completion", "created": 1700000000, "model": 'm"odel',
                     "choices": [], "usage": {"prompt_tokens": 7, "total_tokens": 16, "completion_tokens": 9,
                                              "reasoning_tokens": 0}}
    assert done == "[DONE]"


@pytest.mark.parametrize("continuous, ids", [(False, False), (True, True)])
def test_trtllm_chunk_has_every_field(continuous, ids):
    p = params(continuous_usage=continuous, return_token_ids=ids)
    enc = trtllm.StreamEncoder("cmpl-3", 1700000000, p)
    [chunk] = events(enc.events("ab", [5, 6], None, 6, 3))
    expected = {"id": "cmpl-3", "object": "text_completion", "created": 1700000000, "model": 'm"odel',
                "choices": [{"index": 0, "text": "" if ids else "ab", "token_ids": [5, 6] if ids else None,
                             "logprobs": None, "finish_reason": None, "stop_reason": None,
                             "avg_decoded_tokens_per_iter": 2.0}],
                "usage": None}
    if continuous:
        expected["usage"] = {"prompt_tokens": 7, "total_tokens": 13, "completion_tokens": 6,
                             "prompt_tokens_details": {"cached_tokens": 0}}
    assert chunk == expected and list(chunk["choices"][0]) == list(expected["choices"][0])
    usage, done = events(enc.tail(FakeGen(p), 0))
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 9 and done == "[DONE]"


def test_llamacpp_one_event_per_token_and_final_timings():
    p = params()
    enc = llamacpp.StreamEncoder("chatcmpl-7", 1700000000, p, "tiny.gguf")
    step = events(enc.events([" a", " b", " c"], [], None, 3, 2))
    assert [e["choices"][0]["text"] for e in step] == [" a", " b", " c"]
    assert step[0] == {"choices": [{"text": " a", "index": 0, "logprobs": None, "finish_reason": None}],
                       "created": 1700000000, "model": "tiny.gguf", "system_fingerprint": llamacpp.SYSTEM_FINGERPRINT,
                       "object": "text_completion", "id": "chatcmpl-7"}
    assert list(step[0]) == ["choices", "created", "model", "system_fingerprint", "object", "id"]
    final, done = events(enc.tail(FakeGen(p, emitted=9, drafts=3, accepted=5), 1_250_000_000))
    assert final["choices"] == [{"text": "", "index": 0, "logprobs": None, "finish_reason": "length"}]
    assert final["usage"] == {"completion_tokens": 9, "prompt_tokens": 7, "total_tokens": 16,
                              "prompt_tokens_details": {"cached_tokens": 0}}
    t = final["timings"]
    assert (t["prompt_n"], t["predicted_n"], t["draft_n"], t["draft_n_accepted"]) == (7, 9, 9, 5)
    assert t["prompt_ms"] == pytest.approx(50.0) and t["predicted_ms"] == pytest.approx(200.0)
    assert t["predicted_per_second"] == pytest.approx(45.0)
    assert list(final) == ["choices", "created", "model", "system_fingerprint", "object", "usage", "id", "timings"]
    assert done == "[DONE]"
    no_draft = llamacpp.timings(FakeGen(p, drafts=0, accepted=0), 1_250_000_000)
    assert "draft_n" not in no_draft and "draft_n_accepted" not in no_draft  # as llama-server: only when drafted


def test_llamacpp_numbers_are_written_like_cpp_ostream():
    assert [llamacpp.cpp_double(v) for v in (0, 12, 0.5, 1234567, 0.000123)] == \
        ["0", "12", "0.5", "1.23457e+06", "0.000123"]


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm", "llamacpp"])
def test_error_bodies_and_mid_stream_errors(engine):
    p, _ = personality(engine)
    body = p.error_body(400, "bad")
    assert orjson.dumps(body)
    event = p.error_event(500, "boom")
    if engine == "trtllm":
        assert event is None  # trtllm-serve's generator raises: the connection is cut
    else:
        parsed = events(event)
        assert parsed[0]["error"]["message"] == "boom" and parsed[0]["error"]["code"] == 500
        assert (parsed[-1] == "[DONE]") == (engine != "llamacpp")


# -- request validation ----------------------------------------------------------------------------

def test_trtllm_rejects_unknown_fields_like_pydantic_extra_forbid():
    p, _ = personality("trtllm")
    with pytest.raises(RequestRejected) as info:
        p.parse_request({"model": "m", "prompt": [1], "return_token_ids": True}, {})
    assert info.value.status == 400
    assert "extra_forbidden" in info.value.body["error"] and "return_token_ids" in info.value.body["error"]
    for bad in ({"prompt": [1]},                                              # model is required
                {"model": "m", "prompt": [1], "stream_options": {"include_usage": True}},  # needs stream
                {"model": "m", "prompt": [1], "stream": True, "stream_options": {"x": 1}},
                {"model": "m", "prompt": [1], "suffix": "s"}):
        with pytest.raises(RequestRejected) as info:
            p.parse_request(bad, {})
        assert info.value.status == 400
    ok = p.parse_request({"model": "x", "prompt": [1, 2], "stream": True, "stream_options": {}, "detokenize": False,
                          "max_tokens": 5, "temperature": 0, "top_p": 1, "n": 1, "stop": [], "ignore_eos": True,
                          "logprobs": None, "seed": 1, "user": "u"}, {"x-loadgen-category": "code"})
    assert ok.include_usage and not ok.continuous_usage and ok.return_token_ids and ok.model == "x"
    assert ok.category == "code" and ok.max_tokens == 5
    assert not p.parse_request({"model": "x", "prompt": "a", "stream": True}, {}).include_usage


def test_sglang_continuous_usage_needs_no_include_usage_and_any_model_is_served():
    p, _ = personality("sglang")
    got = p.parse_request({"model": "anything", "prompt": [1], "return_token_ids": True,
                           "stream_options": {"continuous_usage_stats": True}}, {})
    assert got.continuous_usage and not got.include_usage and got.model == "anything"
    assert p.parse_request({"prompt": "a b"}, {}).model == "default"


def test_llamacpp_ignores_the_model_and_defaults_n_predict():
    p, _ = personality("llamacpp", model="tiny.gguf")
    got = p.parse_request({"model": "x", "prompt": [1, 2, 3]}, {})
    assert got.model == "tiny.gguf" and got.max_tokens == 16 and not got.continuous_usage


def test_trtllm_refuses_several_workers():
    with pytest.raises(ValueError, match="--workers 2 is not supported with --engine trtllm"):
        EmulatorConfig(engine="trtllm", workers=2)
    EmulatorConfig(engine="sglang", workers=2)


# -- accept profile --------------------------------------------------------------------------------

def test_accept_profile_validation(tmp_path):
    good = tmp_path / "p.json"
    good.write_text('{"coding": [0.9, 0.8], "default": [0.5, 0.5]}')
    assert load_accept_profile(good, fallback=(0.8, 0.6, 0.4)) == {"coding": AcceptSettings((0.9, 0.8)),
                                                                   "default": AcceptSettings((0.5, 0.5))}
    cases = {"[1, 2]": "must be a JSON object", "{}": "names no category", "{": "not valid JSON",
             '{"a": [1.5]}': "list of probabilities in [0, 1]", '{"a": "0.5"}': "list of probabilities",
             '{"a": [0.5], "b": [0.5, 0.5]}': "same length", '{"a": [true]}': "list of probabilities"}
    for text, message in cases.items():
        good.write_text(text)
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
            load_accept_profile(good)
        assert "\n" not in str(info.value) and str(good) in str(info.value)
    with pytest.raises(ValueError, match="without a \"default\" entry --accept serves"):
        validate_accept_profile({"a": [0.5, 0.5]}, fallback=(0.8,))
    with pytest.raises(ValueError, match="cannot read accept profile"):
        load_accept_profile(tmp_path / "missing.json")


def test_config_draft_length_comes_from_the_profile():
    cfg = EmulatorConfig(accept=(), accept_profile=(("a", (0.9, 0.5)), ("default", (0.1, 0.1))))
    assert cfg.draft_len == 2
    with pytest.raises(ValueError, match="same length"):
        EmulatorConfig(accept_profile=(("a", (0.9,)), ("b", (0.1, 0.1))))


# -- windows, drains, stepper ----------------------------------------------------------------------

def batch(decode=0, drafts=0, accepted=0, tokens=0, prefill=0, completed=0) -> BatchStats:
    b = BatchStats()
    b.decode, b.drafts, b.accepted, b.decode_tokens, b.prefill, b.completed = (decode, drafts, accepted, tokens,
                                                                               prefill, completed)
    b.draft_tokens = drafts * 2
    return b


def test_sglang_gauges_are_set_per_window_of_40_steps():
    p, counters = personality("sglang", step_ms=1.0, accept=(0.5, 0.5))
    ms = 1_000_000
    p.on_batch(batch(prefill=1), 0)          # prefill batches are not decode batches: no window starts
    p.on_batch(batch(decode=2, drafts=2, accepted=4, tokens=6), 1 * ms)  # window opens at 1 ms
    p.on_batch(batch(decode=2, drafts=2, accepted=0, tokens=2), 20 * ms)
    assert counters.gauge(0, "spec_accept_length") == 0.0      # 19 ms < 40 ms: nothing published yet
    p.on_batch(batch(decode=1, drafts=1, accepted=1, tokens=2), 41 * ms)  # closes [1, 41] ms, this step included
    assert counters.gauge(0, "spec_accept_length") == pytest.approx((5 + 5) / 5)   # (accepted + steps) / steps
    assert counters.gauge(0, "spec_accept_rate") == pytest.approx(5 / (5 * 2))     # accepted / draft tokens
    assert counters.gauge(0, "gen_throughput") == pytest.approx(10 / 0.040)
    p.on_batch(batch(decode=4, drafts=4, accepted=8, tokens=12), 60 * ms)
    assert counters.gauge(0, "spec_accept_length") == pytest.approx(2.0)           # held until the next window
    p.on_batch(batch(decode=1, drafts=1, accepted=2, tokens=3), 81 * ms)
    assert counters.gauge(0, "spec_accept_length") == pytest.approx(3.0)
    assert "sglang:spec_accept_length" in p.metrics_text()
    quiet, _ = personality("sglang", accept=())
    assert "spec_accept" not in quiet.metrics_text() and "avg_spec_accept_length" not in str(quiet.server_info())


def test_trtllm_metrics_drain_and_keep_the_newest_1000():
    p, _ = personality("trtllm", accept=(0.5, 0.5))
    for i in range(1005):
        p.on_batch(batch(decode=3, drafts=3, accepted=i % 4, tokens=3 + i % 4), (i + 1) * 1_000_000)
    got = p.drain()
    assert len(got) == trtllm.MAX_PENDING_ITERATIONS and [g["iter"] for g in got] == list(range(6, 1006))
    assert p.drain() == []
    spec = got[0]["specDecodingStats"]
    assert spec["acceptanceLength"] == (spec["numAcceptedTokens"] + spec["numRequestsWithDraftTokens"]) \
        / spec["numRequestsWithDraftTokens"]
    assert got[0]["inflightBatchingStats"]["numGenRequests"] == 3


def test_stepper_reports_each_firing_that_stepped():
    async def main():
        fired = []
        stepper = Stepper(asyncio.get_running_loop(), on_fire=fired.append)
        import time
        now = time.monotonic_ns()
        left = {"a": 3, "b": 2}

        def item(name):
            def step(t):
                left[name] -= 1
                return t + 2_000_000 if left[name] else None
            return step

        stepper.schedule(now + 1_000_000, item("a"))
        stepper.schedule(now + 1_000_000, item("b"))
        await asyncio.sleep(0.05)
        return fired

    fired = asyncio.run(main())
    assert 2 <= len(fired) <= 5 and not any(x is None for x in fired)


class _Values:
    """A stand-in rng whose random() returns the given values in turn."""

    def __init__(self, values):
        self._values = iter(values)

    def random(self):
        return next(self._values)


def test_positional_sampler_uses_the_profile_formula():
    """PositionalSampler (the hot path) accepts position i exactly when the draw is below
    profile.step_probabilities' q_i' at that output position."""
    accept, scale, boost, slope, max_tokens = (0.9, 0.7, 0.5), 1.2, 0.8 * 0.3, 1.5, 100
    for emitted in (1, 30, 70, 99):
        probs = step_probabilities(accept, position_frac=emitted / max_tokens, scale=scale, position_slope=slope,
                                   copy_share=0.3, copy_gain=0.8)
        for cut in range(len(accept) + 1):  # draws just below q' up to position `cut`, then just above
            values = [q - 1e-9 for q in probs[:cut]] + [q + 1e-9 for q in probs[cut:]]
            sampler = PositionalSampler([p * scale for p in accept], _Values(values), position_slope=slope,
                                        max_tokens=max_tokens, boost=boost)
            assert sampler.draw(emitted) == cut


def test_expected_acceptance_length_is_one_plus_the_running_products():
    assert expected_acceptance_length([0.8, 0.6, 0.4]) == pytest.approx(1 + 0.8 + 0.48 + 0.192)
    # the seeds' temperature figure: 0.81 at T 0 becomes about 0.38 at T 1.5 with the default slope
    assert step_probabilities([0.81], temperature=1.5, temperature_slope=DEFAULT_TEMPERATURE_SLOPE)[0] == \
        pytest.approx(0.38, abs=0.01)
    # copy lifts toward 1; position factor 1 +- slope / 2 at the ends; clipped to [0, 1]
    assert step_probabilities([0.5], copy_share=1.0, copy_gain=1.0) == (1.0,)
    assert step_probabilities([0.5], position_frac=1.0, position_slope=1.0) == (0.75,)
    assert step_probabilities([0.9], scale=1.3) == (1.0,)


def test_run_passes_the_accept_profile_to_its_emulator_and_checks_it_first(tmp_path):
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text('{"default": {"accept": [0.8, 0.6, 0.4], "position_slope": 0.5}}')
    bad.write_text('{"default": {"accept": [0.8], "spread": 0.5}}')
    config = RunConfig.from_options({"emulator_accept_profile": str(good), "output_dir": tmp_path / "out"})
    args = emulator_args(config)
    assert args[args.index("--accept-profile") + 1] == str(good)
    config = RunConfig.from_options({"emulator_accept_profile": str(bad), "output_dir": tmp_path / "out"})
    with pytest.raises(UsageError, match="--emulator-accept-profile: accept profile .* unknown key 'spread'"):
        run(config, Console(file=io.StringIO()))
    assert not (tmp_path / "out").exists()
