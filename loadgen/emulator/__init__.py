"""A standalone emulated inference engine speaking each engine's OpenAI-compatible wire format.

It imports nothing from loadgen but the kernel-timestamp helper (loadgen.stamped_socket), so it stays
an independent check on the client's parsing and arithmetic: its timing and acceptance are
configured truth.
"""

from .server import EmulatorConfig, serve

__all__ = ["EmulatorConfig", "serve"]
