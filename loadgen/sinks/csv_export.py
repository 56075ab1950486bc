"""requests.csv: one row per request with its derived figures, for spreadsheets and pandas
(the journal, requests.jsonl, keeps the raw per-chunk times)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from loadgen.analysis.slo import SLO_METRICS
from loadgen.records import RequestRecord

from .tables import write_csv

__all__ = ["REQUEST_COLUMNS", "write_requests_csv"]

REQUEST_COLUMNS = ("request_id", "category", "sub_category", "turn", "warmup", "prompt_tokens", "output_tokens",
                   "ttft_s", "tpot_s", "e2e_s", "queue_s", "steps", "tokens_per_step", "outcome", "error",
                   "retries")


def _row(r: RequestRecord) -> dict:
    timed = r.ok and len(r.chunk_ns) > 0
    steps = len(r.chunk_tokens) - 1
    return {
        "request_id": r.request_id, "category": r.category, "sub_category": r.sub_category, "turn": r.turn,
        "warmup": r.warmup, "prompt_tokens": r.prompt_tokens, "output_tokens": r.output_tokens,
        **{f"{m}_s": (SLO_METRICS[m](r) if timed else None) for m in ("ttft", "tpot", "e2e")},
        "queue_s": (r.sent_ns - r.scheduled_ns) * 1e-9 if r.sent_ns else None,
        "steps": max(steps, 0), "tokens_per_step": sum(r.chunk_tokens[1:]) / steps if steps > 0 else None,
        "outcome": r.outcome, "error": r.error.detail if r.error else "", "retries": len(r.retried),
    }


def write_requests_csv(path: Path, records: Sequence[RequestRecord]) -> None:
    write_csv(path, REQUEST_COLUMNS, (_row(r) for r in records))
