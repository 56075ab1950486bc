"""Pure functions from records to figures."""

from .report import SCHEMA_VERSION, build_report, latency_samples
from .speculative import (conditional_acceptance, mean_from_histogram, request_acceptance_length,
                          server_acceptance, step_histogram)
from .stats import PERCENTILES, distribution

__all__ = ["PERCENTILES", "SCHEMA_VERSION", "build_report", "conditional_acceptance", "distribution",
           "latency_samples", "mean_from_histogram", "request_acceptance_length", "server_acceptance",
           "step_histogram"]
