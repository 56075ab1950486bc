"""Response handling under arbitrary bytes: the HTTP framing, SSE framing, chunk decoding and
recording of one exchange, fed garbage at arbitrary splits, fail only in the ways the client
reports (a malformed response) — no other exception, no hang, bounded memory."""

import asyncio

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadgen.engines import get_adapter
from loadgen.records import RequestRecord, StreamRecorder
from loadgen.transport import ExchangeError, HttpClient, SSEError, SSEParser
from loadgen.transport.client import _Exchange
from loadgen.transport.http1 import HttpProtocolError

from .test_client import SSE_HEAD, chunk, read_request, run, serve

_EVENT_BITS = st.sampled_from([
    b"data: ", b"data:", b"\n\n", b"\r\n", b"\n", b"[DONE]", b'{"choices": [{"text": "a"}]', b"}",
    b'"usage": {"completion_tokens": 7}', b"\xff\xfe", b"\xc3\x28", b"\x00", b": comment", b"event: x",
    b'{"error": {"message": "boom"}}', b"0\r\n\r\n", b"zz\r\n", b"-1\r\n",
])
_LOOP = asyncio.new_event_loop()  # futures need one; nothing runs on it
_BODIES = st.one_of(st.binary(max_size=3000), st.lists(_EVENT_BITS, max_size=80).map(b"".join))


def _splits(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_BODIES, chunked=st.booleans(), cuts=st.lists(st.integers(0, 10_000), max_size=10),
       engine=st.sampled_from(["vllm", "sglang", "trtllm", "llamacpp", "openai"]))
def test_garbage_responses_fail_only_as_malformed(body, chunked, cuts, engine):
    wire = SSE_HEAD + (b"".join(chunk(p) for p in _splits(body, cuts) if p) + b"0\r\n\r\n" if chunked else body)
    if not chunked:
        wire = wire.replace(b"Transfer-Encoding: chunked\r\n", b"Connection: close\r\n")
    recorder = StreamRecorder(RequestRecord(0, "c", 0, 1, 8, 0), get_adapter(engine))
    exchange = _Exchange(asyncio.Future(loop=_LOOP), recorder.on_event, head_only=False)
    try:
        for t, piece in enumerate(_splits(wire, cuts)):
            exchange.data(t, piece)
        if not chunked:
            exchange.parser.eof()
    except (HttpProtocolError, SSEError):
        pass  # the client reports these as a malformed response
    record = recorder.finish(None)
    assert all(n > 0 for n in record.chunk_tokens) and len(record.chunk_ns) == len(record.chunk_tokens)
    assert record.error is None or record.error.kind in ("malformed", "stream_error")
    orjson.dumps(record.to_json())  # whatever came in, the record can be journaled


def test_a_line_without_end_is_cut_off_at_the_limit_not_held():
    parser = SSEParser(max_line_bytes=1 << 20)
    piece = b"data: " + b"x" * 65536
    try:
        for _ in range(40):  # 2.6 MB, no newline
            parser.feed(piece)
        raise AssertionError("no SSEError")
    except SSEError as exc:
        assert "longer than" in str(exc)
    assert parser.feed(b"data: ok\n\n") == [b"ok"]  # the parser was reset, not left holding megabytes


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_BODIES, cuts=st.lists(st.integers(0, 10_000), max_size=5))
def test_garbage_over_loopback_ends_in_an_exchange_error_or_a_stream(body, cuts):
    async def script(reader, writer):
        await read_request(reader)
        writer.write(SSE_HEAD)
        for piece in _splits(body, cuts):
            writer.write(chunk(piece) if piece else b"")
            await writer.drain()
        writer.close()

    async def main():
        server, url = await serve(script)
        client = HttpClient(url, api_key=None, timeout_s=3, idle_timeout_s=2)
        events: list[bytes] = []
        try:
            await client.stream("/v1/completions", b"{}", lambda t, d: events.append(d), lambda t: None)
        except ExchangeError as exc:
            assert exc.kind in ("malformed", "disconnect", "timeout", "http_status")
        finally:
            await client.close()
            server.close()
        return events

    assert all(isinstance(e, bytes) for e in run(main()))
