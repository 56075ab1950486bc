"""The TensorRT-LLM personality per version (--engine-version): at 1.2.1, the recipes' pin, its
/prometheus/metrics is what real 1.1/1.2 servers sent (the five unprefixed per-request metrics,
labelled "undefined", nothing speculative); at 1.3.0rc the trtllm_* counters loadgen reads."""

import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadgen.emulator import trtllm
from loadgen.emulator.server import PERSONALITIES, EmulatorConfig
from loadgen.engines import get_adapter

from .test_personalities import personality

REPO = Path(__file__).resolve().parents[3]
REAL = REPO / "tests/unit/engines/real/trtllm"
#: real /prometheus/metrics outputs of 1.1-1.2 (aibrix issues #2004, #2008) and PR #5785's build
FIXTURES = ("unknown-2026-03/prometheus.txt", "unknown-2026-03/prometheus-2.txt",
            "dev-pr5785-2025-07/prometheus-fragment.txt", "dev-pr5785-2025-07/prometheus-fragment-2.txt")
#: PR #5785's build named the finish-reason label `finish_reason`; the merged collector, the one
#: releases ship, names it `finished_reason` (tensorrt_llm/metrics/collector.py,
#: MetricsCollector.labelname_finish_reason, the vLLM collector it was adapted from)
RENAMED_BEFORE_MERGE = {"finish_reason": "finished_reason"}
SAMPLE = re.compile(r"^(\w+)\{(.*)\} (\S+)$")
SECOND = 1_000_000_000


class Finished:
    """What on_request_end reads of a Generation: arrival, first chunk, tokens."""

    def __init__(self, start_ns: int, first_ns: int, emitted: int) -> None:
        self.start_ns, self.first_ns, self.emitted = start_ns, first_ns, emitted


def labels(text: str) -> list[tuple[str, str]]:
    return re.findall(r'(\w+)="([^"]*)"', text)


def served(version: str | None = None):
    """A trtllm personality that has finished two requests: TTFT 0.05 s and 0.3 s, e2e 0.45 s and 2.3 s."""
    p, counters = personality("trtllm", engine_version=version, accept=(0.8, 0.6))
    p.on_request_end(Finished(0, SECOND // 20, 16), "requests_finished_length", 9 * SECOND // 20)
    p.on_request_end(Finished(SECOND, SECOND + 3 * SECOND // 10, 21), "requests_finished_length", 33 * SECOND // 10)
    p.on_request_end(Finished(0, 0, 0), "requests_aborted", SECOND)  # not a success: not observed
    return p, counters


def test_pinned_version_exports_what_real_1_2_servers_export():
    text = served()[0].prometheus_text()
    ours = text.splitlines()
    engine_families = {f.name: f for f in text_string_to_metric_families(text) if not f.name.startswith("emulator_")}
    assert set(engine_families) == {"e2e_request_latency_seconds", "time_to_first_token_seconds",
                                    "time_per_output_token_seconds", "request_queue_time_seconds", "request_success"}
    seen_families = set()
    for name in FIXTURES:
        for line in (REAL / name).read_text().splitlines():
            if line.startswith("#"):  # HELP and TYPE lines exactly as the real server writes them
                assert line in ours, line
                seen_families.add(line.split()[2])
                continue
            sample, label_text, _ = SAMPLE.match(line).groups()
            seen_families.add(re.sub(r"_(bucket|sum|count)$", "", sample))
            keys = [(RENAMED_BEFORE_MERGE.get(k, k), v) for k, v in labels(label_text)]
            # the same sample with the same label keys in the same order, and the same `le` bound
            match = [o for o in ours if (m := SAMPLE.match(o)) and m[1] == sample
                     and [k for k, _ in labels(m[2])] == [k for k, _ in keys]
                     and dict(labels(m[2])).get("le") == dict(keys).get("le")]
            assert match, line
    # every family the real outputs show, and no other (the parser drops a counter's _total)
    assert seen_families == {*engine_families} - {"request_success"} | {"request_success_total"}
    for sample in (s for f in engine_families.values() for s in f.samples):
        assert (sample.labels["engine_type"], sample.labels["model_name"]) == ("undefined", "undefined")
    assert "spec" not in text


def test_pinned_histograms_have_the_collectors_buckets_and_count_each_finished_request():
    families = {f.name: f for f in text_string_to_metric_families(served()[0].prometheus_text())}
    for name, _, bounds in trtllm.REQUEST_HISTOGRAMS:
        buckets = [s for s in families[name].samples if s.name.endswith("_bucket")]
        assert [float(s.labels["le"]) for s in buckets] == [*bounds, float("inf")]
        count = next(s.value for s in families[name].samples if s.name.endswith("_count"))
        assert count == buckets[-1].value == 2
    ttft = {s.labels["le"]: s.value for s in families["time_to_first_token_seconds"].samples if "le" in s.labels}
    assert (ttft["0.04"], ttft["0.06"], ttft["0.25"], ttft["0.5"]) == (0, 1, 1, 2)
    e2e_sum = next(s.value for s in families["e2e_request_latency_seconds"].samples if s.name.endswith("_sum"))
    assert e2e_sum == pytest.approx(0.45 + 2.3)
    tpot = {s.labels["le"]: s.value for s in families["time_per_output_token_seconds"].samples if "le" in s.labels}
    assert (tpot["0.025"], tpot["0.05"], tpot["0.075"], tpot["0.1"]) == (0, 1, 1, 2)  # 0.4 s / 15, 2.0 s / 20
    [success] = families["request_success"].samples
    assert success.labels["finished_reason"] == "length" and success.value == 2


def test_pinned_version_writes_no_engine_metric_before_a_request_finished():
    text = personality("trtllm")[0].prometheus_text()
    assert all(f.name.startswith("emulator_") for f in text_string_to_metric_families(text))


def test_adapter_reads_no_acceptance_at_1_2_1_and_an_exact_window_at_1_3():
    adapter = get_adapter("trtllm")
    for version in (None, "1.2.1", "1.3.0rc"):
        p, counters = served(version)
        counters.add("spec_drafts", 10)
        counters.add("spec_draft_tokens", 20)
        counters.add("spec_accepted_tokens", 13)
        counters.add("spec_accepted_pos_0", 8)
        counters.add("spec_accepted_pos_1", 5)
        reading = adapter.speculative_reading("/prometheus/metrics", p.prometheus_text())
        assert reading.acceptance == ("exact window" if version == "1.3.0rc" else "absent"), (version, reading)


def test_every_personality_defaults_to_the_version_its_recipes_pin():
    pins = {match for path in (REPO / "loadgen/servers/recipes").glob("*/*.yaml")
            for match in re.findall(r'^engine_version: "([^"]+)"', path.read_text(), re.M)}
    for engine, cls in PERSONALITIES.items():
        assert cls.versions and any(pin.split(" ")[0] == cls.versions[0] for pin in pins), engine
        assert personality(engine)[0].engine_version == cls.versions[0]
    assert PERSONALITIES["trtllm"].versions == ("1.2.1", "1.3.0rc")


@pytest.mark.parametrize("engine, version", [("trtllm", "1.3.0"), ("vllm", "1.2.1")])
def test_a_version_the_personality_does_not_speak_is_one_error_naming_those_it_does(engine, version):
    with pytest.raises(ValueError) as caught:
        EmulatorConfig(engine=engine, engine_version=version)
    assert str(caught.value) == (f"--engine-version {version!r}: --engine {engine} speaks "
                                 + ", ".join(PERSONALITIES[engine].versions))
