"""The engine contract on REAL engine outputs across versions (tests/unit/engines/real/): every
fixture is parsed as a run parses it, and what loadgen reads of it is held against readings.json,
worked out by hand from the bytes (the names present, the values summed or averaged), never
copied from loadgen's output. A speculative figure in a shape loadgen does not know, such as a
renamed counter, is "not read" with its names, never zero."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadgen.engines import detect_engine, get_adapter, server_metrics
from loadgen.engines.openai import decode_openai_object
from loadgen.engines.server_metrics import ACCEPTANCE_READINGS

from .compatibility import (
    BODY_KINDS,
    ENDPOINT_KINDS,
    ENGINE_TITLES,
    REAL,
    REPOSITORY,
    STREAM_KINDS,
    TABLE_END,
    TABLE_START,
    Fixture,
    endpoint_body,
    endpoint_reading,
    fixtures,
    markdown_table,
    recorded_stream,
    stream_events,
)

README = REPOSITORY / "README.md"
PROVENANCE_KEYS = {"file", "engine", "version", "version_basis", "kind", "endpoint", "speculative", "source",
                   "excerpt"}
ALL = fixtures()


def readings(engine: str) -> dict:
    return json.loads((REAL / engine / "readings.json").read_text())


def expected(fixture: Fixture) -> dict:
    return readings(fixture.engine)[fixture.name]


def of_kind(kinds: set[str]) -> list[Fixture]:
    return [f for f in ALL if f.kind in kinds]


def ids(items: list[Fixture]) -> list[str]:
    return [f"{f.engine}/{f.name}" for f in items]


# -- provenance --------------------------------------------------------------------------------

@pytest.mark.parametrize("engine", list(ENGINE_TITLES))
def test_every_real_output_has_its_provenance(engine):
    """Each file has an entry (version, how the version is known, source with its date, what part
    was kept), and each entry a file and a reading worked out by hand."""
    entries = fixtures(engine)
    listed = {f.file for f in entries}
    on_disk = {p.resolve() for p in (REAL / engine).rglob("*") if p.is_file()
               and p.name not in ("provenance.json", "readings.json")}
    assert on_disk <= listed, f"files without provenance: {sorted(map(str, on_disk - listed))}"
    hand = readings(engine)
    for f in entries:
        assert f.file.is_file(), f.name
        assert PROVENANCE_KEYS <= f.entry.keys(), (f.name, PROVENANCE_KEYS - f.entry.keys())
        assert f.entry["engine"] == engine
        assert {"repository", "url", "date"} <= f.entry["source"].keys(), f.name
        assert re.fullmatch(r"\d{4}-\d{2}(-\d{2})?|unknown .+", f.entry["source"]["date"]), f.name
        assert f.kind in ENDPOINT_KINDS | STREAM_KINDS | BODY_KINDS, f.kind
        assert f.name in hand, f"{f.name}: no hand reading in readings.json"
    assert set(hand) - {"_comment"} == {f.name for f in entries}


# -- metrics and server info --------------------------------------------------------------------

@pytest.mark.parametrize("fixture", of_kind(ENDPOINT_KINDS), ids=ids(of_kind(ENDPOINT_KINDS)))
def test_reads_each_version_s_speculative_figures(fixture):
    """The body parses (Prometheus text or JSON) and the adapter reads what the hand reading says:
    the kind (exact window, windowed gauge, cumulative, absent, not read), the names read, the
    speculative names left unread."""
    body = endpoint_body(fixture)
    if fixture.kind in ("metrics", "prometheus"):
        assert list(text_string_to_metric_families(body))
    else:
        orjson.loads(body)
    want = expected(fixture)
    reading = endpoint_reading(fixture)
    assert reading.acceptance in ACCEPTANCE_READINGS
    assert (reading.acceptance, list(reading.read), list(reading.not_read)) == \
           (want["acceptance"], want.get("read", []), want.get("not_read", []))


COUNTED = [f for f in of_kind({"metrics", "prometheus"}) if "counters" in expected(f)]


@pytest.mark.parametrize("fixture", COUNTED, ids=ids(COUNTED))
def test_counters_are_the_ones_in_the_bytes(fixture):
    counters = get_adapter(fixture.engine).spec_counters(endpoint_body(fixture))
    assert counters is not None
    assert counters.to_json() == expected(fixture)["counters"]


# -- streams and whole responses -----------------------------------------------------------------

@pytest.mark.parametrize("fixture", of_kind(STREAM_KINDS), ids=ids(of_kind(STREAM_KINDS)))
def test_decodes_each_version_s_stream(fixture):
    """Every event decodes without error; the recorder's counts are the hand counts, or it says
    that they were not read (usage only at the end) rather than calling the last chunk one step."""
    adapter = get_adapter(fixture.engine)
    chat = fixture.path.endswith("/chat/completions")
    decode = adapter.decode_chat if chat else adapter.decode
    assert all(decode(data).error is None for data in stream_events(fixture))
    record = recorded_stream(fixture)
    want = expected(fixture)
    assert record.error is None
    assert (record.output_tokens, list(record.chunk_tokens), record.uncounted_chunks) == \
           (want["output_tokens"], want["chunk_tokens"], want["uncounted_chunks"])


@pytest.mark.parametrize("fixture", of_kind(BODY_KINDS), ids=ids(of_kind(BODY_KINDS)))
def test_reads_each_version_s_whole_responses(fixture):
    obj = orjson.loads(fixture.file.read_bytes())
    want = expected(fixture)
    if fixture.kind == "models":
        assert detect_engine(obj) == want["engine"] == fixture.engine
    elif fixture.kind == "completion":
        fields = decode_openai_object(obj)
        assert (fields.completion_tokens, fields.finish_reason) == (want["completion_tokens"], want["finish_reason"])
    else:
        assert sorted(obj) == want["keys"]


# -- a renamed figure is never read as zero -------------------------------------------------------

#: every body loadgen reads a figure from: the real outputs above, and the contract fixtures of the
#: shapes no public real output shows yet (SGLang's gauges and server info with speculation on, its
#: verify-call counters after 0.5.9, TensorRT-LLM's iteration stats and Prometheus counters):
#: (engine, path, body)
CONTRACT = Path(__file__).parent / "fixtures"
READ_BODIES = [(f.engine, f.path, endpoint_body(f)) for f in of_kind(ENDPOINT_KINDS) if expected(f).get("read")] + [
    (engine, path, (CONTRACT / engine / name).read_text())
    for engine in ("sglang", "trtllm") for path, names in json.loads((CONTRACT / engine / "expected.json").read_text())[
        "scrapes"].items() for name in names[:1]] + [
    ("sglang", "/metrics", (CONTRACT / "sglang" / "metrics-counters-1.txt").read_text())]


def renamed(read: tuple[str, ...], body: str) -> str:
    """The body with every speculative name loadgen read given a "_v2", as a release that renamed
    them would send it (a counter's family too: its _total sample stays a counter's)."""
    for name in read:
        leaf = name.rsplit(".", 1)[-1].removesuffix("_total")
        body = re.sub(rf"(?<![\w:]){re.escape(leaf)}(?![A-Za-z0-9])", f"{leaf}_v2", body)
    return body


@pytest.mark.parametrize(("engine", "path", "body"), READ_BODIES, ids=[f"{e}{p}-{i}" for i, (e, p, _) in
                                                                        enumerate(READ_BODIES)])
def test_a_renamed_figure_is_not_read_never_zero(engine, path, body, monkeypatch):
    """The probe's reading says "not read" and names the new names; the run's collectors give no
    acceptance length (None, never 0 or 1) and say why, in the report's reading field."""
    monkeypatch.setattr(server_metrics, "SETTLE_READS", 0)
    adapter = get_adapter(engine)
    read = adapter.speculative_reading(path, body).read
    assert read, "the body as it is gives a figure"
    body = renamed(read, body)
    reading = adapter.speculative_reading(path, body)
    assert reading.acceptance == "not read"
    assert any("_v2" in n for n in reading.not_read) and not set(read) & set(reading.not_read)

    async def get(asked: str) -> tuple[int, bytes]:
        return (200, body.encode()) if asked == path else (404, b"")

    async def collect(collector):
        await collector.begin(get)
        await collector.poll(get, 1.0)
        return await collector.end(get)

    results = [asyncio.run(collect(c)) for c in adapter.collectors()]
    assert all(r is None or r.acceptance_length is None for r in results)
    assert any(r is not None and r.reading == "not read" and set(reading.not_read) <= set(r.not_read)
               for r in results)
    finding = asyncio.run(adapter.speculative_metrics(get))
    assert finding.affects_figures and "not read" in finding.consequence


# -- the README's table --------------------------------------------------------------------------

def test_the_readme_compatibility_table_is_the_fixtures():
    """Every cell of the README's engine x version table is what loadgen reads of a real output."""
    text = README.read_text()
    start, end = text.index(TABLE_START), text.index(TABLE_END) + len(TABLE_END)
    assert text[start:end] == markdown_table(), "regenerate it: python -m tests.unit.engines.compatibility"
