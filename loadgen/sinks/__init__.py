"""Where results go: console, JSON and CSV files, live Prometheus metrics; and the tables (console
or CSV) the studies' rows are laid out in."""

from .console import RunProgress, print_summary, print_trace, print_workers
from .csv_export import write_requests_csv
from .json_report import write_json_atomic
from .live import DEFAULT_METRICS_ADDR, LiveMetrics
from .probe import print_figure_warnings, print_findings, print_findings_json
from .tables import cell, print_table, write_csv

__all__ = ["DEFAULT_METRICS_ADDR", "LiveMetrics", "RunProgress", "cell", "print_figure_warnings", "print_findings",
           "print_findings_json", "print_summary", "print_table", "print_trace", "print_workers", "write_csv",
           "write_json_atomic", "write_requests_csv"]
