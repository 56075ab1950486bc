"""Pure functions from records to figures."""

from .chat import token_counts_of
from .load import HOLD_THRESHOLD, held_load
from .overlap import overlap_figures
from .prefix_cache import prefix_cache_figures
from .report import build_report, latency_samples
from .report_types import SCHEMA_VERSION, Report, WorkersInfo, report_schema, shipped_schema
from .sampling import prompt_send_counts, sampling_figures, sampling_line
from .speculative import (
                          AGREEMENT_TOLERANCE,
                          conditional_acceptance,
                          cross_check,
                          draft_coverage,
                          mean_from_histogram,
                          request_acceptance_length,
                          step_histogram,
)
from .stats import PERCENTILES, distribution
from .timeseries import time_series

__all__ = [
    "AGREEMENT_TOLERANCE", "HOLD_THRESHOLD", "PERCENTILES", "SCHEMA_VERSION", "Report", "WorkersInfo", "build_report",
    "conditional_acceptance", "cross_check", "distribution", "draft_coverage", "held_load", "latency_samples",
    "mean_from_histogram", "report_schema", "request_acceptance_length", "shipped_schema", "step_histogram",
    "time_series", "prefix_cache_figures", "token_counts_of", "overlap_figures", "prompt_send_counts",
    "sampling_figures", "sampling_line",
]
