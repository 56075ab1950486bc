import pytest

from loadgen.transport.http1 import HttpProtocolError, ResponseParser

CHUNKED = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"f\r\ndata: {\"a\":1}\n\n\r\n"
           b"1d\r\ndata: {\"a\":2}\n\ndata: [DONE]\n\n\r\n"
           b"0\r\n\r\n")
CHUNKED_BODY = b'data: {"a":1}\n\ndata: {"a":2}\n\ndata: [DONE]\n\n'
LENGTH = b"HTTP/1.1 404 Not Found\r\nContent-Length: 11\r\nConnection: keep-alive\r\n\r\nhello world"
CLOSE = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"
TRAILER = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n")


def feed_split(raw: bytes, cuts: list[int]) -> tuple[ResponseParser, bytes]:
    parser = ResponseParser()
    body = b""
    prev = 0
    for cut in [*cuts, len(raw)]:
        body += b"".join(parser.feed(raw[prev:cut]))
        prev = cut
    return parser, body


@pytest.mark.parametrize("raw, body, status, keep_alive", [
    (CHUNKED, CHUNKED_BODY, 200, True),
    (LENGTH, b"hello world", 404, True),
    (TRAILER, b"abc", 200, True),
])
def test_every_single_split(raw, body, status, keep_alive):
    for cut in range(len(raw) + 1):
        parser, got = feed_split(raw, [cut])
        assert got == body, cut
        assert parser.complete and parser.status == status and parser.keep_alive is keep_alive


def test_every_pair_of_splits_chunked():
    n = len(CHUNKED)
    for i in range(n + 1):
        for j in range(i, n + 1):
            parser, got = feed_split(CHUNKED, [i, j])
            assert got == CHUNKED_BODY and parser.complete


def test_byte_by_byte_delivers_body_as_it_arrives():
    parser = ResponseParser()
    seen = b""
    for k in range(len(CHUNKED)):
        seen += b"".join(parser.feed(CHUNKED[k:k + 1]))
        if k == CHUNKED.index(b"\n\n\r\n") + 1:
            assert seen == b'data: {"a":1}\n\n'  # the first event is out before the rest arrives
    assert seen == CHUNKED_BODY


def test_close_delimited_body_ends_at_eof():
    parser, body = feed_split(CLOSE, [20])
    assert body == b"until the end" and not parser.complete and not parser.keep_alive
    parser.eof()
    assert parser.complete


def test_cut_body_raises_at_eof():
    parser, _ = feed_split(CHUNKED[:-10], [])
    with pytest.raises(HttpProtocolError):
        parser.eof()


def test_interim_100_continue_is_skipped():
    parser, body = feed_split(b"HTTP/1.1 100 Continue\r\n\r\n" + LENGTH, [5, 30])
    assert parser.status == 404 and body == b"hello world"


@pytest.mark.parametrize("raw", [b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 abc OK\r\n\r\n",
                                 b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                                 b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY"])
def test_garbage_raises_protocol_error(raw):
    parser = ResponseParser()
    with pytest.raises(HttpProtocolError):
        parser.feed(raw)  # body pieces before the fault come out first; the fault raises on the next feed
        parser.feed(b"")
    assert parser.failure is not None


def test_head_size_is_bounded():
    with pytest.raises(HttpProtocolError):
        ResponseParser().feed(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20000)
