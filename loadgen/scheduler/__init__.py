"""Scheduling: when each request is sent."""

from .closed_loop import Send, closed_loop
from .load import HOLD_THRESHOLD, LoadTracker

__all__ = ["HOLD_THRESHOLD", "LoadTracker", "Send", "closed_loop"]
