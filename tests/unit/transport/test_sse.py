"""SSEParser: WHATWG framing on every way a stream can be cut into network reads."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadgen.transport.sse import SSEError, SSEParser


def reference(stream: bytes) -> tuple[list[bytes], list[bytes]]:
    """A literal, slow reading of the spec: (payloads dispatched in the stream, payloads close() adds).

    Written independently of SSEParser (regex line split, generic `name:value` field parsing) so
    the two can check each other.
    """
    *lines, rest = re.split(rb"\r\n|\r|\n", stream)
    events: list[bytes] = []
    data: list[bytes] | None = None
    for line in lines + ([rest] if rest else []) + [b""]:
        if line == b"":
            if data is not None:
                events.append(b"\n".join(data))
            data = None
            continue
        name, colon, value = line.partition(b":")
        if not name and colon:
            continue  # comment
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data = (data or []) + [value]
    # Events before the end of the real lines were dispatched by the stream itself.
    n_in_stream = _count_dispatched(lines)
    return events[:n_in_stream], events[n_in_stream:]


def _count_dispatched(lines: list[bytes]) -> int:
    count, seen_data = 0, False
    for line in lines:
        if line == b"":
            count += seen_data
            seen_data = False
        elif line.partition(b":")[0] == b"data":
            seen_data = True
    return count


def parse(chunks, max_line_bytes: int = 1 << 24) -> tuple[list[bytes], list[bytes]]:
    """Feed the chunks in order: (payloads from feed, payloads from close)."""
    parser = SSEParser(max_line_bytes)
    out: list[bytes] = []
    for chunk in chunks:
        out += parser.feed(chunk)
    return out, parser.close()


def pieces(stream: bytes, cuts) -> list[bytes]:
    bounds = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


# (id, stream, payloads). Every stream ends with its dispatching blank line, so close() adds nothing.
STREAMS = [
    ("lf", b"data: hello\n\ndata: world\n\n", [b"hello", b"world"]),
    ("crlf", b"data: hello\r\n\r\ndata: world\r\n\r\n", [b"hello", b"world"]),
    ("cr", b"data: hello\r\rdata: world\r\r", [b"hello", b"world"]),
    ("mixed", b"data: a\r\n\ndata: b\r\rdata: c\n\r\ndata: d\r\n\r", [b"a", b"b", b"c", b"d"]),
    ("comments", b": keep-alive\n\n:\ndata: x\n: mid-event\n\n", [b"x"]),
    ("multiline", b"data: line1\ndata: line2\r\ndata:line3\r\n\r\n", [b"line1\nline2\nline3"]),
    ("no-space", b"data:tight\n\ndata:  two spaces\n\n", [b"tight", b" two spaces"]),
    ("field-without-colon", b"data\n\ndata\ndata\n\ndata: a\ndata\n\n", [b"", b"\n", b"a\n"]),
    ("other-fields", b"event: message\nid: 7\nretry: 1000\nfoo: bar\ndata: x\nevent\n\n", [b"x"]),
    ("no-data-not-dispatched", b"event: ping\nid: 1\n\nretry: 5\n\ndata: y\n\n", [b"y"]),
    ("not-data-fields", b"data : a\ndatum: b\nDATA: c\n\n", []),
    ("done", b'data: {"a":1}\n\ndata: [DONE]\n\n', [b'{"a":1}', b"[DONE]"]),
    ("invalid-utf8", b"data: \xff\xfe\x80ok\xc3\n\n", [b"\xff\xfe\x80ok\xc3"]),
    ("empty-payload", b"data:\n\ndata: \n\n", [b"", b""]),
    ("blank-lines-only", b"\n\r\n\r\n\n", []),
    ("colon-in-value", b"data: a: b:c\n\n", [b"a: b:c"]),
    ("nul-and-tabs", b"data: \x00\t\x01\n\n", [b"\x00\t\x01"]),
    # Only CR and LF end lines, never the other characters str.splitlines would break at.
    ("other-line-breaks", b"data: a\x0bb\x0cc\x1cd\x1de\x85f\r\n\r\n", [b"a\x0bb\x0cc\x1cd\x1de\x85f"]),
]
IDS = [s[0] for s in STREAMS]


@pytest.mark.parametrize(("stream", "expected"), [s[1:] for s in STREAMS], ids=IDS)
def test_reference_streams_whole(stream, expected):
    assert parse([stream]) == (expected, [])
    assert reference(stream) == (expected, [])  # the oracle agrees with the hand-written answers


@pytest.mark.parametrize(("stream", "expected"), [s[1:] for s in STREAMS], ids=IDS)
def test_reference_streams_every_split(stream, expected):
    for cut in range(len(stream) + 1):
        assert parse(pieces(stream, [cut])) == (expected, []), cut


@pytest.mark.parametrize(("stream", "expected"), [s[1:] for s in STREAMS], ids=IDS)
def test_reference_streams_byte_by_byte(stream, expected):
    assert parse([stream[i:i + 1] for i in range(len(stream))]) == (expected, [])


def test_empty_chunks_change_nothing():
    stream = b"data: a\r\n\r\ndata: b\r\r"
    chunks = [b""] + [x for i in range(len(stream)) for x in (stream[i:i + 1], b"")]
    assert parse(chunks) == ([b"a", b"b"], [])


def test_cr_then_lf_across_chunks_is_one_line_end():
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n") == []  # the LF completes the CRLF: not a blank line
    assert parser.feed(b"\r") == [b"a"]  # this one is
    assert parser.feed(b"\n") == []


REALISTIC = b"".join(
    b'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"%s"}}]}\r\n\r\n' % tok
    for tok in (b"Hi", b" there")
) + b": ping\r\n\r\nid: 3\r\ndata: {}\r\n\r\ndata: [DONE]\r\n\r\n"


def test_realistic_stream_every_pair_of_splits():
    assert 180 <= len(REALISTIC) <= 260
    expected = [
        b'{"id":"c1","choices":[{"index":0,"delta":{"content":"Hi"}}]}',
        b'{"id":"c1","choices":[{"index":0,"delta":{"content":" there"}}]}',
        b"{}",
        b"[DONE]",
    ]
    n = len(REALISTIC)
    for a in range(n + 1):
        for b in range(a, n + 1):
            assert parse(pieces(REALISTIC, [a, b])) == (expected, []), (a, b)


def test_events_completed_by_a_chunk_come_out_of_that_feed():
    parser = SSEParser()
    assert parser.feed(b"data: 1\n\ndata: 2\n\ndata: 3") == [b"1", b"2"]
    assert parser.feed(b"\n") == []
    assert parser.feed(b"\n") == [b"3"]


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (b"data: last", [b"last"]),
        (b"data: last\n", [b"last"]),
        (b"data: last\r", [b"last"]),
        (b"data: last\r\n", [b"last"]),
        (b"data: a\ndata: b", [b"a\nb"]),
        (b"data: x\n\ndata: tail", [b"tail"]),
        (b"data", [b""]),
    ],
)
def test_close_returns_the_trailing_event(stream, expected):
    for cut in range(len(stream) + 1):
        feed_out, close_out = parse(pieces(stream, [cut]))
        assert feed_out + close_out == reference(stream)[0] + reference(stream)[1]
        assert close_out == expected, cut


@pytest.mark.parametrize(
    "stream", [b"", b"data: x\n\n", b"data: x\r\n\r\n", b"data: x\r\r", b"event: a\nid: 2", b": comment", b"dat"]
)
def test_close_with_nothing_pending_returns_nothing(stream):
    assert parse([stream])[1] == []


def test_close_twice_and_fresh_parser():
    parser = SSEParser()
    assert parser.close() == []
    parser.feed(b"data: a")
    assert parser.close() == [b"a"]
    assert parser.close() == []


def test_over_long_line_raises():
    parser = SSEParser(max_line_bytes=100)
    parser.feed(b"data: ok\n\n")
    with pytest.raises(SSEError, match="longer than 100 bytes"):
        for _ in range(100):
            parser.feed(b"x" * 7)


def test_over_long_line_in_one_chunk_raises():
    with pytest.raises(SSEError):
        SSEParser(max_line_bytes=64).feed(b"data: " + b"y" * 100)


def test_line_at_the_limit_is_fine():
    parser = SSEParser(max_line_bytes=64)
    line = b"data: " + b"z" * 58
    assert len(line) == 64
    assert parser.feed(line) == []
    assert parser.feed(b"\n\n") == [b"z" * 58]


def test_many_normal_events_do_not_raise():
    event = b'data: {"choices":[{"delta":{"content":"tok"}}]}\n\n'
    stream = event * 20_000  # ~1 MB, far over the limit in total but never in one line
    parser = SSEParser(max_line_bytes=4096)
    out = []
    for i in range(0, len(stream), 4096):
        out += parser.feed(stream[i:i + 4096])
    assert len(out) == 20_000
    assert parser.close() == []


def test_long_line_in_many_reads_is_linear():
    """A 4 MB line in 1-byte-per-line-end-free reads must not be quadratic (it would take minutes)."""
    parser = SSEParser()
    parser.feed(b"data: ")
    piece = b"a" * 1024
    for _ in range(4096):
        parser.feed(piece)
    assert parser.feed(b"\n\n") == [piece * 4096]


# --- property-based ---

_ENDINGS = st.sampled_from([b"\n", b"\r\n", b"\r"])
_VALUE = st.binary(max_size=20).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@st.composite
def sse_streams(draw):
    """A valid stream and the payloads it must give; line endings are mixed at random."""
    out: list[bytes] = []
    expected: list[bytes] = []
    prev_end = b""

    def emit(line: bytes) -> None:
        nonlocal prev_end
        end = draw(_ENDINGS)
        if prev_end == b"\r" and line == b"" and end == b"\n":
            end = b"\r\n"  # CR + LF would read as one line end and swallow this blank line
        out.append(line + end)
        prev_end = end

    for _ in range(draw(st.integers(0, 6))):
        data: list[bytes] = []
        for _ in range(draw(st.integers(0, 4))):
            kind = draw(st.sampled_from(["data", "data", "data", "bare", "comment", "field"]))
            if kind == "data":
                sep, value = draw(st.sampled_from([b"", b" "])), draw(_VALUE)
                emit(b"data:" + sep + value)
                data.append(value if sep or not value.startswith(b" ") else value[1:])
            elif kind == "bare":
                emit(b"data")
                data.append(b"")
            elif kind == "comment":
                emit(b":" + draw(_VALUE))
            else:
                name = draw(st.sampled_from([b"event", b"id", b"retry", b"foo", b"dat", b"datas"]))
                emit(name + draw(st.sampled_from([b"", b":", b": "])) + draw(_VALUE))
        emit(b"")
        if data:
            expected.append(b"\n".join(data))
    return b"".join(out), expected


def _cuts(n: int):
    return st.lists(st.integers(0, n), max_size=8).map(sorted)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_property_any_split_equals_one_shot(data):
    stream, expected = data.draw(sse_streams())
    assert parse([stream]) == (expected, [])
    assert reference(stream) == (expected, [])
    cuts = data.draw(_cuts(len(stream)))
    assert parse(pieces(stream, cuts)) == (expected, [])


_SSE_ISH = st.lists(
    st.sampled_from([b"data:", b"data", b" ", b":", b"\r", b"\n", b"\r\n", b"x", b"\xff", b"event: e", b"\x00"]),
    max_size=60,
).map(b"".join)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_property_random_bytes_match_reference(data):
    stream = data.draw(st.one_of(st.binary(max_size=2000), _SSE_ISH))
    cuts = data.draw(_cuts(len(stream)))
    # max_line 4096 > any stream here: no error is allowed, and the result is the spec's.
    assert parse(pieces(stream, cuts), max_line_bytes=4096) == reference(stream)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_property_random_bytes_only_raise_sse_error(data):
    stream = data.draw(st.one_of(st.binary(max_size=2000), _SSE_ISH))
    cuts = data.draw(_cuts(len(stream)))
    parser = SSEParser(max_line_bytes=data.draw(st.sampled_from([1, 8, 64])))
    try:
        for chunk in pieces(stream, cuts):
            for payload in parser.feed(chunk):
                assert isinstance(payload, bytes)
        parser.close()
    except SSEError:
        pass


def test_empty_read_between_cr_and_lf_keeps_them_one_line_end():
    # Regression: an empty read after a trailing CR used to drop the pending CR, so the LF that
    # followed counted as a second line end and dispatched an event early (found by hypothesis).
    parser = SSEParser()
    got = parser.feed(b"data: a\r") + parser.feed(b"") + parser.feed(b"\ndata: b\n\n")
    assert got == [b"a\nb"]
