"""Request records made by hand for the analysis and sink tests: a streamed request as the recorder
would have closed it, every time stated, so that each test's expected figures follow from them."""

from array import array

from loadgen.records import ErrorInfo, RequestRecord


def streamed_record(request_id: int, tokens: list[int], *, scheduled_ns: int, category: str = "chat",
                    sub_category: str = "", sent_after_ns: int = 1000, ttft_ns: int = 50_000_000,
                    step_ns: int = 20_000_000, error: ErrorInfo | None = None) -> RequestRecord:
    """A request of 100 prompt tokens and max_tokens 64, sent `sent_after_ns` after its schedule. A
    successful one (no `error`) had its first chunk `ttft_ns` after sending and its chunks, carrying
    `tokens`, `step_ns` apart, finishing for length; a failed one has no chunk and ended 1 µs after
    it was sent."""
    r = RequestRecord(request_id, category, 0, 100, 64, scheduled_ns=scheduled_ns, sub_category=sub_category,
                      error=error)
    r.sent_ns = r.scheduled_ns + sent_after_ns
    if error is None:
        r.first_ns = r.sent_ns + ttft_ns
        r.chunk_ns = array("q", [r.first_ns + i * step_ns for i in range(len(tokens))])
        r.chunk_tokens = array("i", tokens)
        r.last_ns = r.chunk_ns[-1]
        r.output_tokens = sum(tokens)
        r.finish_reason = "length"
    r.end_ns = r.last_ns or r.sent_ns + 1000
    return r
