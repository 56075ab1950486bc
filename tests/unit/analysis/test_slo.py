from array import array

import pytest

from loadgen.analysis.slo import slo_report
from loadgen.config import parse_slo
from loadgen.errors import UsageError
from loadgen.records import ErrorInfo, RequestRecord

MS = 1_000_000


def _record(ttft_ms: float, tpot_ms: float, tokens: int = 11, error=None) -> RequestRecord:
    r = RequestRecord(0, "c", 0, 1, tokens, scheduled_ns=10**12, error=error)
    r.first_ns = r.scheduled_ns + int(ttft_ms * MS)
    r.last_ns = r.first_ns + int(tpot_ms * MS) * (tokens - 1)
    r.chunk_ns = array("q", [r.first_ns, r.last_ns])
    r.chunk_tokens = array("i", [1, tokens - 1])
    r.output_tokens = tokens
    return r


def test_objectives_and_goodput():
    records = [_record(40, 10)] * 8 + [_record(300, 10), _record(40, 60), _record(40, 10, error=ErrorInfo("x", "y"))]
    slo = slo_report(records, parse_slo("ttft_p90=0.1,tpot_p50=0.02"), window_s=2.0)
    assert slo["objectives"]["ttft_p90"]["met"] and slo["objectives"]["tpot_p50"]["met"]
    assert slo["all_met"] and slo["good_requests"] == 8  # the slow-first-token and slow-decode ones are not good
    assert slo["good_fraction"] == pytest.approx(8 / 11)  # a failed request is never good
    assert slo["goodput_rps"] == 4.0 and slo["goodput_tps"] == 8 * 11 / 2.0
    strict = slo_report(records, parse_slo("ttft_p99=0.1"), window_s=2.0)
    assert not strict["all_met"] and strict["objectives"]["ttft_p99"]["value_s"] > 0.1


@pytest.mark.parametrize("text", ["ttft=0.5", "itl_p95=0.1", "ttft_p95=fast", "ttft_p0=1", ""])
def test_bad_slo_is_a_usage_error(text):
    with pytest.raises(UsageError, match="--slo"):
        parse_slo(text)
