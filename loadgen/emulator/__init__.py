"""A standalone emulated inference engine speaking each engine's OpenAI-compatible wire format
(`--engine vllm | sglang | trtllm | llamacpp`, one module each, see engine.py).

It imports nothing from loadgen but the kernel-timestamp helper (loadgen.stamped_socket), so it stays
an independent check on the client's parsing and arithmetic: its timing and acceptance are
configured truth.
"""

from .profile import load_accept_profile
from .server import PERSONALITIES, EmulatorConfig, serve

__all__ = ["EmulatorConfig", "serve", "load_accept_profile", "PERSONALITIES"]
