"""The AL definitions, AL by output position, the per-request spread and AL against output length, on
hand-built streams whose every figure follows by hand; and a version-5 report still reads."""

import json
from pathlib import Path

import jsonschema
import pytest

from loadgen.analysis import Report, build_report, shipped_schema
from loadgen.analysis.acceptance_views import (
    acceptance_definitions,
    al_by_output_length,
    al_by_position,
    position_bucket_tokens,
    specdec_bench_request_acceptance_length,
)
from loadgen.config import RunConfig
from loadgen.engines import get_adapter
from tests.records import streamed_record


@pytest.mark.parametrize(("tokens", "expected"), [
    ([1, 3, 4, 2], 3.5),  # one-token first chunk and the last chunk dropped
    ([2, 3, 4, 2], 3.0),  # a first chunk of two tokens is kept (the engine merged a step into it)
    ([1, 2], 1.0),  # nothing left after trimming: counted as [1]
    ([5], 1.0),
])
def test_specdec_bench_trims_a_one_token_first_chunk_and_every_last_chunk(tokens, expected):
    assert specdec_bench_request_acceptance_length(tokens) == pytest.approx(expected)


def test_the_three_definitions_differ_as_their_weights_say():
    # a long request of AL 3 and a short one of AL 1.5: pooled, the long one's steps dominate
    long, short = [1, *[3] * 9, 1], [1, 2, 1]
    d = acceptance_definitions([long, short])
    assert d["token_weighted"] == pytest.approx((27 + 1 + 3) / 12)
    assert d["per_request_mean"] == pytest.approx(((27 + 1) / 10 + 1.5) / 2)
    assert d["specdec_bench"] == pytest.approx((3.0 + 2.0) / 2)
    assert (d["requests"], d["steps"]) == (2, 12)


def test_position_buckets_count_each_step_where_it_starts():
    assert position_bucket_tokens(64) == 8 and position_bucket_tokens(512) == 64
    assert position_bucket_tokens(1000) == 128 and position_bucket_tokens(10) == 8
    rows = al_by_position([[1, 3, 3, 2], [1, 1, 1, 4]], 4)
    # first: steps start at 1, 4, 7; second at 1, 2, 3 -> bucket 0 holds 3 + 1 + 1 + 4, bucket 1 holds 3 + 2
    assert [(r["start_tokens"], r["steps"], r["tokens"]) for r in rows] == [(0, 4, 9), (4, 2, 5)]
    assert rows[0]["acceptance_length"] == pytest.approx(9 / 4)


def test_output_length_bins_hold_per_request_al():
    # 7, 3 and 17 output tokens: (0, 8] holds two, (16, 24] one
    rows = al_by_output_length([[1, 3, 3], [1, 1, 1], [1, 4, 4, 4, 4]], 8)
    assert [(r["start_tokens"], r["requests"]) for r in rows] == [(0, 2), (16, 1)]
    assert [r["start_tokens"] for r in al_by_output_length([[1, 3, 4], [1, 3, 5]], 8)] == [0, 8]  # 8 and 9
    assert rows[0]["acceptance_length_mean"] == pytest.approx(2.0)
    assert rows[0]["acceptance_length_std"] == pytest.approx(1.0)
    assert rows[1]["acceptance_length_mean"] == pytest.approx(4.0)


def _config() -> dict:
    return RunConfig(url=None, output_dir=Path("out"), num_requests=4).public() | {
        "run_id": "r", "engine": "vllm", "model": "m", "emulator": None, "workers": 1, "workload_info": {},
        "loadgen_version": "0", "started_at": "2025-01-01T00:00:00+00:00"}


def test_the_report_labels_each_definition_per_run_and_category_and_a_version_5_report_reads():
    records = [streamed_record(0, [1, *[3] * 9, 1], scheduled_ns=10**12, category="code"),
               streamed_record(1, [1, 2, 1], scheduled_ns=10**12, category="code"),
               streamed_record(2, [1, 2, 2], scheduled_ns=10**12, category="chat")]
    report = build_report(config=_config(), records=records, adapter=get_adapter("vllm"), server=[])
    views = report.acceptance
    assert views is not None and views.bucket_tokens == 8  # max_tokens 64
    assert views.run.definitions.token_weighted == report.speculative.client.acceptance_length
    code = views.by_category["code"]
    assert code.definitions.per_request_mean == pytest.approx(report.speculative.client.by_category["code"])
    assert code.definitions.token_weighted == pytest.approx(31 / 12)
    assert code.per_request.count == 2 and code.per_request.max == pytest.approx(2.8)
    assert views.by_category["chat"].definitions.specdec_bench == pytest.approx(2.0)
    data = report.to_json()
    jsonschema.validate(data, shipped_schema("report"))
    assert Report.from_json(json.loads(json.dumps(data))) == report
    old = {k: v for k, v in data.items() if k != "acceptance"} | {"schema_version": 5}
    assert Report.from_json(old).acceptance is None
