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


def redirect(status_line: bytes, location: bytes):
    """A server script that answers every request with a redirect to `location`."""

    async def script(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 %b\r\nLocation: %b\r\nContent-Length: 0\r\n\r\n" % (status_line, location))
        await writer.drain()

    return script


@pytest.mark.parametrize(("location", "where"), [
    (b"https://gateway.example:8443/v1/completions", "https://gateway.example:8443/v1/completions: use "
                                                     "https://gateway.example:8443 as --url"),
    (b"/api/v1/completions", "/api/v1/completions: use http://127.0.0.1:"),  # relative: resolved on --url
    (b"https://login.example/sso", "https://login.example/sso: use the server it points to as --url"),
])
def test_a_redirected_stream_is_one_http_status_error_naming_where_it_points(location, where):
    error, _ = stream_error(redirect(b"307 Temporary Redirect", location))
    assert error.kind == "http_status" and error.status == 307
    assert str(error).startswith("the server redirected POST /v1/completions (HTTP 307) to ")
    assert where.split(": use ")[0] in str(error) and where.split(": use ")[1] in str(error), str(error)


def test_a_redirected_get_raises_instead_of_returning_the_redirect():
    async def main():
        server, url = await serve(redirect(b"301 Moved Permanently", b"https://new.example/v1/models"))
        client = HttpClient(url, api_key=None, timeout_s=5, proxy="")
        with pytest.raises(TransportError) as info:
            await client.get("/v1/models")
        await client.close()
        server.close()
        return info.value

    error = run(main())
    assert error.kind == "http_status" and error.status == 301
    assert "redirected GET /v1/models (HTTP 301) to https://new.example/v1/models: use https://new.example as --url" \
        in str(error)


def recording_proxy(requests: list[bytes], answer: bytes):
    """A server script standing in for a proxy: keeps each request's head, answers `answer`."""

    async def script(reader, writer):
        requests.append(await read_request(reader))
        writer.write(answer)
        await writer.drain()
        writer.close()

    return script


def test_through_a_proxy_http_requests_go_in_absolute_form_with_the_proxy_credentials():
    requests: list[bytes] = []
    body = b'{"data": []}'

    async def main():
        proxy, proxy_url = await serve(recording_proxy(
            requests, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%b" % (len(body), body)))
        client = HttpClient("http://gpu-host:8000/base", api_key="sk-1", timeout_s=5,
                            proxy=proxy_url.replace("http://", "http://us%40er:p%3Ass@"))
        assert (await client.get("/v1/models")) == (200, body)
        await client.close()
        proxy.close()

    run(main())
    head = requests[0].decode()
    assert head.startswith("GET http://gpu-host:8000/base/v1/models HTTP/1.1\r\n")
    assert "Host: gpu-host:8000\r\n" in head and "Authorization: Bearer sk-1\r\n" in head
    assert "Proxy-Authorization: Basic dXNAZXI6cDpzcw==\r\n" in head  # base64 of us@er:p:ss


@pytest.mark.parametrize(("answer", "message"), [
    (b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n",
     "(from --proxy) needs credentials: put them in the proxy URL"),
    (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
     "(from --proxy) refused CONNECT gpu-host:8443: HTTP 403; it may not allow tunnels to port 8443"),
    (b"", "(from --proxy) closed the connection on CONNECT gpu-host:8443"),
])
def test_a_refused_connect_tunnel_is_a_connect_error_naming_the_proxy(answer, message):
    requests: list[bytes] = []

    async def main():
        proxy, proxy_url = await serve(recording_proxy(requests, answer))
        client = HttpClient("https://gpu-host:8443", api_key=None, timeout_s=5, proxy=proxy_url)
        with pytest.raises(TransportError) as info:
            await client.get("/v1/models")
        await client.close()
        proxy.close()
        return info.value, proxy_url

    error, proxy_url = run(main())
    assert requests[0].startswith(b"CONNECT gpu-host:8443 HTTP/1.1\r\nHost: gpu-host:8443\r\n")
    assert error.kind == "connect" and str(error).startswith(f"proxy {proxy_url} {message}"), str(error)


def test_an_unreachable_proxy_is_named_without_its_credentials():
    async def main():
        server, url = await serve(answers(b"200 OK", b"{}"))
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()  # nothing listens there now
        client = HttpClient("http://gpu-host:8000", api_key=None, timeout_s=5,
                            proxy=f"http://user:hunter2@127.0.0.1:{port}")
        with pytest.raises(TransportError) as info:
            await client.get("/v1/models")
        await client.close()
        return info.value, port

    error, port = run(main())
    assert error.kind == "connect"
    assert str(error).startswith(f"cannot connect to proxy http://127.0.0.1:{port} (from --proxy): ")
    assert "hunter2" not in str(error) and "user" not in str(error)
