"""The contract every engine in the registry keeps, checked against recorded engine output.

Each engine has fixtures/<engine>/: stream.sse (a /v1/completions stream as the engine sends it),
the bodies of its metrics endpoints at successive scrapes (named in expected.json's "scrapes"), and
expected.json, whose figures were worked out by hand from those files (see its "_comment"), never
copied from loadgen's output. An engine without a fixture folder fails here: adding one to the
registry means recording what it sends.
"""

import asyncio
import json
import re
from pathlib import Path

import pytest

import loadgen
from loadgen.cli import cli
from loadgen.emulator.engine import Personality
from loadgen.emulator.server import PERSONALITIES
from loadgen.engines import (
    DEFAULT_PORTS,
    EMULATED_ENGINES,
    ENGINES,
    SERVABLE_ENGINES,
    detect_engine,
    get_adapter,
    server_metrics,
)
from loadgen.engines.launch import Recipe
from loadgen.records import RequestRecord, StreamRecorder
from loadgen.servers.recipe import ENGINE_NAMES

FIXTURES = Path(__file__).parent / "fixtures"
LOADGEN = Path(loadgen.__file__).parent
MS = 1_000_000


def expected(engine: str) -> dict:
    return json.loads((FIXTURES / engine / "expected.json").read_text())


def stream_events(engine: str) -> list[bytes]:
    """The `data:` payloads of the recorded stream, up to [DONE]."""
    events = []
    for event in (FIXTURES / engine / "stream.sse").read_bytes().split(b"\n\n"):
        if event.strip():
            assert event.startswith(b"data: "), event[:40]
            payload = event[len(b"data: "):]
            if payload == b"[DONE]":
                break
            events.append(payload)
    return events


@pytest.fixture(params=list(ENGINES))
def engine(request) -> str:
    return request.param


# -- the spec ----------------------------------------------------------------------------------

def test_spec_is_consistent_with_its_adapter(engine):
    spec = ENGINES[engine]
    assert spec.name == engine == spec.adapter.name == get_adapter(engine).name
    assert spec.adapter.token_counts in ("usage", "one_per_token", "one_per_chunk")
    for owner in spec.owned_by:
        assert owner == owner.lower() and detect_engine({"data": [{"id": "m", "owned_by": owner}]}) == engine
    assert (spec.launch is None) == (spec.default_port is None), "a launchable engine needs its default port"


def test_every_engine_has_recorded_fixtures(engine):
    assert {"stream.sse", "expected.json"} <= {p.name for p in (FIXTURES / engine).iterdir()}


# -- the request -------------------------------------------------------------------------------

def test_request_body(engine):
    """model, prompt token ids, max_tokens, stream, the usage options it needs, and ignore_eos
    sent as asked where the engine takes it, never to a server that may not (plain OpenAI)."""
    adapter = get_adapter(engine)
    want = expected(engine)["request_body"]
    body = adapter.request_body(model="m", prompt=[1, 2, 3], max_tokens=16, temperature=0.0, ignore_eos=True)
    assert body == want
    keep_eos = adapter.request_body(model="m", prompt=[1, 2, 3], max_tokens=16, temperature=0.0, ignore_eos=False)
    assert keep_eos == ({**want, "ignore_eos": False} if "ignore_eos" in want else want)
    if adapter.token_counts == "usage":  # exact per-chunk counts need usage on every chunk
        assert body["stream_options"]["continuous_usage_stats"] is True


# -- the stream --------------------------------------------------------------------------------

def test_decodes_recorded_chunks(engine):
    adapter = get_adapter(engine)
    decoded = [adapter.decode(data) for data in stream_events(engine)]
    want = expected(engine)["chunks"]
    assert len(decoded) == len(want)
    for fields, chunk in zip(decoded, want):
        assert fields.error is None
        assert (fields.completion_tokens, fields.tokens, fields.has_choice, fields.finish_reason) == \
               (chunk["completion_tokens"], chunk["tokens"], chunk["has_choice"], chunk["finish_reason"])
        assert (fields.draft_tokens, fields.accepted_tokens) == \
               (chunk.get("draft_tokens"), chunk.get("accepted_tokens"))


def test_decodes_an_error_event_and_rejects_what_is_no_chunk(engine):
    adapter = get_adapter(engine)
    assert adapter.decode(b'{"error": {"message": "boom", "code": 500}}').error == "boom"
    for data in (b"[1, 2]", b"{not json"):
        with pytest.raises(ValueError):
            adapter.decode(data)


def test_records_the_recorded_stream(engine):
    """Tokens per chunk (steps), as the recorder makes them from the decoded chunks and their arrival times."""
    want = expected(engine)["recorded"]
    events = stream_events(engine)
    recorder = StreamRecorder(RequestRecord(1, "c", 0, 3, 64, 0), get_adapter(engine))
    assert len(want["arrival_ms"]) == len(events)
    for t_ms, data in zip(want["arrival_ms"], events):
        recorder.on_event(round(t_ms * MS), data)
    record = recorder.finish(None)
    assert record.error is None
    assert list(record.chunk_tokens) == want["chunk_tokens"]
    assert list(record.chunk_ns) == [round(t * MS) for t in want["chunk_ms"]]
    assert record.output_tokens == want["output_tokens"]
    assert (record.server_draft_tokens, record.server_accepted_tokens) == \
           (want["server_draft_tokens"], want["server_accepted_tokens"])


# -- the server's metrics ----------------------------------------------------------------------

class RecordedServer:
    """GET path -> the recorded bodies in turn; the last one stays (a scrape after the run)."""

    def __init__(self, engine: str, scrapes: dict[str, list[str]]) -> None:
        self.bodies = {path: [(FIXTURES / engine / name).read_bytes() for name in names]
                       for path, names in scrapes.items()}

    async def get(self, path: str) -> tuple[int, bytes]:
        queue = self.bodies.get(path)
        if not queue:
            return 404, b"not found"
        return 200, queue.pop(0) if len(queue) > 1 else queue[0]


def test_collectors_read_recorded_metrics(engine, monkeypatch):
    """Each collector, in the adapter's order: a scrape before the window, one poll, one after (one
    read each: the settling of the window's reads is tested in test_adapters.py)."""
    monkeypatch.setattr(server_metrics, "SETTLE_READS", 0)
    want = expected(engine)

    async def collect(collector):
        server = RecordedServer(engine, want["scrapes"])  # each collector reads every scrape in turn
        await collector.begin(server.get)
        await collector.poll(server.get, 1.0)
        return await collector.end(server.get)

    results = [r for r in (asyncio.run(collect(c)) for c in get_adapter(engine).collectors()) if r is not None]
    assert len(results) == len(want["server"])  # a collector with nothing to say (None) is left out, as a run does
    for result, figures in zip(results, want["server"]):
        got = result.to_json()
        for key, value in figures.items():
            assert got[key] == (pytest.approx(value) if key != "time_series" else
                                [pytest.approx(point) for point in value]), key


# -- the launch --------------------------------------------------------------------------------

def test_launch_renders_a_minimal_recipe(engine, tmp_path):
    spec, want = ENGINES[engine], expected(engine)["launch"]
    if spec.launch is None:
        assert want is None
        return
    recipe = Recipe(name=f"{engine}/contract", engine=engine, engine_version="1", model="org/model")
    launch = spec.launch(recipe, host="127.0.0.1", port=spec.default_port, workdir=tmp_path)

    def here(text: str) -> str:
        return text.replace("WORKDIR", str(tmp_path))

    assert launch.argv == tuple(here(a) for a in want["argv"])
    assert launch.env == want["env"]
    assert {str(path): text for path, text in launch.files.items()} == \
           {here(path): text for path, text in want["files"].items()}


# -- the registry is the one list --------------------------------------------------------------

def _option(command: str, name: str):
    return next(p for p in cli.commands[command].params if p.name == name)


def _listed(help_text: str) -> list[str]:
    """The engine names a help line lists after "one of"."""
    return re.findall(r"[a-z]+", help_text.split("one of", 1)[1])


def test_cli_engine_choices_come_from_the_registry():
    assert tuple(_option("serve", "engine").type.choices) == SERVABLE_ENGINES
    run_engine = _option("run", "engine")
    assert run_engine.default == "auto" and _listed(run_engine.help) == list(ENGINES)
    assert run_engine.help.startswith("auto")
    assert _listed(_option("emulate", "engine").help) == list(EMULATED_ENGINES)


def test_derived_tables():
    assert ENGINE_NAMES == SERVABLE_ENGINES == tuple(n for n, s in ENGINES.items() if s.launch is not None)
    assert DEFAULT_PORTS == {n: ENGINES[n].default_port for n in SERVABLE_ENGINES}
    assert EMULATED_ENGINES == tuple(n for n, s in ENGINES.items() if s.personality is not None)
    assert list(PERSONALITIES) == list(EMULATED_ENGINES)
    for name, personality in PERSONALITIES.items():
        module, _, cls = ENGINES[name].personality.partition(":")
        assert issubclass(personality, Personality) and (personality.__module__, personality.__name__) == (module, cls)


def _sources(folder: Path, *, skip: tuple[str, ...] = ()):
    for path in sorted(folder.rglob("*.py")):
        if not any(part in skip for part in path.relative_to(folder).parts):
            yield path, path.read_text()


ENGINE_WORD = "|".join(map(re.escape, ENGINES))


def test_no_engine_is_named_in_shared_code():
    """Outside engines/ (and the emulator's personalities), no comparison with an engine's name and
    no hand-kept list of engines: such code asks the engine's EngineSpec instead."""
    comparison = re.compile(rf"""(==|!=|\bin)\s*\(?\s*["']({ENGINE_WORD})["']""")
    listing = re.compile(rf"""["']({ENGINE_WORD})["']\s*(:[^,\n]+)?,\s*["']({ENGINE_WORD})["']""")
    for path, text in _sources(LOADGEN, skip=("engines", "emulator")):
        for pattern in (comparison, listing):
            match = pattern.search(text)
            assert match is None, f"{path.relative_to(LOADGEN)}: {match.group(0)!r}"
