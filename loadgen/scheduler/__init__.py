"""Scheduling: when each request is sent."""

from .closed_loop import Send, closed_loop

__all__ = ["Send", "closed_loop"]
