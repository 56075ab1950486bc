"""Where results go: console, JSON and CSV files, live Prometheus metrics."""

from .console import RunProgress, print_summary, print_workers
from .csv_export import write_requests_csv
from .json_report import write_json_atomic
from .live import DEFAULT_METRICS_ADDR, LiveMetrics

__all__ = ["DEFAULT_METRICS_ADDR", "LiveMetrics", "RunProgress", "print_summary", "print_workers",
           "write_json_atomic", "write_requests_csv"]
