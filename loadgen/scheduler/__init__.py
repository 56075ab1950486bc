"""Scheduling: when each request is sent (closed loop: at a concurrency; open loop: at a rate)."""

from .closed_loop import Send, closed_loop, stepped_closed_loop
from .open_loop import ARRIVALS, arrival_offsets, open_loop

__all__ = ["ARRIVALS", "Send", "arrival_offsets", "closed_loop", "open_loop", "stepped_closed_loop"]
