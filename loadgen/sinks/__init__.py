"""Where results go: console, JSON files."""

from .console import RunProgress, print_summary
from .json_report import write_json_atomic

__all__ = ["RunProgress", "print_summary", "write_json_atomic"]
