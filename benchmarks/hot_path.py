"""CPU per chunk on the client's read path: HTTP framing + SSE framing + chunk decode + record;
and the live metrics' update per finished request, beside it.

Feeds a recorded-shape response (one vLLM chunk per read, as at 20 ms steps; then 16 chunks per
read, as when a client falls behind) through the same objects a live stream goes through, and
prints nanoseconds per chunk, split into stages, so each change to the hot path can be measured.
The live Prometheus metrics are updated once per finished request (not per chunk): their cost
is printed per request of 128 chunks and as a share of that request's read-path cost.

    python benchmarks/hot_path.py [--chunks 200000]

Then the same for a /v1/chat/completions stream (vLLM's chat chunks, counted by its usage), and
for a chat stream whose counts are estimated (the plain OpenAI adapter: the read path keeps each
delta's text; each reply is tokenized once when it ends).
"""

from __future__ import annotations

import argparse
import time

import orjson

from loadgen.engines import get_adapter
from loadgen.records import RequestRecord, StreamRecorder
from loadgen.transport.http1 import ResponseParser
from loadgen.transport.sse import SSEParser

HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
        b"connection: keep-alive\r\n\r\n")


def vllm_chunk(i: int, output_ids: bool = False) -> bytes:
    """One event as vLLM sends it with continuous usage stats (ENGINES.md); output_ids: with
    return_token_ids (--output-ids), the chunk's id in token_ids."""
    choice = {"index": 0, "text": " word", "logprobs": None, "finish_reason": None, "stop_reason": None}
    if output_ids:
        choice["token_ids"] = [100000 + i % 28000]
    return orjson.dumps({"id": "cmpl-5d1c0a0e4f2b4c3a9b8d7e6f5a4b3c2d", "object": "text_completion",
                         "created": 1732000000, "model": "meta-llama/Llama-3.1-8B-Instruct", "choices": [choice],
                         "usage": {"prompt_tokens": 1024, "total_tokens": 1025 + i, "completion_tokens": i + 1}})


def vllm_chat_chunk(i: int) -> bytes:
    """One /v1/chat/completions event as vLLM 0.32 sends it with continuous usage stats (tests/vllm/captures)."""
    return orjson.dumps({"id": "chatcmpl-8d5ccd0a843dc047", "object": "chat.completion.chunk", "created": 1732000000,
                         "model": "meta-llama/Llama-3.1-8B-Instruct",
                         "choices": [{"index": 0, "delta": {"content": " word"}, "logprobs": None,
                                      "finish_reason": None}],
                         "usage": {"prompt_tokens": 1024, "total_tokens": 1025 + i, "completion_tokens": i + 1,
                                   "completion_tokens_details": None}})


def http_chunk(payload: bytes) -> bytes:
    event = b"data: " + payload + b"\n\n"
    return f"{len(event):x}\r\n".encode() + event + b"\r\n"


def measure(reads: list[bytes], chunks: int, stage: str, *, chat: bool = False) -> float:
    """ns per chunk of the read path up to `stage`; chat: the stream is vLLM's chat (decode_chat)."""
    adapter = get_adapter("vllm")
    parser = ResponseParser(False)
    parser.feed(HEAD)
    sse = SSEParser()
    recorder = StreamRecorder(RequestRecord(0, "c", 0, 1024, chunks, 0), adapter, chat=chat)
    on_event = recorder.on_event
    decode = adapter.decode_chat if chat else adapter.decode
    started = time.perf_counter_ns()
    for t, data in enumerate(reads):
        for piece in parser.feed(data):
            for event in sse.feed(piece):
                if stage == "record":
                    on_event(t, event)
                elif stage == "decode":
                    decode(event)
    return (time.perf_counter_ns() - started) / chunks


def measure_estimated(reads: list[bytes], chunks: int, per_request: int = 512) -> tuple[float, float]:
    """A chat stream whose counts are estimated (the plain OpenAI adapter): ns per chunk on the read
    path (decode, keep the text), and of tokenizing each reply at its end (requests of
    `per_request` chunks), the cost that moved off the read path."""
    from loadgen.records import EstimatedChatRecorder
    from loadgen.workloads import load_tokenizer

    estimate = load_tokenizer(None).tokens_ending_in
    adapter = get_adapter("openai")
    parser = ResponseParser(False)
    parser.feed(HEAD)
    sse = SSEParser()
    recorders = [EstimatedChatRecorder(RequestRecord(i, "c", 0, 1024, per_request, 0), adapter, estimate)
                 for i in range(-(-chunks // per_request))]
    seen = 0
    started = time.perf_counter_ns()
    for t, data in enumerate(reads):
        for piece in parser.feed(data):
            for event in sse.feed(piece):
                recorders[seen // per_request].on_event(t, event)
                seen += 1
    read = time.perf_counter_ns()
    for recorder in recorders:
        recorder.finish(None)
    return (read - started) / chunks, (time.perf_counter_ns() - read) / chunks


def stage_table(title: str, events: list[bytes], *, chat: bool) -> float:
    """The table of ns per chunk by stage, at 1 and 16 chunks per read; returns the whole read
    path's cost at one chunk per read."""
    kind = "chat chunks" if chat else "chunks"
    print(f"{title}ns per chunk ({len(events)} vLLM {kind} of {len(events[0])} bytes), best of 5")
    print("| chunks per read | framing (HTTP+SSE) | + decode | + record (all) |")
    print("|---|---|---|---|")
    whole = 0.0
    for per_read in (1, 16):
        reads = [b"".join(events[i:i + per_read]) for i in range(0, len(events), per_read)]
        row = [min(measure(reads, len(events), stage, chat=chat) for _ in range(5))
               for stage in ("framing", "decode", "record")]
        print(f"| {per_read} | {row[0]:.0f} | {row[1]:.0f} | {row[2]:.0f} |")
        whole = whole or row[2]
    return whole


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=200_000)
    args = parser.parse_args()
    per_chunk = stage_table("", [http_chunk(vllm_chunk(i)) for i in range(args.chunks)], chat=False)
    with_ids = [http_chunk(vllm_chunk(i, output_ids=True)) for i in range(args.chunks)]
    ids_cost = min(measure(with_ids, args.chunks, "record") for _ in range(5))
    print(f"\n--output-ids (vLLM token_ids on every chunk, kept in the record), one chunk per read: {ids_cost:.0f} ns "
          "per chunk")
    chat_events = [http_chunk(vllm_chat_chunk(i)) for i in range(args.chunks)]
    stage_table("\nchat: ", chat_events, chat=True)
    read, tokenize = min(measure_estimated(chat_events, args.chunks) for _ in range(3))
    print(f"\nestimated chat counts (plain OpenAI adapter), one chunk per read: {read:.0f} ns per chunk on the read "
          f"path; tokenizing each reply of 512 chunks at its end {tokenize:.0f} ns per chunk, off the read path")
    queue, fold = min(measure_metrics(128) for _ in range(5))
    print(f"\nlive metrics, per finished request of 128 chunks: {queue:.0f} ns on the read loop (queued), "
          f"{fold / 1e3:.1f} us folded in at the next scrape on the metrics thread; together "
          f"{(queue + fold) / (128 * per_chunk):.1%} of the request's read-path cost (128 x {per_chunk:.0f} ns)")


def measure_metrics(chunks: int, requests: int = 2000) -> tuple[float, float]:
    """ns per finished request of `chunks` chunks: LiveMetrics.observe (the read loop's share) and
    the fold into the histograms at a scrape."""
    from array import array

    from loadgen.sinks.live import LiveMetrics

    metrics = LiveMetrics(run_id="r", engine="vllm", model="m", workload="w", target_concurrency=1,
                          in_flight=lambda: 0, version="0")
    records = []
    for i in range(requests):
        record = RequestRecord(i, f"c{i % 11}", 0, 1024, chunks, 0)
        record.first_ns, record.last_ns = 50_000_000, 50_000_000 + (chunks - 1) * 20_000_000
        record.chunk_ns = array("q", range(record.first_ns, record.last_ns + 1, 20_000_000))
        record.chunk_tokens = array("i", [1] * chunks)
        record.output_tokens = chunks
        records.append(record)
    started = time.perf_counter_ns()
    for record in records:
        metrics.observe(record)
    queued = time.perf_counter_ns()
    families = list(metrics.collect())  # a scrape: folds the queue
    folded = time.perf_counter_ns()
    assert any(f.name == "loadgen_inter_chunk_seconds" and f.samples for f in families)
    return (queued - started) / requests, (folded - queued) / requests


if __name__ == "__main__":
    main()
