"""A standalone emulated inference engine speaking each engine's OpenAI-compatible wire format.

It imports nothing else from loadgen, so it stays an independent check on the client's
parsing and arithmetic: its timing and acceptance are configured truth.
"""

from .server import EmulatorConfig, serve

__all__ = ["EmulatorConfig", "serve"]
