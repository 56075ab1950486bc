"""The HTTP client against small loopback servers that misbehave in one way each."""

import asyncio

import pytest

from loadgen.transport import ExchangeError, HttpClient, TransportError

SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunk(payload: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(payload), payload)


async def serve(script):
    """Start a server whose connection handler is `script(reader, writer)`; returns (server, url)."""
    server = await asyncio.start_server(script, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def stream_error(script, timeout_s: float = 5, api_key: str | None = None,
                 **timeouts) -> tuple[ExchangeError, list[bytes]]:
    """Stream one request from a server running `script`; return the error it must end in."""

    async def main():
        server, url = await serve(script)
        client = HttpClient(url, api_key=api_key, timeout_s=timeout_s, **timeouts)
        events: list[bytes] = []
        with pytest.raises(ExchangeError) as info:
            await client.stream("/v1/completions", b"{}", lambda t, d: events.append(d), lambda t: None)
        await client.close()
        server.close()
        return info.value, events

    return run(main())


def test_stream_events_with_a_timestamp_per_read_and_keep_alive_reuse():
    connections = 0

    async def script(reader, writer):
        nonlocal connections
        connections += 1
        while True:
            try:
                request = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            assert b"Authorization: Bearer sk-test" in request and request.endswith(b'{"x":1}')
            writer.write(SSE_HEAD + chunk(b'data: {"n":1}\n\ndata: {"n":2}\n\n'))
            await writer.drain()
            await asyncio.sleep(0.02)
            writer.write(chunk(b'data: {"n":3}\n\ndata: [DONE]\n\n') + b"0\r\n\r\n")
            await writer.drain()

    async def main():
        server, url = await serve(script)
        client = HttpClient(url, api_key="sk-test", timeout_s=5)
        for _ in range(3):
            events, sent = [], []
            await client.stream("/v1/completions", b'{"x":1}', lambda t, d, events=events: events.append((t, d)),
                                sent.append)
            assert [d for _, d in events] == [b'{"n":1}', b'{"n":2}', b'{"n":3}']
            assert events[0][0] == events[1][0] < events[2][0]  # one stamp per network read
            assert events[2][0] - events[0][0] >= 15_000_000 and sent[0] <= events[0][0]
        await client.close()
        server.close()

    run(main())
    assert connections == 1


@pytest.mark.parametrize("script_tail, kind", [
    (b"", "disconnect"),                                            # cut mid-stream
    (chunk(b'data: {"n":2}\n\n') + b"0\r\n\r\n", "disconnect"),     # ended without [DONE]
    (b"zz\r\n", "malformed"),                                        # broken chunked framing
])
def test_failures_mid_stream(script_tail, kind):
    async def script(reader, writer):
        await read_request(reader)
        writer.write(SSE_HEAD + chunk(b'data: {"n":1}\n\n') + script_tail)
        await writer.drain()
        writer.close()

    error, events = stream_error(script)
    assert error.kind == kind and events[:1] == [b'{"n":1}']


def test_stall_times_out():
    async def script(reader, writer):
        await read_request(reader)
        writer.write(SSE_HEAD)
        await asyncio.sleep(5)

    assert stream_error(script, timeout_s=0.3)[0].kind == "timeout"


def answers(status_line: bytes, body: bytes):
    """A server script that answers every request with this status line and JSON body."""

    async def script(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 %b\r\nContent-Length: %d\r\n\r\n%b" % (status_line, len(body), body))
        await writer.drain()

    return script


def test_http_error_status_carries_the_server_message():
    body = b'{"error": {"message": "max_tokens is too large", "code": 400}}'
    error, _ = stream_error(answers(b"400 Bad Request", body))
    assert error.kind == "http_status" and error.status == 400 and "max_tokens is too large" in str(error)


def test_non_sse_success_is_malformed():
    async def script(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()

    assert stream_error(script)[0].kind == "malformed"


def test_idle_connection_closed_by_server_is_retried_once_on_a_new_one():
    served = 0

    async def script(reader, writer):
        nonlocal served
        await read_request(reader)
        served += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # without saying Connection: close, as a keep-alive timeout does

    async def main():
        server, url = await serve(script)
        client = HttpClient(url, api_key=None, timeout_s=5)
        assert await client.get("/a") == (200, b"ok")
        await asyncio.sleep(0.05)
        assert await client.get("/b") == (200, b"ok")
        await client.close()
        server.close()

    run(main())
    assert served == 2


def test_connection_refused_is_a_connect_error():
    async def main():
        server, url = await serve(lambda r, w: None)
        server.close()
        await server.wait_closed()
        client = HttpClient(url, api_key=None, timeout_s=5)
        with pytest.raises(TransportError) as info:
            await client.get("/v1/models")
        return info.value

    assert run(main()).kind == "connect"


def test_server_that_closes_after_each_stream_despite_keep_alive():
    """Regression: llama-server announces keep-alive but closes after a streamed response; the
    client used to fail the next request on that connection (and its one retry on another stale
    one). Now it retries on a fresh connection and stops reusing connections after streams."""
    connections = 0

    async def script(reader, writer):
        nonlocal connections
        connections += 1
        await read_request(reader)
        writer.write(SSE_HEAD + chunk(b'data: {"n":1}\n\ndata: [DONE]\n\n') + b"0\r\n\r\n")
        await writer.drain()
        await reader.read(1)  # the client sent its next request on this connection: drop it unanswered
        writer.close()

    async def main():
        server, url = await serve(script)
        client = HttpClient(url, api_key=None, timeout_s=5)
        await client.open_connections(2, "/x")  # two idle kept-alive connections (GETs are not streams)
        for _ in range(4):
            await client.stream("/v1/completions", b"{}", lambda t, d: None, lambda t: None)
        await client.close()
        server.close()

    run(main())
    assert connections >= 5


def test_first_token_and_idle_timeouts_name_their_phase():
    async def silent(reader, writer):  # takes the request, answers nothing
        await read_request(reader)
        await asyncio.sleep(10)

    async def one_event_then_silence(reader, writer):
        await read_request(reader)
        writer.write(SSE_HEAD + chunk(b'data: {"choices": [{"text": "a"}]}\n\n'))
        await writer.drain()
        await asyncio.sleep(10)

    error, _ = stream_error(silent, first_token_timeout_s=0.3, idle_timeout_s=5)
    assert (error.kind, error.phase) == ("timeout", "first_token") and "no first token within 0.3 s" in str(error)
    error, events = stream_error(one_event_then_silence, first_token_timeout_s=5, idle_timeout_s=0.3)
    assert (error.kind, error.phase) == ("timeout", "idle") and len(events) == 1
    error, _ = stream_error(one_event_then_silence, timeout_s=0.4)
    assert (error.kind, error.phase) == ("timeout", "total")


def test_an_echoed_api_key_never_reaches_the_error_message():
    refuse = answers(b"401 Unauthorized", b'{"error": {"message": "invalid key sk-secret-9"}}')
    error, _ = stream_error(refuse, api_key="sk-secret-9")
    assert error.status == 401 and "sk-secret-9" not in str(error) and "invalid key ***" in str(error)
