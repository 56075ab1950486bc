"""What loadgen reads of each real engine output in tests/unit/engines/real/, and the README's
compatibility table built from it (engine x version -> acceptance reading, token counts).

Every fixture there is bytes an engine produced, found in public threads, pull requests, docs or
committed result files (or recorded here, for the engines that run on CPU), listed in its engine's
provenance.json with version and source. Each is read exactly as a run reads it: Prometheus text
and JSON bodies through the adapter's speculative_reading, streams through the StreamRecorder.

    python -m tests.unit.engines.compatibility     # prints the table for the README
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from loadgen.engines import get_adapter
from loadgen.engines.server_metrics import SpecReading
from loadgen.records import RequestRecord, StreamRecorder

REAL = Path(__file__).parent / "real"
REPOSITORY = Path(__file__).resolve().parents[3]
#: the engines with real outputs, in the table's order, and their names as users know them
ENGINE_TITLES = {"vllm": "vLLM", "sglang": "SGLang", "trtllm": "TensorRT-LLM"}
#: provenance kinds read as an endpoint body (the engine's own metrics and server info)
ENDPOINT_KINDS = {"metrics", "prometheus", "server_info", "iteration_stats"}
STREAM_KINDS = {"stream"}
#: whole responses, checked but not in the table: completions decoded as one chunk, /v1/models for
#: --engine auto, /version for the probe
BODY_KINDS = {"completion", "chat_completion", "models", "version"}
TABLE_START = "<!-- compatibility table: python -m tests.unit.engines.compatibility -->"
TABLE_END = "<!-- end of the compatibility table -->"


@dataclass(frozen=True)
class Fixture:
    engine: str
    file: Path
    entry: dict  # its provenance entry

    @property
    def name(self) -> str:
        return self.entry["file"]

    @property
    def version(self) -> str:
        return self.entry["version"]

    @property
    def kind(self) -> str:
        return self.entry["kind"]

    @property
    def path(self) -> str:
        """The path of the endpoint it came from ("GET /metrics" -> "/metrics")."""
        return next(word for word in self.entry["endpoint"].split() if word.startswith("/"))


def fixtures(engine: str | None = None) -> list[Fixture]:
    """Every provenance entry of ENGINE (or of all engines), in the provenance file's order."""
    found = []
    for name in ENGINE_TITLES if engine is None else (engine,):
        folder = REAL / name
        for entry in json.loads((folder / "provenance.json").read_text()):
            found.append(Fixture(name, (folder / entry["file"]).resolve(), entry))
    return found


def endpoint_body(fixture: Fixture) -> str:
    """The body as the endpoint sends it; an iteration-stats fixture that kept one element of the
    list (the thread pasted one) is read as a list of that element."""
    text = fixture.file.read_text()
    if fixture.kind == "iteration_stats" and text.lstrip().startswith("{"):
        return f"[{text}]"
    return text


def endpoint_reading(fixture: Fixture) -> SpecReading:
    return get_adapter(fixture.engine).speculative_reading(fixture.path, endpoint_body(fixture))


def stream_events(fixture: Fixture) -> list[bytes]:
    """The `data:` payloads of a recorded stream, up to [DONE] (a capture cut short has none); a
    capture that kept only the payloads, one per line (a gateway's test data), is read the same."""
    events = []
    for line in fixture.file.read_bytes().splitlines():
        payload = line[len(b"data:"):].strip() if line.startswith(b"data:") else line.strip()
        if payload == b"[DONE]":
            break
        if payload.startswith(b"{"):
            events.append(payload)
    return events


def recorded_stream(fixture: Fixture) -> RequestRecord:
    """The stream through the recorder a run uses (chunks 1 ms apart)."""
    chat = fixture.path.endswith("/chat/completions")
    recorder = StreamRecorder(RequestRecord(0, "real", 0, 1, 1 << 20, 0), get_adapter(fixture.engine), chat=chat)
    for i, data in enumerate(stream_events(fixture), start=1):
        recorder.on_event(i * 1_000_000, data)
    return recorder.finish(None)


def token_counts(fixture: Fixture) -> str:
    """What the recorder reads of a stream's token counts, in the table's words, with what the
    request asked for (a stream without usage where none was asked says nothing of the version)."""
    record = recorded_stream(fixture)
    asked = fixture.entry["request"]
    if record.uncounted_chunks:
        counted = "usage only at the end" if record.output_tokens else "no usage"
        chunks = "1 chunk" if record.uncounted_chunks == 1 else f"{record.uncounted_chunks} chunks"
        read = f"not read: {chunks} without counts, {counted}"
    else:
        read = f"exact: usage on every chunk ({len(record.chunk_ns)} chunks)"
    return f"`{fixture.path}`: {read} (request: {asked})"


def acceptance_cell(fixture: Fixture) -> str:
    reading = endpoint_reading(fixture)
    cell = f"`{fixture.path}`: {reading.acceptance}"
    if reading.acceptance == "not read":
        cell += f" — {reading.shape}"
    elif reading.acceptance == "absent":
        cell += {False: " (speculation off in this output)", None: " (speculation unknown in this output)"}.get(
            fixture.entry["speculative"], "")
    if reading.read:
        cell += f": {', '.join(f'`{n}`' for n in reading.read)}"
    if reading.not_read:
        cell += f"; not read: {', '.join(f'`{n}`' for n in reading.not_read)}"
    return cell


def shown_name(fixture: Fixture) -> str:
    """The file as the table shows it: under real/<engine>/, or from the repository root (vLLM's
    captures, recorded by tests/vllm); "excerpt" where the thread kept part of the output."""
    folder = REAL / fixture.engine
    name = str(fixture.file.relative_to(folder) if fixture.file.is_relative_to(folder)
               else fixture.file.relative_to(REPOSITORY))
    return f"`{name}`" + ("" if fixture.entry["excerpt"].startswith("whole") else " (excerpt)")


def table_rows() -> list[tuple[str, str, str, str, str]]:
    """(engine, version, acceptance, token counts, fixtures) per engine version whose real outputs
    say something of either; each distinct cell once."""
    rows = []
    for engine, title in ENGINE_TITLES.items():
        versions: dict[str, list[Fixture]] = {}
        for fixture in fixtures(engine):
            versions.setdefault(fixture.version, []).append(fixture)
        for version, group in versions.items():
            acceptance = dict.fromkeys(acceptance_cell(f) for f in group if f.kind in ENDPOINT_KINDS)
            counts = dict.fromkeys(token_counts(f) for f in group if f.kind in STREAM_KINDS)
            if acceptance or counts:
                shown = [f for f in group if f.kind in ENDPOINT_KINDS | STREAM_KINDS]
                rows.append((title, version, "<br>".join(acceptance) or "—", "<br>".join(counts) or "—",
                             ", ".join(map(shown_name, shown))))
    return rows


def markdown_table() -> str:
    lines = [TABLE_START, "| engine | version | acceptance: what loadgen reads | token counts: what loadgen reads | "
                          "real outputs (`tests/unit/engines/real/<engine>/`) |",
             "|---|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in table_rows()]
    return "\n".join([*lines, TABLE_END])


if __name__ == "__main__":
    print(markdown_table())
