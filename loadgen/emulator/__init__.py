"""A standalone emulated inference engine speaking each engine's OpenAI-compatible wire format
(`--engine NAME`, one personality module each, see engine.py).

It takes from loadgen only the kernel-timestamp helper (loadgen.stamped_socket) and, from the engine
registry, which personality speaks for which engine (EngineSpec.personality); none of the client's
parsing or arithmetic runs in it, so it stays an independent check on them: its timing and
acceptance are configured truth.
"""

from .profile import load_accept_profile
from .server import PERSONALITIES, EmulatorConfig, serve

__all__ = ["EmulatorConfig", "serve", "load_accept_profile", "PERSONALITIES"]
