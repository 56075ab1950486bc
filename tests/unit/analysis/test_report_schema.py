"""The report's types, its JSON Schema and the journal's: generated and shipped schema equal, the
version bumped with any schema change, and strict enough to catch a missing or mistyped field."""

import copy
import hashlib
import json
from array import array
from pathlib import Path

import jsonschema
import pytest

from loadgen.analysis import SCHEMA_VERSION, Report, build_report, report_schema, shipped_schema
from loadgen.analysis.report_types import HeldRate
from loadgen.config import RunConfig
from loadgen.engines import ServerAcceptance, get_adapter
from loadgen.records import ERROR_KINDS, ErrorInfo, RequestRecord
from tests.records import streamed_record

#: sha256 of each schema version's files (report, requests; canonical JSON). A schema change needs
#: a new SCHEMA_VERSION and its hash here; never edit a hash of a released version.
SCHEMA_HASHES = {
    2: "a2bc9cdae28be38e4831b0154ee4a060d7110836f53ebb56b73739081b7b0946",
    3: "3570d0fb2f46af1cbd6a0e7932b8619aea8a94a8bf67d755e4fca02278108a39",
    4: "bd492686334b5b1ab6a6c5f49d0a726aa6d6f79995bba3e1a3b471e614a9a509",
    5: "f6bca54c0981293ffe7da557b3bd9e000b5ddffd5365674e2514c033ff21015f",
    6: "088dfb2a06a3787724af75e19c9b93d2cda1764eb29dd0409f66ae8d3a025e7d",
    7: "c3b6bb058eb66f45898b764135adf90fee1566556b24fdb526013d92810f5f2a",
}

REGENERATE = ("python -c 'import json; from loadgen.analysis import report_schema; "
              "open(\"loadgen/schemas/report.schema.json\", \"w\")"
              ".write(json.dumps(report_schema(), indent=2) + \"\\n\")'")


def _schemas_hash() -> str:
    canonical = [json.dumps(shipped_schema(name), sort_keys=True, separators=(",", ":"))
                 for name in ("report", "requests")]
    return hashlib.sha256("\n".join(canonical).encode()).hexdigest()


def _record(request_id: int, tokens: list[int], *, category: str = "chat", error: ErrorInfo | None = None,
            step_ns: int = 20_000_000) -> RequestRecord:
    return streamed_record(request_id, tokens, scheduled_ns=10**12 + request_id * 10**8, category=category,
                           sub_category="short", step_ns=step_ns, error=error)


def _report(**overrides) -> Report:
    """A report with every optional section filled: SLOs, server figures, per-request server counts."""
    records = [_record(i, [1, 3, 2, 4, 1]) for i in range(6)]
    records[0].server_draft_tokens, records[0].server_accepted_tokens = 12, 8
    records[1].retried = ["http_status/503"]
    records.append(_record(9, [], error=ErrorInfo("http_status", "HTTP 500", status=500)))
    public = RunConfig(url=None, output_dir=Path("out"), num_requests=7).public() | {
        "run_id": "r", "engine": "vllm", "model": "m", "emulator": None, "workers": 1, "workload_info": {},
        "loadgen_version": "0", "started_at": "2025-01-01T00:00:00+00:00", "proxy": "http://proxy.corp:3128"}
    server = ServerAcceptance("vllm /metrics", 2.4, drafts=10.0, draft_tokens=30.0, accepted_tokens=14.0,
                              acceptance_rate=0.47, per_position=[0.8, 0.4, 0.2], time_series=[{"t_s": 1.0}])
    kwargs = dict(config=public, records=records, adapter=get_adapter("vllm"), server=[server],
                  client_read_lag={"reads": 10, "p50_s": 1e-5, "p99_s": 2e-5, "max_s": 3e-5}, target_concurrency=4,
                  slo=(("ttft", 95.0, 0.5),))
    return build_report(**(kwargs | overrides))


def test_shipped_report_schema_is_the_generated_one():
    assert shipped_schema("report") == report_schema(), f"regenerate it: {REGENERATE}"


def test_schema_version_changes_with_the_schemas():
    assert SCHEMA_HASHES.get(SCHEMA_VERSION) == _schemas_hash(), (
        f"loadgen/schemas/ changed: bump SCHEMA_VERSION in loadgen/analysis/report_types.py and add "
        f"{SCHEMA_VERSION + 1}: {_schemas_hash()!r} to SCHEMA_HASHES (schemas hash now {_schemas_hash()})")


def test_a_full_report_validates_and_round_trips():
    report = _report()
    data = report.to_json()
    jsonschema.validate(data, shipped_schema("report"))
    assert Report.from_json(json.loads(json.dumps(data))) == report
    assert data["speculative"]["server_per_request"]["chat"]["accepted_tokens"] == 8
    assert "workers" not in data and "rebuilt_from_journal" not in data  # written only where they apply


def test_a_version_2_report_without_coverage_reads_back_unchanged():
    data = _report().to_json()
    assert data["speculative"]["coverage"]["drafted_steps"] == 10
    old = _with(_without(data, ("speculative", "coverage")), ("schema_version",), 2)
    report = Report.from_json(old)
    assert report.speculative.coverage is None and report.to_json() == old


def test_a_stepped_run_has_its_levels_and_a_version_3_report_reads_back_without():
    public = _report().to_json()["config"] | {"concurrency_levels": [1, 4], "level_duration_s": 0.3}
    stepped = _report(config=public, target_concurrency=None)
    data = stepped.to_json()
    jsonschema.validate(data, shipped_schema("report"))
    assert [row["concurrency"] for row in data["levels"]["levels"]] == [1, 4]
    assert sum(row["requests"] for row in data["levels"]["levels"]) == data["summary"]["requests_sent"]
    assert Report.from_json(json.loads(json.dumps(data))) == stepped
    plain = _report().to_json()
    assert "levels" not in plain and "concurrency_levels" not in plain["config"]  # written only where they apply
    old = _with(plain, ("schema_version",), 3)
    report = Report.from_json(old)
    assert report.levels is None and report.config.concurrency_levels is None and report.to_json() == old


def test_open_loop_and_rebuilt_reports_validate():
    rate = _report(target_concurrency=None, target_rate=5.0, slo=(), server=[], rebuilt_from_journal=True).to_json()
    jsonschema.validate(rate, shipped_schema("report"))
    assert set(rate["load"]) >= {"target_rate", "late_p99_s"} and rate["rebuilt_from_journal"] is True
    assert isinstance(Report.from_json(rate).load, HeldRate)  # told apart from HeldLoad by its keys
    assert Report.from_json(rate).to_json() == rate


def _without(data: dict, path: tuple[str, ...]) -> dict:
    broken = copy.deepcopy(data)
    *parents, last = path
    node = broken
    for key in parents:
        node = node[key]
    del node[last]
    return broken


def _with(data: dict, path: tuple[str, ...], value) -> dict:
    broken = copy.deepcopy(data)
    *parents, last = path
    node = broken
    for key in parents:
        node = node[key]
    node[last] = value
    return broken


@pytest.mark.parametrize("path", [("summary", "output_tokens"), ("stop_reason",), ("latency", "ttft_s", "p99"),
                                  ("speculative", "cross_check", "flagged"), ("config", "model"),
                                  ("categories", "chat", "ttft_p50_s")])
def test_a_missing_field_fails(path):
    data = _report().to_json()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_without(data, path), shipped_schema("report"))
    with pytest.raises(ValueError, match="missing key"):
        Report.from_json(_without(data, path))


@pytest.mark.parametrize("path, value", [(("summary", "requests_sent"), "7"), (("partial",), 0),
                                         (("latency", "e2e_s", "p50"), "fast"), (("time_series",), {}),
                                         (("slo", "all_met"), None), (("summary", "requests_sent"), 7.5),
                                         (("speculative", "server", "per_position"), [0.8, "x"])])
def test_a_mistyped_field_fails(path, value):
    data = _report().to_json()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_with(data, path, value), shipped_schema("report"))
    with pytest.raises(ValueError):
        Report.from_json(_with(data, path, value))


def test_an_unknown_field_or_version_fails():
    data = _report().to_json()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_with(data, ("summary", "surprise"), 1), shipped_schema("report"))
    with pytest.raises(ValueError, match="unexpected key 'surprise'"):
        Report.from_json(_with(data, ("summary", "surprise"), 1))
    with pytest.raises(ValueError, match="schema_version 99"):
        Report.from_json(_with(data, ("schema_version",), 99))


def test_journal_schema_covers_every_field_a_record_writes():
    schema = shipped_schema("requests")
    full = _record(1, [1, 3])
    full.receive_lag_ns, full.retried = array("q", [5, 6]), ["timeout/first_token"]
    full.cached_tokens, full.prompt_id = 64, "sample-3"
    full.server_prompt_tokens, full.reasoning_tokens, full.estimated_counts = 101, 1, True
    full.first_answer_ns = full.chunk_ns[1]
    full.output_ids = array("i", [17, 4, 9])
    full.server_steps, full.stream_steps, full.uncounted_chunks = 1, 2, 3
    failed = _record(2, [], error=ErrorInfo("timeout", "no first token", phase="first_token"))
    for record in (full, failed, RequestRecord(3, "c", 0, 1, 1, scheduled_ns=5)):
        jsonschema.validate(record.to_json(), schema)
    assert set(full.to_json()) == set(schema["properties"])
    assert set(RequestRecord(3, "c", 0, 1, 1, scheduled_ns=5).to_json()) == set(schema["required"])
    assert tuple(schema["$defs"]["ErrorInfo"]["properties"]["kind"]["enum"]) == ERROR_KINDS


@pytest.mark.parametrize("change", [lambda line: line.pop("outcome"), lambda line: line.update(turn="0"),
                                    lambda line: line.update(chunk_ns=[1.5]), lambda line: line.update(extra=1),
                                    lambda line: line["error"].update(kind="gremlins")])
def test_a_broken_journal_line_fails(change):
    line = _record(2, [], error=ErrorInfo("connect", "refused")).to_json()
    change(line)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(line, shipped_schema("requests"))
